//! Receipts made on the simulated TEE, then verified as a model owner would: accepted as made;
//! every body field, the signature, the key, the report and the VCEK tampered one at a time
//! and refused naming what was tampered; signed receipts whose content is wrong refused naming
//! the field; the model directory changed and refused naming the file; and the epsilon check
//! against independent reference accountants (`shared/vectors/dp/accountant.json`: Google's
//! `dp_accounting` and Microsoft's `prv-accountant`).

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use bastion_accountant::AccountantKind;
use bastion_attestation::sim::{LaunchConfig, SimulatedPlatform, SimulatedTee};
use bastion_attestation::{Policy, TrustAnchors, Verifier};
use bastion_receipt::{
    issue, model, verify, Body, DatasetRecord, JobRecord, NodeRecord, PrivacyRecord, ReceiptError,
    SegmentRecord,
};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/dp/accountant.json"
);

fn platform() -> &'static SimulatedPlatform {
    SimulatedPlatform::shared().expect("the simulated AMD chain")
}

fn tee() -> &'static SimulatedTee {
    static TEE: OnceLock<SimulatedTee> = OnceLock::new();
    TEE.get_or_init(|| platform().launch(LaunchConfig::default()).unwrap())
}

fn verifier() -> Verifier {
    verifier_allowing(vec![LaunchConfig::default_measurement()])
}

fn verifier_allowing(measurements: Vec<[u8; 48]>) -> Verifier {
    let trust = TrustAnchors::simulated(platform().ark_der(), platform().ask_der()).unwrap();
    Verifier::try_new(Policy::new(measurements), trust).unwrap()
}

fn epsilon(kind: AccountantKind, history: &[SegmentRecord], delta: f64) -> f64 {
    let mut acct = bastion_accountant::create(kind);
    for s in history {
        acct.compose(s.q, s.sigma, s.steps).unwrap();
    }
    acct.epsilon(delta).unwrap()
}

