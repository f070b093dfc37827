//! Crash-test driver: saves large checkpoints in a loop, printing `saved <step>` (flushed)
//! after each `save` returns. `tests/crash.rs` kills it with SIGKILL at random moments and
//! checks that every `ckpt-*.bin` left behind loads and holds exactly what was saved.
//!
//! Usage: `checkpoint-stress <dir> <weights-bytes>`. The key is a fixed test key.

use bastion_checkpoint::{Checkpoint, CheckpointStore};
use std::error::Error;
use std::io::Write;

/// The test key (the real one is derived in the TEE).
const KEY: [u8; 32] = *b"checkpoint-stress test key 32 b!";
/// The store's owner.
const NODE: &str = "node=stress";

/// Deterministic filler for step `step` (splitmix64), so the test can check contents.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, size] = args.as_slice() else {
        return Err("usage: checkpoint-stress <dir> <weights-bytes>".into());
    };
    let size: usize = size.parse()?;
    let store = CheckpointStore::open(dir, KEY, 3, NODE)?;
    let start = store.steps()?.last().map_or(1, |s| s + 1);
    let mut out = std::io::stdout().lock();
    for step in start.. {
        let mut ckpt = Checkpoint::new(step, step * 100)
            .with_job("stress")
            .with_ledger_digest([step as u8; 32]);
        ckpt.sections
            .insert("model.safetensors".into(), pattern(step, size));
        ckpt.sections
            .insert("optimizer".into(), pattern(!step, size / 4));
        ckpt.sections
            .insert("rng".into(), step.to_le_bytes().repeat(4));
        store.save(&ckpt)?;
        writeln!(out, "saved {step}")?;
        out.flush()?;
    }
    Ok(())
}
