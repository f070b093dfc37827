//! Checkpoint save and load throughput against the plain durable write they wrap.
//!
//! For each size: `save` (encode, AES-256-GCM, write, fsync, rename, directory fsync),
//! `load` (read, authenticate and decrypt, decode), and the baseline of writing the same
//! number of bytes to a file with `write_all` + `sync_all`. Best of 3, in MB/s and ms.
//! Run: `cargo bench -p bastion-checkpoint --bench save_load [-- MAX_MIB]` (default 256).
//! The store lives in `$TMPDIR`; point it at the disk you deploy on.

use bastion_checkpoint::{Checkpoint, CheckpointStore};
use std::io::Write;
use std::time::{Duration, Instant};

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let max_mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path().join("ckpt"), [9; 32], 2, "node=bench").unwrap();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "MiB", "save ms", "load ms", "plain ms", "save MB/s", "load MB/s"
    );
    let mut mib = 1;
    let mut step = 0;
    while mib <= max_mib {
        let bytes = mib << 20;
        let mut ckpt = Checkpoint::new(0, 0);
        ckpt.sections.insert(
            "model.safetensors".into(),
            (0..bytes).map(|i| (i * 31 % 251) as u8).collect(),
        );
        let save = best_of(3, || {
            step += 1;
            ckpt.step = step;
            store.save(&ckpt).unwrap()
        });
        let load = best_of(3, || store.load(step).unwrap());
        let plain_path = dir.path().join("plain");
        let data = &ckpt.sections["model.safetensors"];
        let plain = best_of(3, || {
            let mut f = std::fs::File::create(&plain_path).unwrap();
            f.write_all(data).unwrap();
            f.sync_all().unwrap();
        });
        let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        println!(
            "{:>8} {:>10.1} {:>10.1} {:>10.1} {:>12.0} {:>12.0}",
            mib,
            save.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            plain.as_secs_f64() * 1e3,
            mbs(save),
            mbs(load)
        );
        mib *= 4;
    }
}
