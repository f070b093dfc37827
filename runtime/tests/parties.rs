//! The parties against real nodes: two `bastion node` processes that start holding nothing
//! and with no job. A model owner no data owner allows is refused; the allowed one submits
//! the job; a hospital's file with a bad record is refused by record and nothing of it is
//! kept; a party another node does not list, and an operator, cannot push; the hospitals push
//! their files over attested TLS; the job trains on them; each owner reads its spent epsilon
//! (the ledger's figure, equal to the report's); the model owner fetches the release and its
//! receipt, which `bastion receipt verify` accepts; the owner then deletes its dataset.

mod common;

use bastion_actors::data::{cancer_tiles, npz::write_medmnist_npz, Split};
use bastion_attestation::sim::SimulatedPlatform;
use bastion_attestation::tls::{PartyIdentity, VerifyFile};
use bastion_party::{Client, DatasetMeta, JobState};
use common::{bastion_measurement_hex, free_port, serial};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Party {
    identity: PartyIdentity,
}

impl Party {
    fn new() -> Party {
        Party {
            identity: PartyIdentity::generate().unwrap(),
        }
    }
    fn key(&self) -> String {
        self.identity.fingerprint()
    }
    fn client(&self, port: u16, verify: &Path) -> Client {
        Client::new(
            format!("127.0.0.1:{port}"),
            &self.identity,
            VerifyFile::load_verifier(verify).unwrap(),
        )
        .unwrap()
    }
}

/// A hospital's push: its budget and the model owner it allows (sealed with the data).
fn meta(name: &str, allow: &Party) -> DatasetMeta {
    DatasetMeta {
        name: name.into(),
        format: "medmnist-npz".into(),
        field: None,
        split: None,
        epsilon_budget: 8.0,
        delta: 1e-5,
        allow_model_owners: vec![allow.key()],
    }
}