/// A release directory and a body describing it: two nodes, two datasets, 40 updates at
/// q = 0.05, sigma = 1.2, one aborted step charged to both datasets.
fn release() -> (tempfile::TempDir, Body) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), b"{\"kind\":\"resnet\"}\n").unwrap();
    std::fs::write(dir.path().join("model.safetensors"), vec![3u8; 4096]).unwrap();
    std::fs::create_dir(dir.path().join("adapter")).unwrap();
    std::fs::write(dir.path().join("adapter/adapter_config.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("privacy.json"), b"{\"note\":\"x\"}\n").unwrap();
    let history = vec![SegmentRecord {
        q: 0.05,
        sigma: 1.2,
        steps: 41,
    }];
    let eps = epsilon(AccountantKind::Pld, &history, 1e-5);
    let dataset = |name: &str, node: &str, owner: Option<&str>| DatasetRecord {
        name: name.into(),
        owner: owner.map(String::from),
        node: node.into(),
        content_sha256: bastion_receipt::sha256_hex(name.as_bytes()),
        epsilon: eps,
        delta: 1e-5,
        epsilon_budget: 8.0,
        steps: 41,
        history: history.clone(),
    };
    let node = |name: &str, datasets: &[&str], chip: [u8; 64]| NodeRecord {
        name: name.into(),
        tls_key_sha256: bastion_receipt::sha256_hex(format!("tls key of {name}").as_bytes()),
        measurement: hex::encode(LaunchConfig::default_measurement()),
        chip_id: hex::encode(chip),
        simulated: true,
        in_final_group: true,
        datasets: datasets.iter().map(|d| d.to_string()).collect(),
    };
    let body = Body {
        job: JobRecord {
            id: "0123456789abcdef0123456789abcdef".into(),
            file_sha256: Some(bastion_receipt::sha256_hex(b"[schedule]\nnodes = 2\n")),
            coordinator: "node-0".into(),
            status: "completed".into(),
            reason: "trained 40 steps".into(),
            start: "2026-05-01T12:00:00Z".into(),
            end: bastion_receipt::rfc3339(SystemTime::now()),
            simulated_tee: true,
        },
        model: model::hash_dir(dir.path()).unwrap(),
        privacy: PrivacyRecord {
            accountant: "pld".into(),
            q: 0.05,
            sigma: 1.2,
            max_grad_norm: 1.0,
            steps: 40,
            planned_steps: 40,
            deterministic_for_tests: false,
        },
        datasets: vec![
            dataset("hospital-a", "node-0", Some("Hospital A")),
            dataset("hospital-b", "node-1", None),
        ],
        nodes: vec![
            node("node-0", &["hospital-a"], platform().chip_id()),
            node("node-1", &["hospital-b"], [9u8; 64]),
        ],
    };
    (dir, body)
}

fn signed(dir: &Path, body: &Body) -> Vec<u8> {
    let receipt = issue(body, tee()).unwrap();
    receipt.write_into(dir).unwrap();
    std::fs::read(dir.join("receipt.json")).unwrap()
}

fn check(bytes: &[u8], dir: &Path) -> Result<bastion_receipt::Verified, ReceiptError> {
    verify(bytes, &verifier(), SystemTime::now(), dir)
}

fn refused_naming(bytes: &[u8], dir: &Path, field: &str) -> ReceiptError {
    let err = check(bytes, dir).expect_err(&format!("a receipt with {field} changed was accepted"));
    assert_eq!(err.field(), Some(field), "{err}");
    assert!(
        err.to_string().contains(field),
        "the message does not name {field}: {err}"
    );
    err
}

/// The value at `path` (`body.a.b[2].c`) inside the receipt's JSON.
fn at<'a>(receipt: &'a mut Value, path: &str) -> &'a mut Value {
    let mut v = receipt;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap();
            v = &mut v[r[..end].parse::<usize>().unwrap()];
            rest = &r[end + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            v = &mut v[&r[..end]];
            rest = &r[end..];
        }
    }
    v
}

/// Another value of the same kind, as a forger would write.
fn changed(v: &Value) -> Value {
    match v {
        Value::Bool(b) => Value::Bool(!b),
        Value::String(s) if s.is_empty() => Value::String("x".into()),
        Value::String(s) => {
            let mut c: Vec<char> = s.chars().collect();
            let last = c.len() - 1;
            c[last] = if c[last] == '0' { '1' } else { '0' };
            Value::String(c.into_iter().collect())
        }
        Value::Number(n) if n.is_u64() => Value::from(n.as_u64().unwrap() + 1),
        Value::Number(n) => Value::from(n.as_f64().unwrap() * 0.5),
        Value::Null => Value::String("forged".into()),
        Value::Array(_) => Value::Array(vec![Value::from(1)]),
        Value::Object(_) => serde_json::json!({"x": 1}),
    }
}

#[test]
fn a_receipt_verifies_as_made() {
    let (dir, body) = release();
    let bytes = signed(dir.path(), &body);
    let ok = check(&bytes, dir.path()).unwrap();
    assert_eq!(ok.body, body);
    assert!(ok.verdict.simulated);
    assert_eq!(ok.recomputed_epsilon.len(), 2);
    assert_eq!(ok.recomputed_epsilon[0], body.datasets[0].epsilon);
    // The file holds what the brief says, readable as plain JSON.
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["format"], "bastion-ai/receipt/v1");
    assert_eq!(v["evidence"]["report"].as_str().unwrap().len(), 2 * 1184);
    assert_eq!(
        v["body"]["datasets"][0]["epsilon"]
            .as_f64()
            .unwrap()
            .to_bits(),
        body.datasets[0].epsilon.to_bits()
    );
    // The report binds the key: REPORT_DATA at 0x50 is SHA-512(label || len || spki).
    let report = hex::decode(v["evidence"]["report"].as_str().unwrap()).unwrap();
    let key = hex::decode(v["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        report[0x50..0x90],
        bastion_receipt::key_report_data(&key)[..]
    );
}

