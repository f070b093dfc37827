//! The coordinator link's real message types through the wire decoder: round trips, and
//! arbitrary or mangled bytes give an error, never a panic.

use bastion_actors::job::OptimSpec;
use bastion_actors::protocol::{
    BlobInfo, Chunk, Evaluation, GroupPlan, JobOffer, Join, Task, ToNode, ToSupervisor, Training,
};
use bastion_wire::{decode_body, encode_frame, LEN_PREFIX};

fn samples() -> (Vec<ToNode>, Vec<ToSupervisor>) {
    let plan = GroupPlan {
        epoch: 3,
        rank: 1,
        members: vec![("a".into(), "127.0.0.1:1".into(), "ff".repeat(32))],
        resume_from: Some(9),
        training: Training {
            job: "0123abcd".into(),
            steps: 48,
            q: 0.01,
            sigma: 1.1,
            max_grad_norm: 1.0,
            expected_batch_size: 64.0,
            deterministic_for_tests: false,
        },
    };
    let to_node = vec![
        ToNode::Form(plan),
        ToNode::Step {
            epoch: 1,
            step: 2,
            ledger_step: 3,
            checkpoint: true,
        },
        ToNode::Abort {
            reason: "node-2 lost".into(),
        },
        ToNode::Evaluate,
        ToNode::Release,
        ToNode::Finish {
            reason: "done".into(),
            failed: false,
        },
    ];
    let to_sup = vec![
        ToSupervisor::Heartbeat,
        ToSupervisor::Ready { epoch: 2 },
        ToSupervisor::StepDone {
            epoch: 1,
            step: 2,
            checkpointed: false,
        },
        ToSupervisor::Refused {
            epoch: 1,
            reason: "over budget".into(),
        },
        ToSupervisor::Failed {
            epoch: 1,
            reason: "x".into(),
        },
        ToSupervisor::Evaluated(Evaluation {
            records: 10,
            test_accuracy: Some(0.9),
            auc: Some(0.95),
            perplexity_before: None,
            perplexity_after: None,
        }),
        ToSupervisor::EvaluationFailed {
            reason: "no model".into(),
        },
        ToSupervisor::Released {
            path: "/state/release".into(),
        },
        ToSupervisor::ReleaseFailed {
            reason: "disk full".into(),
        },
    ];
    (to_node, to_sup)
}

#[test]
fn messages_round_trip() {
    let (to_node, to_sup) = samples();
    for m in to_node {
        let f = encode_frame(&m, 1 << 20).unwrap();
        assert_eq!(decode_body::<ToNode>(&f[LEN_PREFIX..]).unwrap(), m);
    }
    for m in to_sup {
        let f = encode_frame(&m, 1 << 20).unwrap();
        assert_eq!(decode_body::<ToSupervisor>(&f[LEN_PREFIX..]).unwrap(), m);
    }
    let join = Join {
        node: "n".into(),
        ring_addr: "a".into(),
        datasets: vec![bastion_actors::protocol::DatasetInfo {
            name: "hospital-a".into(),
            records: 10,
            epsilon_budget: 8.0,
            delta: 1e-5,
            shape: "images 3x32x32, 2 classes".into(),
            content_sha256: "ab".repeat(32),
            owner: Some("cd".repeat(32)),
        }],
        checkpoints: vec![(1, "job-a".into()), (2, "job-a".into())],
    };
    let f = encode_frame(&join, 1 << 20).unwrap();
    assert_eq!(decode_body::<Join>(&f[LEN_PREFIX..]).unwrap(), join);
    let offer = JobOffer {
        coordinator: "node-0".into(),
        job: "ab".repeat(16),
        task: Task::Classify {
            depth: 18,
            classes: vec!["benign".into(), "malignant".into()],
            image_size: 32,
            channels: 3,
        },
        optim: OptimSpec::default(),
        tokenizer: None,
        weights: BlobInfo {
            len: 3,
            sha256: "00".repeat(32),
        },
        datasets: vec!["hospital-a".into()],
        model_owner: Some("9f".repeat(32)),
    };
    let f = encode_frame(&offer, 1 << 20).unwrap();
    assert_eq!(decode_body::<JobOffer>(&f[LEN_PREFIX..]).unwrap(), offer);
    let chunk = Chunk(vec![1, 2, 3]);
    let f = encode_frame(&chunk, 1 << 20).unwrap();
    assert_eq!(decode_body::<Chunk>(&f[LEN_PREFIX..]).unwrap(), chunk);
}

#[test]
fn arbitrary_and_mangled_bytes_never_panic() {
    let (to_node, to_sup) = samples();
    let mut bodies: Vec<Vec<u8>> = to_node
        .iter()
        .map(|m| encode_frame(m, 1 << 20).unwrap()[LEN_PREFIX..].to_vec())
        .chain(
            to_sup
                .iter()
                .map(|m| encode_frame(m, 1 << 20).unwrap()[LEN_PREFIX..].to_vec()),
        )
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut errors = 0;
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            (0..next() % 64).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            // A valid body with a flipped byte, truncated, or extended.
            let mut b = bodies[(next() % bodies.len() as u64) as usize].clone();
            match next() % 3 {
                0 => {
                    let i = (next() % b.len() as u64) as usize;
                    b[i] ^= 1 << (next() % 8);
                }
                1 => b.truncate((next() % b.len() as u64) as usize),
                _ => b.push(next() as u8),
            }
            b
        };
        // Varint lengths that announce huge strings must not allocate them.
        if round % 1000 == 1 {
            bytes = vec![0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        }
        errors += decode_body::<ToNode>(&bytes).is_err() as usize;
        errors += decode_body::<ToSupervisor>(&bytes).is_err() as usize;
        errors += decode_body::<Join>(&bytes).is_err() as usize;
    }
    // Most garbage is refused (the rest happens to be a valid message, which is fine).
    assert!(errors > 40_000, "{errors}");
    bodies.clear();
}
