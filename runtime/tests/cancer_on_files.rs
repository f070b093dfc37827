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

    // The signed privacy receipt beside the release, verified offline as its model owner
    // would: the simulated chain named explicitly, the binary's measurement pinned.
    check_the_receipt(&dir, &report);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bastion receipt verify` on the receipt this run wrote: accepted with the ledger's figures
/// and the job file's digest; refused, naming what changed, for a changed model file and a
/// lowered epsilon; refused against AMD's roots (a simulated receipt proves no hardware).
fn check_the_receipt(dir: &Path, report: &Value) {
    let release = Path::new(report["release"].as_str().unwrap());
    let receipt = release.join("receipt.json");
    assert_eq!(report["receipt"].as_str(), receipt.to_str(), "{report}");
    let measurement = bastion_attestation::sim::binary_measurement(env!("CARGO_BIN_EXE_bastion"))
        .expect("measuring the binary");
    let policy = dir.join("verify.toml");
    std::fs::write(
        &policy,
        format!(
            "allowed_measurements = [\"{}\"]\n[trust]\nsimulated = true\nsimulated_platform_dir = {:?}\n",
            hex(&measurement),
            dir.join("cluster/platform").display().to_string()
        ),
    )
    .unwrap();
    let verify = |receipt: &Path, model: &Path, policy: &Path| {
        Command::new(env!("CARGO_BIN_EXE_bastion"))
            .args(["receipt", "verify"])
            .arg(receipt)
            .arg("--model")
            .arg(model)
            .arg("--policy")
            .arg(policy)
            .output()
            .unwrap()
    };
    let out = verify(&receipt, release, &policy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ok["verdict"], "accepted");
    assert_eq!(ok["simulated"], true);
    assert_eq!(ok["coordinator_measurement"], hex(&measurement));
    assert_eq!(ok["job"]["status"], "completed");
    assert_eq!(ok["privacy"]["steps"], report["steps"]);
    assert_eq!(ok["privacy"]["sigma"], report["sigma"]);
    assert_eq!(ok["privacy"]["q"], report["q"]);
    // The job file's digest is what `sha256sum job.toml` says (coreutils, not our code).
    let sum = Command::new("sha256sum")
        .arg(dir.join("cluster/job.toml"))
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    assert_eq!(
        ok["job"]["file_sha256"].as_str(),
        sum.split_whitespace().next(),
        "{ok}"
    );
    // Each dataset: the ledger's epsilon as the report has it, and at least what the
    // recorded mechanism gives.
    let ledger = report["privacy"].as_array().unwrap();
    let datasets = ok["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 2, "{ok}");
    for d in datasets {
        let l = ledger.iter().find(|l| l["dataset"] == d["name"]).unwrap();
        assert_eq!(d["epsilon"], l["epsilon"], "{ok}");
        let (recorded, recomputed) = (
            d["epsilon"].as_f64().unwrap(),
            d["recomputed_epsilon"].as_f64().unwrap(),
        );
        assert!(recomputed > 0.0 && recomputed <= recorded, "{d}");
    }
    // Both nodes, each with the binary's measurement, as the coordinator's links saw them.
    let nodes = ok["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{ok}");
    assert!(
        names.contains(&"node-0") && names.contains(&"node-1"),
        "{ok}"
    );
    assert!(nodes.iter().all(|n| n["measurement"] == hex(&measurement)));

    // A copy of the release with one byte of the weights changed is refused, naming the file.
    let copy = dir.join("release-copy");
    copy_dir(release, &copy);
    let weights = copy.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let out = verify(&receipt, &copy, &policy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("body.model.files[") && err.contains("model.safetensors"),
        "{err}"
    );
    // A receipt whose first epsilon was lowered is refused, naming that field.
    let mut forged: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let eps = forged["body"]["datasets"][0]["epsilon"].as_f64().unwrap();
    forged["body"]["datasets"][0]["epsilon"] = Value::from(eps / 2.0);
    let forged_path = dir.join("forged-receipt.json");
    std::fs::write(&forged_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = verify(&forged_path, release, &policy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("body.datasets[0].epsilon"), "{err}");
    // AMD's roots (no [trust] table) refuse the simulated chain: it must be named to count.
    let amd = dir.join("verify-amd.toml");
    std::fs::write(
        &amd,
        format!(
            "allowed_measurements = [\"{}\"]\n[min_tcb]\nbootloader = 1\n",
            hex(&measurement)
        ),
    )
    .unwrap();
    let out = verify(&receipt, release, &amd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("evidence.vcek"), "{err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