fn sha256_file(path: &Path) -> String {
    bastion_actors::package::sha256_hex(&std::fs::read(path).unwrap())
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn parties_push_submit_fetch_and_verify_against_real_nodes() {
    let _one_at_a_time = serial();
    let dir = std::env::temp_dir().join(format!("bastion-parties-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let platform = SimulatedPlatform::load_or_generate(dir.join("platform")).unwrap();
    let (a, b, lab, rogue, ops, stranger) = (
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
        Party::new(),
    );

    // What every party requires of a node.
    let verify = dir.join("verify.toml");
    std::fs::write(
        &verify,
        format!(
            "allowed_measurements = [\"{}\"]\n[trust]\nsimulated = true\nsimulated_platform_dir = {:?}\n",
            bastion_measurement_hex(),
            dir.join("platform").display().to_string()
        ),
    )
    .unwrap();

    let coordinator = free_port();
    let party_ports = [free_port(), free_port()];
    let mut children: Vec<Child> = Vec::new();
    // Every node lists the group's roster: the coordinator needs each owner's allow-list.
    for (i, hospital) in ["hospital-a", "hospital-b"].iter().enumerate() {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        platform
            .issue_chip()
            .unwrap()
            .save(node_dir.join("tee"))
            .unwrap();
        let text = format!(
            r#"name = "node-{i}"
coordinator = "127.0.0.1:{coordinator}"
serve_coordinator = {coord}
state_dir = {state:?}
party_listen = "127.0.0.1:{party}"
threads = 1

[tee]
simulated = true
trust_simulated = true
platform_dir = {tee:?}
measurements = ["{m}"]

[timeouts]
heartbeat_ms = 200
node_timeout_ms = 5000

[[datasets]]
name = "{hospital}"
format = "pushed"

[[parties]]
name = "hospital-a"
key = "{a}"
role = "data-owner"
datasets = ["hospital-a"]
allow_model_owners = ["{lab}"]

[[parties]]
name = "hospital-b"
key = "{b}"
role = "data-owner"
datasets = ["hospital-b"]
allow_model_owners = ["{lab}"]

[[parties]]
name = "lab"
key = "{lab}"
role = "model-owner"

[[parties]]
name = "rogue-lab"
key = "{rogue}"
role = "model-owner"

[[parties]]
name = "ops"
key = "{ops}"
role = "operator"
"#,
            coord = i == 0,
            state = node_dir.display().to_string(),
            party = party_ports[i],
            tee = node_dir.join("tee").display().to_string(),
            m = bastion_measurement_hex(),
            a = a.key(),
            b = b.key(),
            lab = lab.key(),
            rogue = rogue.key(),
            ops = ops.key(),
        );
        std::fs::write(node_dir.join("node.toml"), text).unwrap();
        let log = std::fs::File::create(node_dir.join("node.log")).unwrap();
        children.push(
            Command::new(env!("CARGO_BIN_EXE_bastion"))
                .args(["node", "--config"])
                .arg(node_dir.join("node.toml"))
                .stdout(if i == 0 {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let logs = || {
        (0..2)
            .map(|i| {
                std::fs::read_to_string(dir.join(format!("node-{i}/node.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n-----\n")
    };
    party_ports.iter().for_each(|p| wait_listening(*p));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Files: each hospital's tiles, and one with a label outside the job's two classes.
    let file = |name: &str, seed: u64, bad_row: Option<i64>| -> PathBuf {
        let tiles = cancer_tiles(32, 16, seed);
        if let Some(row) = bad_row {
            let _ = tiles.labels.get(row).fill_(7);
        }
        let path = dir.join(name);
        write_medmnist_npz(&path, &[(Split::Train, &tiles)]).unwrap();
        path
    };
    let (file_a, file_b, bad_a) = (
        file("a.npz", 1, None),
        file("b.npz", 2, None),
        file("bad.npz", 1, Some(5)),
    );

    let job = r#"datasets = ["hospital-a", "hospital-b"]
[model]
kind = "resnet"
image_size = 16
[privacy]
epsilon = 4.0
[schedule]
nodes = 2
batch_size = 16
steps = 3
checkpoint_every = 2
[eval]
format = "generated"
records = 16
"#
    .to_string();
    let spent = rt.block_on(async {
        // A model owner whom no data owner allows is refused, naming a dataset.
        let err = rogue
            .client(party_ports[0], &verify)
            .submit_job(&job)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("hospital-a"), "{err}");
        // The allowed one submits.
        let job_id = lab
            .client(party_ports[0], &verify)
            .submit_job(&job)
            .await
            .unwrap();
        assert_eq!(job_id.len(), 32, "{job_id}");

        // A bad record is refused by row and reason; nothing is sealed.
        let err = a
            .client(party_ports[0], &verify)
            .push(&meta("hospital-a", &lab), &bad_a, &mut |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 5") && err.contains("label 7"),
            "{err}\n{}",
            logs()
        );
        let pushed = std::fs::read_dir(dir.join("node-0/pushed"))
            .unwrap()
            .count();
        assert_eq!(pushed, 0, "a refused dataset left a file");
        // hospital-b may not push hospital-a's dataset, nor its own to a node that does not
        // hold it; a key nobody listed is refused before any request; the operator may not push.
        let err = b
            .client(party_ports[0], &verify)
            .push(&meta("hospital-a", &lab), &file_b, &mut |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("hospital-a"), "{err}");
        let err = b
            .client(party_ports[0], &verify)
            .push(&meta("hospital-b", &lab), &file_b, &mut |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no pushed dataset"), "{err}");
        let err = stranger
            .client(party_ports[0], &verify)
            .status()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown") || err.contains("not listed"),
            "{err}"
        );
        let err = ops
            .client(party_ports[0], &verify)
            .push(&meta("hospital-a", &lab), &file_a, &mut |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("operator"), "{err}");
        // The model owner cannot read a dataset's budget; the owner can, before training.
        assert!(lab
            .client(party_ports[0], &verify)
            .spent("hospital-a")
            .await
            .is_err());

        // The hospitals push; the node answers the SHA-256 of what arrived.
        let (ra, rb) = tokio::join!(
            async {
                a.client(party_ports[0], &verify)
                    .push(&meta("hospital-a", &lab), &file_a, &mut |_| {})
                    .await
            },
            async {
                b.client(party_ports[1], &verify)
                    .push(&meta("hospital-b", &lab), &file_b, &mut |_| {})
                    .await
            }
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // The node sealed exactly the bytes sent (its digest is the file's, computed here).
        assert_eq!(ra.sealed_sha256, sha256_file(&file_a));
        assert_eq!(rb.sealed_sha256, sha256_file(&file_b));

        // The owner may lower its budget by pushing the same file again, never raise it.
        let lower = DatasetMeta {
            epsilon_budget: 7.5,
            ..meta("hospital-a", &lab)
        };
        a.client(party_ports[0], &verify)
            .push(&lower, &file_a, &mut |_| {})
            .await
            .unwrap();
        let raise = DatasetMeta {
            epsilon_budget: 9.0,
            ..meta("hospital-a", &lab)
        };
        let err = a
            .client(party_ports[0], &verify)
            .push(&raise, &file_a, &mut |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("only be lowered"), "{err}");

        // The job trains; the operator watches it end.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let status = ops.client(party_ports[0], &verify).status().await.unwrap();
            match status.state {
                JobState::Released => {
                    assert_eq!(status.step, 3);
                    break;
                }
                JobState::Failed => panic!("the job failed\n{}", logs()),
                _ => {}
            }
            assert!(Instant::now() < deadline, "the job did not end\n{}", logs());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The owner reads its spent epsilon and deletes its dataset once the job is over.
        let spent = a
            .client(party_ports[0], &verify)
            .spent("hospital-a")
            .await
            .unwrap();
        a.client(party_ports[0], &verify)
            .delete("hospital-a")
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_dir(dir.join("node-0/pushed"))
                .unwrap()
                .count(),
            0
        );
        // Only the model owner who submitted gets the release.
        assert!(rogue
            .client(party_ports[0], &verify)
            .fetch_release(&dir.join("rogue-release"))
            .await
            .is_err());
        lab.client(party_ports[0], &verify)
            .fetch_release(&dir.join("release"))
            .await
            .unwrap();
        spent
    });

    let out = children.remove(0).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", logs());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "completed", "{report}");
    let release = dir.join("release");
    for f in ["model.safetensors", "config.json", "receipt.json"] {
        assert!(
            release.join(f).exists(),
            "{f} missing from the fetched release"
        );
    }
    let verified = Command::new(env!("CARGO_BIN_EXE_bastion"))
        .args(["receipt", "verify"])
        .arg(release.join("receipt.json"))
        .arg("--model")
        .arg(&release)
        .arg("--policy")
        .arg(&verify)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // The owner's figure, from node-0's own ledger, is the group ledger's in the report.
    let _ = children[0].wait();
    let reported = report["privacy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "hospital-a")
        .unwrap()["epsilon"]
        .as_f64()
        .unwrap();
    assert!(reported > 0.0 && reported <= 4.0, "{reported}");
    assert!(
        (spent.epsilon_spent - reported).abs() <= 1e-9 * reported,
        "the owner reads {} but the report says {reported}",
        spent.epsilon_spent
    );
    assert_eq!((spent.epsilon_budget, spent.delta), (7.5, 1e-5));
    let _ = std::fs::remove_dir_all(&dir);
}