#[test]
fn each_tampered_body_field_is_refused_by_name() {
    let (dir, body) = release();
    let bytes = signed(dir.path(), &body);
    let original: Value = serde_json::from_slice(&bytes).unwrap();
    let fields: Vec<String> = original["signed_fields"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(fields.len() > 50, "{fields:?}");
    for field in &fields {
        let mut forged = original.clone();
        let leaf = at(&mut forged, field);
        *leaf = changed(leaf);
        let err = refused_naming(&serde_json::to_vec(&forged).unwrap(), dir.path(), field);
        assert!(
            matches!(err, ReceiptError::Tampered { .. }),
            "{field}: {err}"
        );
    }
    // A field removed, a field added.
    let mut forged = original.clone();
    forged["body"]["job"]
        .as_object_mut()
        .unwrap()
        .remove("reason");
    refused_naming(
        &serde_json::to_vec(&forged).unwrap(),
        dir.path(),
        "body.job.reason",
    );
    let mut forged = original.clone();
    forged["body"]["datasets"][1]["history"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"q": 0.05, "sigma": 1.2, "steps": 1}));
    refused_naming(
        &serde_json::to_vec(&forged).unwrap(),
        dir.path(),
        "body.datasets[1].history[1].q",
    );
    let mut forged = original.clone();
    forged["body"]["datasets"].as_array_mut().unwrap().pop();
    let err = check(&serde_json::to_vec(&forged).unwrap(), dir.path()).unwrap_err();
    assert!(
        matches!(&err, ReceiptError::Removed { field } if field.starts_with("body.datasets[1].")),
        "{err}"
    );
}

#[test]
fn tampered_signature_key_report_and_vcek_are_refused_by_name() {
    let (dir, body) = release();
    let bytes = signed(dir.path(), &body);
    let original: Value = serde_json::from_slice(&bytes).unwrap();
    let flip_hex = |v: &Value, path: &str, byte: usize| -> Vec<u8> {
        let mut forged = v.clone();
        let text = at(&mut forged, path);
        let mut raw = hex::decode(text.as_str().unwrap()).unwrap();
        raw[byte] ^= 0x01;
        *text = Value::String(hex::encode(raw));
        serde_json::to_vec(&forged).unwrap()
    };
    // The last byte of the DER signature (inside s).
    let sig_len = original["signature"].as_str().unwrap().len() / 2;
    let e = refused_naming(
        &flip_hex(&original, "signature", sig_len - 1),
        dir.path(),
        "signature",
    );
    assert!(matches!(e, ReceiptError::Signature { .. }), "{e}");
    // A byte of the public point: the report binds another key.
    let e = refused_naming(&flip_hex(&original, "key", 40), dir.path(), "key");
    assert!(matches!(e, ReceiptError::KeyNotBound { .. }), "{e}");
    // MEASUREMENT (0x90) and REPORT_DATA (0x50) of the report: its signature fails.
    for offset in [0x90, 0x50] {
        let e = refused_naming(
            &flip_hex(&original, "evidence.report", offset),
            dir.path(),
            "evidence.report",
        );
        assert!(
            matches!(
                e,
                ReceiptError::Evidence {
                    code: "evidence.signature",
                    ..
                }
            ),
            "{e}"
        );
    }
    // Inside the VCEK's signed part and in its signature: the simulated ASK did not sign it.
    let vcek_len = original["evidence"]["vcek"].as_str().unwrap().len() / 2;
    for offset in [vcek_len / 2, vcek_len - 2] {
        refused_naming(
            &flip_hex(&original, "evidence.vcek", offset),
            dir.path(),
            "evidence.vcek",
        );
    }
    // The signed table itself: the signature no longer covers it.
    let mut forged = original.clone();
    let table = forged["signed_fields"].as_object_mut().unwrap();
    let digest = table["body.job.id"].as_str().unwrap().replace('a', "b");
    table.insert("body.job.id".into(), Value::String(digest));
    refused_naming(
        &serde_json::to_vec(&forged).unwrap(),
        dir.path(),
        "signature",
    );
    // Another format, an unknown top-level member.
    let mut forged = original.clone();
    forged["format"] = Value::String("bastion-ai/receipt/v0".into());
    refused_naming(&serde_json::to_vec(&forged).unwrap(), dir.path(), "format");
    let mut forged = original.clone();
    forged["comment"] = Value::String("trust me".into());
    refused_naming(&serde_json::to_vec(&forged).unwrap(), dir.path(), "receipt");
}

