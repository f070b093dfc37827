//! A peer's announced length costs nothing until its bytes arrive. In its own test binary:
//! the counting allocator is process-wide.

use std::alloc::System;

use bastion_wire::{read_frame, WireError, DEFAULT_MAX_FRAME};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes obtained from the allocator while `f` runs (fresh allocations plus growth).
fn bytes_allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let change = region.change();
    (
        out,
        change.bytes_allocated + change.bytes_reallocated.max(0) as usize,
    )
}

#[test]
fn announced_lengths_are_not_allocated_up_front() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // Over the limit: refused with (next to) no allocation.
    let (result, bytes) = bytes_allocated_by(|| {
        rt.block_on(read_frame::<_, Vec<u8>>(
            &mut &[0xFFu8, 0xFF, 0xFF, 0xFF][..],
            DEFAULT_MAX_FRAME,
        ))
    });
    assert!(matches!(result, Err(WireError::TooLarge { .. })));
    assert!(
        bytes < 4096,
        "{bytes} bytes allocated to refuse a 4 GiB frame"
    );

    // Within the limit (16 MiB announced) but only 100 bytes sent: the buffer followed the
    // bytes, not the announcement.
    let mut stream = ((DEFAULT_MAX_FRAME as u32).to_be_bytes()).to_vec();
    stream.extend_from_slice(&[7u8; 100]);
    let (result, bytes) = bytes_allocated_by(|| {
        rt.block_on(read_frame::<_, Vec<u8>>(
            &mut &stream[..],
            DEFAULT_MAX_FRAME,
        ))
    });
    assert!(
        matches!(result, Err(WireError::Truncated { part: "body", expected, got: 100 }) if expected == DEFAULT_MAX_FRAME),
        "{result:?}"
    );
    assert!(
        bytes < 256 * 1024,
        "{bytes} bytes allocated for 100 bytes of a 16 MiB announcement"
    );

    // Control: a whole 16 MiB frame does allocate its body (so the counter sees reads).
    let mut stream = ((DEFAULT_MAX_FRAME as u32).to_be_bytes()).to_vec();
    // postcard varint (7 bits a byte, low first) of the Vec<u8>'s length, DEFAULT_MAX_FRAME - 4.
    stream.push(0xFC);
    stream.push(0xFF);
    stream.push(0xFF);
    stream.push(0x07);
    stream.resize(4 + DEFAULT_MAX_FRAME, 1);
    let (result, bytes) = bytes_allocated_by(|| {
        rt.block_on(read_frame::<_, Vec<u8>>(
            &mut &stream[..],
            DEFAULT_MAX_FRAME,
        ))
    });
    assert_eq!(result.unwrap().len(), DEFAULT_MAX_FRAME - 4);
    assert!(bytes >= DEFAULT_MAX_FRAME, "{bytes}");
}
