//! The cancer example on the hospitals' own files: two hospitals hand their tiles as image
//! folders (PNG and JPEG, one subfolder per class), the nodes load them with the real loader,
//! and the released model, evaluated again from its files with `bastion model eval`, gives the
//! report's accuracy and AUC.

mod common;

use common::{free_port, serial};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Writes `count` generated tiles of `size` pixels into `dir/<class>/<i>.png|jpg`.
fn image_folder(dir: &Path, count: usize, size: i64, seed: u64) {
    let set = bastion_actors::data::cancer_tiles(count, size, seed);
    let pixels: Vec<f32> = Vec::<f32>::try_from(&set.images.reshape([-1])).unwrap();
    let labels: Vec<i64> = Vec::<i64>::try_from(&set.labels).unwrap();
    let s = size as usize;
    for (i, label) in labels.iter().enumerate() {
        let class = ["benign", "malignant"][*label as usize];
        std::fs::create_dir_all(dir.join(class)).unwrap();
        let tile = &pixels[i * 3 * s * s..(i + 1) * 3 * s * s];
        let rgb = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let p = y as usize * s + x as usize;
            let channel = |c: usize| (tile[c * s * s + p] * 255.0).round().clamp(0.0, 255.0) as u8;
            image::Rgb([channel(0), channel(1), channel(2)])
        });
        // Both formats a hospital's scanner may export.
        let name = if i % 2 == 0 {
            format!("{i}.png")
        } else {
            format!("{i}.jpg")
        };
        rgb.save(dir.join(class).join(name)).unwrap();
    }
}

#[test]
fn the_cancer_example_runs_on_image_folders_and_its_release_evaluates_the_same() {
    let _one_at_a_time = serial();
    let dir = std::env::temp_dir().join(format!("bastion-cancer-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    image_folder(&dir.join("hospital-a"), 48, 16, 1);
    image_folder(&dir.join("hospital-b"), 48, 16, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args([
            "cluster",
            "up",
            "--fresh",
            "--image-size",
            "16",
            "--batch-size",
            "16",
        ])
        .args(["--max-steps", "4", "--checkpoint-every", "2"])
        .arg("--dir")
        .arg(dir.join("cluster"))
        .args(["--base-port", &free_port().to_string()])
        .arg("--dataset")
        .arg(format!(
            "hospital-a=image-folder:{}",
            dir.join("hospital-a").display()
        ))
        .arg("--dataset")
        .arg(format!(
            "hospital-b=image-folder:{}",
            dir.join("hospital-b").display()
        ))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("cluster/node-0/node.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["steps"], 4);
    assert_eq!(report["nodes"], serde_json::json!(["node-0", "node-1"]));
    let eval = &report["evaluation"];
    let (accuracy, auc) = (eval["test_accuracy"].as_f64(), eval["auc"].as_f64());
    assert!(accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)), "{eval}");
    assert!(auc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{eval}");

    // The release, read back from its files: the same figures on the same held-out tiles.
    let release = report["release"].as_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["model", "eval", "--checkpoint", release, "--data"])
        .arg(dir.join("cluster/data/held-out.npz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["records"], eval["records"]);
    assert_eq!(again["accuracy"].as_f64(), accuracy);
    assert_eq!(again["auc"].as_f64(), auc);
    // A file that is not a dataset is refused by name.
    let out = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["model", "eval", "--checkpoint", release, "--data"])
        .arg(dir.join("cluster/job.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("job.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}