#[test]
fn a_valid_key_swapped_in_is_not_bound_by_the_report() {
    // A forger signs their own body with their own key and keeps the coordinator's evidence.
    let (dir, body) = release();
    let genuine: Value = serde_json::from_slice(&signed(dir.path(), &body)).unwrap();
    let mut forged_body = body.clone();
    forged_body.datasets[0].epsilon /= 4.0;
    let mut forged: Value = serde_json::to_value(issue(&forged_body, tee()).unwrap()).unwrap();
    forged["evidence"] = genuine["evidence"].clone();
    let e = refused_naming(&serde_json::to_vec(&forged).unwrap(), dir.path(), "key");
    assert!(matches!(e, ReceiptError::KeyNotBound { .. }), "{e}");
}

#[test]
fn signed_but_wrong_content_is_refused_by_field() {
    let (dir, good) = release();
    type Edit = Box<dyn Fn(&mut Body)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "body.datasets[0].epsilon",
            Box::new(|b| b.datasets[0].epsilon *= 0.9),
        ),
        (
            "body.datasets[1].steps",
            Box::new(|b| b.datasets[1].steps = 40),
        ),
        (
            "body.datasets[0].history",
            Box::new(|b| {
                b.privacy.steps = 45;
            }),
        ),
        (
            "body.datasets[0].node",
            Box::new(|b| b.datasets[0].node = "node-7".into()),
        ),
        (
            "body.privacy.deterministic_for_tests",
            Box::new(|b| b.privacy.deterministic_for_tests = true),
        ),
        (
            "body.privacy.accountant",
            Box::new(|b| b.privacy.accountant = "moments".into()),
        ),
        (
            "body.nodes[0].measurement",
            Box::new(|b| b.nodes[0].measurement = hex::encode([1u8; 48])),
        ),
        (
            "body.nodes[1].measurement",
            Box::new(|b| b.nodes[1].measurement = hex::encode([2u8; 48])),
        ),
        (
            "body.nodes[0].chip_id",
            Box::new(|b| b.nodes[0].chip_id = hex::encode([5u8; 64])),
        ),
        (
            "body.job.coordinator",
            Box::new(|b| b.job.coordinator = "node-9".into()),
        ),
        (
            "body.job.simulated_tee",
            Box::new(|b| b.job.simulated_tee = false),
        ),
        (
            "body.model.sha256",
            Box::new(|b| b.model.sha256 = bastion_receipt::sha256_hex(b"another model")),
        ),
        (
            "body.model.files[1].path",
            Box::new(|b| b.model.files.swap(0, 1)),
        ),
    ];
    for (field, edit) in cases {
        let mut body = good.clone();
        edit(&mut body);
        let bytes = signed(dir.path(), &body);
        refused_naming(&bytes, dir.path(), field);
    }
    // A node whose measurement the policy does not list, although the coordinator's is.
    let bytes = signed(dir.path(), &good);
    let mut other = good.clone();
    other.nodes[1].measurement = hex::encode([4u8; 48]);
    let bytes_other = signed(dir.path(), &other);
    check(&bytes, dir.path()).unwrap();
    let both = verifier_allowing(vec![LaunchConfig::default_measurement(), [4u8; 48]]);
    verify(&bytes_other, &both, SystemTime::now(), dir.path()).unwrap();
    // The coordinator's own measurement not allowed: its evidence is refused by the policy.
    let err = verify(
        &bytes,
        &verifier_allowing(vec![[4u8; 48]]),
        SystemTime::now(),
        dir.path(),
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("evidence.report"), "{err}");
    assert!(
        err.to_string().contains("policy.measurement") || err.to_string().contains("MEASUREMENT"),
        "{err}"
    );
}

