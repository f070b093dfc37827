//! Raw records never leave the node that holds them, and neither does any un-noised
//! statistic of them: run a real two-node cluster with the test-only wire tap (a copy of
//! every plaintext byte each node sends: control frames and ring payloads), then look for
//! the records' bytes in what crossed the wire, and read every frame the member sent.

mod common;

use bastion_actors::data::cancer_tiles;
use bastion_actors::protocol::{Join, ToSupervisor};
use bastion_actors::tap::TAP_ENV;
use bastion_wire::{decode_body, encode_frame, LEN_PREFIX};
use common::{node, serial, Cluster};
use std::collections::HashSet;
use std::time::Duration;

const WINDOW: usize = 32;

/// 32-byte windows of every record's pixels (f32 little-endian, as a record would travel).
fn record_windows(records: usize, seed: u64) -> HashSet<Vec<u8>> {
    let set = cancer_tiles(records, 16, seed);
    let pixels = Vec::<f32>::try_from(&set.images.reshape([-1])).unwrap();
    let bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let per_record = bytes.len() / records;
    let mut windows = HashSet::new();
    for r in 0..records {
        let record = &bytes[r * per_record..(r + 1) * per_record];
        for start in (0..per_record - WINDOW).step_by(per_record / 8) {
            windows.insert(record[start..start + WINDOW].to_vec());
        }
    }
    windows
}

/// Offsets in `haystack` where any window occurs, checking every `stride`-th offset.
fn find(haystack: &[u8], windows: &HashSet<Vec<u8>>, stride: usize) -> Vec<usize> {
    (0..haystack.len().saturating_sub(WINDOW))
        .step_by(stride)
        .filter(|&i| windows.contains(&haystack[i..i + WINDOW]))
        .collect()
}

#[test]
fn no_record_byte_pattern_crosses_the_wire() {
    let _one_at_a_time = serial();
    let tap = std::env::temp_dir().join(format!("bastion-tap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tap);
    std::fs::create_dir_all(&tap).unwrap();
    std::env::set_var(TAP_ENV, &tap);
    let mut c = Cluster::start(
        "records-stay-home",
        vec![
            node("node-0", &[("hospital-a", 24, 11)]),
            node("node-1", &[("hospital-b", 24, 12)]),
        ],
        "nodes = 2\nimage_size = 16\nbatch_size = 12\nepochs = 1\nmax_steps = 2\ncheckpoint_every = 1\ntest_records = 16",
        "heartbeat_ms = 200\nnode_timeout_ms = 3000",
        8.0,
    );
    let (ok, _) = c.wait_coordinator(Duration::from_secs(240));
    assert!(ok, "{}", c.logs_tail());

    let mut windows = record_windows(24, 11);
    windows.extend(record_windows(24, 12));
    // The search works: a record planted in a copy of real traffic is found, at any offset
    // in control frames and at float alignment in ring payloads.
    let control = std::fs::read(tap.join("node-1.control")).unwrap();
    assert!(control.len() > 100, "the tap saw the control traffic");
    let planted_record = record_windows(24, 12).into_iter().next().unwrap();
    let mut planted = control.clone();
    planted.splice(37..37, planted_record.iter().copied());
    assert_eq!(find(&planted, &windows, 1), vec![37]);

    for name in ["node-0", "node-1"] {
        let control = std::fs::read(tap.join(format!("{name}.control"))).unwrap();
        assert!(
            find(&control, &windows, 1).is_empty(),
            "{name} sent record bytes in a control frame"
        );
        let ring = std::fs::read(tap.join(format!("{name}.ring"))).unwrap();
        // Two steps of the whole model (ResNet-18-GN, 2 classes) and nothing else.
        assert_eq!(ring.len(), 2 * 11_177_538 * 4, "{name} ring payload size");
        assert!(
            find(&ring, &windows, 4).is_empty(),
            "{name} sent record bytes in a ring payload"
        );
    }
    // What the member told the coordinator: a join, then only protocol. Each frame decodes
    // completely as one of the link's messages and re-encodes to the same bytes, so nothing
    // else rides along; no message of the protocol carries a count or a loss.
    let sent = member_frames(&std::fs::read(tap.join("node-1.control")).unwrap());
    let join: Join = decode_body(&sent[0]).expect("the first frame is the join");
    assert_eq!(join.datasets.len(), 1);
    let mut done = 0;
    for body in &sent[1..] {
        let msg: ToSupervisor = decode_body(body)
            .unwrap_or_else(|e| panic!("node-1 sent a frame that is not protocol: {e}"));
        assert_eq!(
            &encode_frame(&msg, usize::MAX).unwrap()[LEN_PREFIX..],
            &body[..]
        );
        match msg {
            ToSupervisor::StepDone { .. } => done += 1,
            ToSupervisor::Heartbeat | ToSupervisor::Ready { .. } => {}
            other => panic!("node-1 sent {other:?}"),
        }
    }
    assert_eq!(done, 2, "one StepDone per step");
    // The negative control: a frame with more in it than a message is caught.
    let mut padded =
        encode_frame(&ToSupervisor::Heartbeat, usize::MAX).unwrap()[LEN_PREFIX..].to_vec();
    padded.extend_from_slice(&53u64.to_le_bytes());
    assert!(decode_body::<ToSupervisor>(&padded).is_err());
    std::env::remove_var(TAP_ENV);
    let _ = std::fs::remove_dir_all(&tap);
}

/// Splits a tap of control frames into frame bodies.
fn member_frames(mut tap: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !tap.is_empty() {
        let len = u32::from_be_bytes(tap[..LEN_PREFIX].try_into().unwrap()) as usize;
        frames.push(tap[LEN_PREFIX..LEN_PREFIX + len].to_vec());
        tap = &tap[LEN_PREFIX + len..];
    }
    frames
}
