//! Frames and their refusals: round trips, limits, truncation, trailing bytes, decoding
//! arbitrary bytes without panicking.

mod common;

use std::io::Cursor;
use std::time::Duration;

use bastion_wire::{
    decode_body, decode_frame, encode_frame, read_frame, write_frame, FramedConn, WireError,
    DEFAULT_MAX_FRAME, LEN_PREFIX,
};
use common::{control, sample, Control};
use proptest::prelude::*;

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn frames_round_trip_in_memory_and_match_plain_postcard() {
    for msg in sample() {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
        // Independent reference: the body is exactly postcard's encoding, the prefix its length.
        let reference = postcard::to_stdvec(&msg).unwrap();
        assert_eq!(&frame[LEN_PREFIX..], &reference[..]);
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            reference.len()
        );
        assert_eq!(
            decode_frame::<Control>(&frame, DEFAULT_MAX_FRAME).unwrap(),
            msg
        );
        assert_eq!(decode_body::<Control>(&reference).unwrap(), msg);
    }
}

#[test]
fn frames_round_trip_over_a_small_pipe_in_order() {
    rt().block_on(async {
        // A pipe smaller than most frames: writes and reads must interleave.
        let (mut a, mut b) = tokio::io::duplex(1000);
        let sender = async {
            for msg in sample() {
                write_frame(&mut a, &msg, DEFAULT_MAX_FRAME).await.unwrap();
            }
            drop(a);
        };
        let receiver = async {
            let mut got = Vec::new();
            loop {
                match read_frame::<_, Control>(&mut b, DEFAULT_MAX_FRAME).await {
                    Ok(m) => got.push(m),
                    Err(WireError::Closed) => break got,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        let ((), got) = tokio::join!(sender, receiver);
        assert_eq!(got, sample());
    });
}

#[test]
fn an_oversized_length_is_refused_before_the_body_is_read() {
    let max = 1024;
    let mut bytes = ((max + 1) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 2000]);
    let mut reader = Cursor::new(bytes);
    let err = rt()
        .block_on(read_frame::<_, Control>(&mut reader, max))
        .unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                len: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "frame of 1025 bytes exceeds the limit of 1024 bytes"
    );
    // Only the prefix was consumed.
    assert_eq!(reader.position(), LEN_PREFIX as u64);

    // The largest length the prefix can say, against the default limit.
    let mut reader = Cursor::new(vec![0xFF; 8]);
    let err = rt()
        .block_on(read_frame::<_, Control>(&mut reader, DEFAULT_MAX_FRAME))
        .unwrap_err();
    assert!(
        matches!(err, WireError::TooLarge { len, max } if len == u32::MAX as usize && max == DEFAULT_MAX_FRAME),
        "{err}"
    );
    assert_eq!(reader.position(), LEN_PREFIX as u64);
}

#[test]
fn an_oversized_message_is_not_sent() {
    let msg = Control::Blob(vec![1; 5000]);
    let err = encode_frame(&msg, 4096).unwrap_err();
    // 5000 bytes, a 2-byte varint length and the variant index.
    assert!(
        matches!(
            err,
            WireError::TooLarge {
                len: 5003,
                max: 4096
            }
        ),
        "{err}"
    );
    let mut sink = Vec::new();
    let err = rt()
        .block_on(write_frame(&mut sink, &msg, 4096))
        .unwrap_err();
    assert!(matches!(err, WireError::TooLarge { .. }));
    assert!(sink.is_empty(), "nothing of a refused frame is written");
}

#[test]
fn truncated_frames_say_where_they_ended() {
    let full = encode_frame(&sample()[1], DEFAULT_MAX_FRAME).unwrap();
    let read = |bytes: &[u8]| {
        rt().block_on(read_frame::<_, Control>(&mut &bytes[..], DEFAULT_MAX_FRAME))
            .unwrap_err()
    };
    assert!(matches!(read(&[]), WireError::Closed));
    assert!(matches!(
        read(&full[..2]),
        WireError::Truncated {
            part: "length prefix",
            expected: 4,
            got: 2
        }
    ));
    let body_len = full.len() - LEN_PREFIX;
    match read(&full[..full.len() - 1]) {
        WireError::Truncated {
            part: "body",
            expected,
            got,
        } => assert_eq!((expected, got), (body_len, body_len - 1)),
        e => panic!("expected a truncated body, got {e}"),
    }
    // In memory too.
    assert!(matches!(
        decode_frame::<Control>(&full[..full.len() - 1], DEFAULT_MAX_FRAME),
        Err(WireError::Truncated { part: "body", .. })
    ));
    // A message cut inside its own fields, in a frame whose length agrees: postcard's error.
    let body = &full[LEN_PREFIX..full.len() - 3];
    match decode_body::<Control>(body).unwrap_err() {
        WireError::Decode { ty, reason } => {
            assert!(ty.ends_with("Control"), "{ty}");
            assert!(!reason.is_empty());
        }
        e => panic!("expected a decode error, got {e}"),
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut body = postcard::to_stdvec(&Control::Heartbeat).unwrap();
    body.extend_from_slice(&[0, 0, 0]);
    let err = decode_body::<Control>(&body).unwrap_err();
    assert!(matches!(err, WireError::Trailing { count: 3, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("3 trailing bytes after a complete"),
        "{err}"
    );

    // Inside a frame whose length covers them.
    let err = rt()
        .block_on(read_frame::<_, Control>(
            &mut &frame_of(&body)[..],
            DEFAULT_MAX_FRAME,
        ))
        .unwrap_err();
    assert!(matches!(err, WireError::Trailing { count: 3, .. }), "{err}");

    // After a whole frame held in memory.
    let mut frame = encode_frame(&Control::Heartbeat, 64).unwrap();
    frame.push(9);
    let err = decode_frame::<Control>(&frame, 64).unwrap_err();
    assert!(matches!(err, WireError::Trailing { count: 1, .. }), "{err}");
}

#[test]
fn empty_frames_are_refused() {
    let err = rt()
        .block_on(read_frame::<_, Control>(&mut &[0u8, 0, 0, 0][..], 64))
        .unwrap_err();
    assert!(matches!(err, WireError::Empty), "{err}");
    assert!(matches!(decode_body::<()>(&[]), Err(WireError::Empty)));
    assert!(matches!(encode_frame(&(), 64), Err(WireError::Empty)));
}

#[test]
fn an_unknown_variant_names_the_type_and_postcard_s_reason() {
    let err = decode_body::<Control>(&[99]).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("cannot decode "), "{text}");
    assert!(text.contains("Control"), "{text}");
    assert!(matches!(err, WireError::Decode { .. }));
}

#[test]
fn framed_conn_times_out_then_refuses_to_read_off_a_frame_boundary() {
    rt().block_on(async {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut a = FramedConn::new(a).with_read_timeout(Some(Duration::from_millis(50)));
        // Half a frame, then silence.
        let frame = encode_frame(&sample()[0], DEFAULT_MAX_FRAME).unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut b, &frame[..frame.len() / 2])
            .await
            .unwrap();
        let err = a.recv::<Control>().await.unwrap_err();
        assert!(
            matches!(err, WireError::Timeout(d) if d == Duration::from_millis(50)),
            "{err}"
        );
        // The rest arrives, but the stream is mid-frame for `a`: refused, not misread.
        tokio::io::AsyncWriteExt::write_all(&mut b, &frame[frame.len() / 2..])
            .await
            .unwrap();
        assert!(matches!(
            a.recv::<Control>().await,
            Err(WireError::Poisoned)
        ));
        assert!(matches!(
            a.send(&Control::Heartbeat).await,
            Err(WireError::Poisoned)
        ));
    });
}

#[test]
fn framed_conn_stays_usable_after_a_whole_but_undecodable_frame() {
    rt().block_on(async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (mut a, mut b) = (FramedConn::new(a), FramedConn::new(b).with_max_frame(4096));
        a.send(&(99u8,)).await.unwrap(); // not a Control
        a.send(&Control::Heartbeat).await.unwrap();
        assert!(matches!(
            b.recv::<Control>().await,
            Err(WireError::Decode { .. })
        ));
        assert_eq!(b.recv::<Control>().await.unwrap(), Control::Heartbeat);
        // Over b's limit: refused, and b stops reading this stream.
        a.send(&Control::Blob(vec![0; 5000])).await.unwrap();
        assert!(matches!(
            b.recv::<Control>().await,
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            b.recv::<Control>().await,
            Err(WireError::Poisoned)
        ));
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_message_round_trips(msg in control()) {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
        prop_assert_eq!(decode_frame::<Control>(&frame, DEFAULT_MAX_FRAME).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bodies_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match decode_body::<Control>(&bytes) {
            // Whatever decoded is a message that encodes back to a body that decodes to it.
            Ok(msg) => {
                let again = postcard::to_stdvec(&msg).unwrap();
                let back = decode_body::<Control>(&again).unwrap();
                // NaN != NaN: compare encodings instead.
                prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), again);
            }
            Err(WireError::Decode { ty, reason }) => {
                prop_assert!(ty.ends_with("Control"));
                prop_assert!(!reason.is_empty());
            }
            Err(WireError::Trailing { count, .. }) => prop_assert!(count > 0 && count < bytes.len()),
            Err(WireError::Empty) => prop_assert!(bytes.is_empty()),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }

    #[test]
    fn arbitrary_streams_read_or_fail_cleanly(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        max in 0usize..700,
    ) {
        let result = rt().block_on(read_frame::<_, Control>(&mut &bytes[..], max));
        let announced = bytes.get(..4).map(|p| u32::from_be_bytes(p.try_into().unwrap()) as usize);
        match result {
            Ok(_) => {
                let len = announced.unwrap();
                prop_assert!(len <= max && len + 4 <= bytes.len());
            }
            Err(WireError::Closed) => prop_assert!(bytes.is_empty()),
            Err(WireError::Truncated { expected, got, .. }) => prop_assert!(got < expected),
            Err(WireError::TooLarge { len, max: m }) => prop_assert!(len > m && m == max && Some(len) == announced),
            Err(WireError::Empty) => prop_assert_eq!(announced, Some(0)),
            Err(WireError::Decode { .. } | WireError::Trailing { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