#[test]
fn a_changed_model_directory_is_refused_naming_the_file() {
    let (dir, body) = release();
    let bytes = signed(dir.path(), &body);
    let index = |p: &str| body.model.files.iter().position(|f| f.path == p).unwrap();
    let w = index("model.safetensors");
    // Same size, one byte changed.
    let path = dir.path().join("model.safetensors");
    let mut weights = std::fs::read(&path).unwrap();
    weights[100] ^= 1;
    std::fs::write(&path, &weights).unwrap();
    refused_naming(&bytes, dir.path(), &format!("body.model.files[{w}].sha256"));
    weights[100] ^= 1;
    weights.push(0);
    std::fs::write(&path, &weights).unwrap();
    refused_naming(&bytes, dir.path(), &format!("body.model.files[{w}].bytes"));
    weights.pop();
    std::fs::write(&path, &weights).unwrap();
    check(&bytes, dir.path()).unwrap();
    // A file removed, a file added.
    let a = index("adapter/adapter_config.json");
    std::fs::remove_file(dir.path().join("adapter/adapter_config.json")).unwrap();
    refused_naming(&bytes, dir.path(), &format!("body.model.files[{a}]"));
    std::fs::write(dir.path().join("adapter/adapter_config.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("adapter/extra.bin"), b"?").unwrap();
    let err = refused_naming(&bytes, dir.path(), "model");
    assert!(err.to_string().contains("adapter/extra.bin"), "{err}");
}

/// The recorded epsilon against independent accountants: at `prv-accountant`'s upper bound
/// it is accepted (ours is tighter), at its lower bound (below the true epsilon) refused as
/// understated, with both the PLD and the RDP accountant named in the body.
#[test]
fn epsilon_is_checked_against_the_mechanism_with_independent_references() {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("{VECTORS}: {e}"));
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let (dir, good) = release();
    for name in ["gpt_ft", "few_steps_big_q"] {
        let case = vectors["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        let f = |k: &str| case[k].as_f64().unwrap();
        let steps = case["steps"].as_u64().unwrap();
        let with = |accountant: &str, eps: f64| {
            let mut b = good.clone();
            b.privacy.accountant = accountant.into();
            b.privacy.q = f("q");
            b.privacy.sigma = f("sigma");
            b.privacy.steps = steps;
            for d in &mut b.datasets {
                d.delta = f("delta");
                d.steps = steps;
                d.history = vec![SegmentRecord {
                    q: f("q"),
                    sigma: f("sigma"),
                    steps,
                }];
                d.epsilon = eps;
            }
            signed(dir.path(), &b)
        };
        check(&with("pld", f("prv_eps_up")), dir.path())
            .unwrap_or_else(|e| panic!("{name}: PLD at the PRV upper bound: {e}"));
        let e = refused_naming(
            &with("pld", f("prv_eps_low")),
            dir.path(),
            "body.datasets[0].epsilon",
        );
        assert!(matches!(e, ReceiptError::EpsilonUnderstated { .. }), "{e}");
        // RDP is looser: dp_accounting's RDP figure (to 0.1%) passes, the tight one does not.
        check(&with("rdp", f("rdp_eps") * 1.001), dir.path())
            .unwrap_or_else(|e| panic!("{name}: RDP: {e}"));
        refused_naming(
            &with("rdp", f("pld_eps")),
            dir.path(),
            "body.datasets[0].epsilon",
        );
    }
}
