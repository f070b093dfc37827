//! A node's simulated machine: what `SimulatedPlatform::issue_chip` hands a node, and that the
//! node's directory never holds the simulated AMD root keys (the ARK and ASK private keys).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use bastion_attestation::sim::{
    default_tcb, LaunchConfig, SimError, SimulatedChip, SimulatedPlatform,
};
use bastion_attestation::{Policy, Tcb, TrustAnchors, Verifier};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PrivateKeyParts;
use rsa::RsaPrivateKey;

fn platform() -> &'static SimulatedPlatform {
    static P: OnceLock<SimulatedPlatform> = OnceLock::new();
    P.get_or_init(|| {
        SimulatedPlatform::load_or_generate(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim-tee"),
        )
        .expect("simulated platform")
    })
}

/// A fresh path under the target's scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chip-{name}-{}-{nanos}", std::process::id()));
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_saved_chip_holds_no_root_private_key_and_is_private() {
    // The root keys as the platform saves them: what must never reach a node.
    let roots = Scratch::new("roots");
    platform().save(roots.path()).unwrap();
    let ark_key = std::fs::read(roots.path().join("ark.key.der")).unwrap();
    let ask_key = std::fs::read(roots.path().join("ask.key.der")).unwrap();
    assert!(ark_key.len() > 2000, "an RSA-4096 PKCS#8 key");

    let node = Scratch::new("node");
    platform().issue_chip().unwrap().save(node.path()).unwrap();
    let saved = files(node.path());
    let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.txt",
            "ark.der",
            "ask.der",
            "chip.secret",
            "vcek.der",
            "vcek.key.der"
        ]
    );
    // The secret parts (private exponent and primes; the modulus is public and in the
    // certificates), in any encoding that keeps a 32-byte run of them.
    let secrets: Vec<Vec<u8>> = [&ark_key, &ask_key]
        .into_iter()
        .flat_map(|der| {
            let key = RsaPrivateKey::from_pkcs8_der(der).unwrap();
            let mut parts = vec![key.d().to_bytes_be()];
            parts.extend(key.primes().iter().map(|p| p.to_bytes_be()));
            parts
        })
        .collect();
    let leaks = |bytes: &[u8]| {
        secrets
            .iter()
            .any(|s| s.windows(32).any(|w| bytes.windows(32).any(|b| b == w)))
    };
    for (name, bytes) in &saved {
        assert!(!leaks(bytes), "{name} contains root private key material");
    }
    // Negative control: the same scan finds them in the platform's own directory.
    assert!(leaks(&ark_key) && leaks(&ask_key));
    // The public certificates are the platform's.
    assert_eq!(
        std::fs::read(node.path().join("ark.der")).unwrap(),
        platform().ark_der()
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(node.path()), 0o700);
        for (name, _) in &saved {
            assert_eq!(mode(&node.path().join(name)), 0o600, "{name}");
        }
        assert_eq!(mode(&roots.path().join("ark.key.der")), 0o600);
    }
}

#[test]
fn a_loaded_chip_launches_guests_that_verify_under_the_simulated_anchors() {
    let dir = Scratch::new("roundtrip");
    let issued = platform().issue_chip().unwrap();
    issued.save(dir.path()).unwrap();
    let chip = SimulatedChip::load(dir.path()).unwrap();
    assert_eq!(chip.chip_id(), issued.chip_id());
    assert_ne!(chip.chip_id(), platform().chip_id(), "a chip of its own");
    assert_eq!(chip.tcb(), default_tcb());
    assert_eq!(chip.vcek_der(), issued.vcek_der());

    let config = LaunchConfig::with_measurement([7; 48]);
    let tee = chip.launch(config).unwrap();
    let report = tee.report(&[1; 64]).unwrap();
    let trust = TrustAnchors::simulated(chip.ark_der(), chip.ask_der()).unwrap();
    let verifier = Verifier::try_new(Policy::new(vec![[7; 48]]), trust).unwrap();
    let verdict = verifier
        .verify(&report, tee.vcek_der(), Some(&[1; 64]), SystemTime::now())
        .unwrap();
    assert!(verdict.simulated);
    assert_eq!(verdict.chip_id, chip.chip_id());
    // Sealing keys are the chip's: the same after a reload, another chip's differ.
    let again = SimulatedChip::load(dir.path()).unwrap();
    let k = |c: &SimulatedChip| {
        c.launch(LaunchConfig::with_measurement([7; 48]))
            .unwrap()
            .derive_key(b"seal")
    };
    assert_eq!(k(&chip), k(&again));
    assert_ne!(k(&chip), k(&platform().issue_chip().unwrap()));
}

#[test]
fn a_chip_launches_only_at_the_tcb_of_its_vcek() {
    let chip = platform().issue_chip().unwrap();
    let newer = Tcb {
        snp: 9,
        ..default_tcb()
    };
    let err = chip
        .launch(LaunchConfig {
            tcb: newer,
            ..LaunchConfig::default()
        })
        .unwrap_err();
    assert!(matches!(err, SimError::TcbMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("issue_chip_at"), "{err}");
    // The platform (the simulation's AMD) can issue one for that TCB.
    let patched = platform().issue_chip_at(newer).unwrap();
    assert_eq!(patched.tcb(), newer);
    patched
        .launch(LaunchConfig {
            tcb: newer,
            ..LaunchConfig::default()
        })
        .unwrap();
}

#[test]
fn wrong_directories_are_refused_by_what_they_are() {
    // A platform directory (root keys) is not a chip.
    let roots = Scratch::new("roots-as-chip");
    platform().save(roots.path()).unwrap();
    let err = SimulatedChip::load(roots.path()).unwrap_err();
    assert!(
        matches!(
            &err,
            SimError::WrongDirectory {
                expected: "simulated chip",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("private keys"), "{err}");

    // A directory without a VCEK key is not a chip either.
    let empty = Scratch::new("empty");
    std::fs::create_dir_all(empty.path()).unwrap();
    let err = SimulatedChip::load(empty.path()).unwrap_err();
    assert!(err.to_string().contains("vcek.key.der"), "{err}");

    // And a chip directory is not a platform: it cannot certify anything.
    let node = Scratch::new("chip-as-roots");
    platform().issue_chip().unwrap().save(node.path()).unwrap();
    let err = SimulatedPlatform::load(node.path()).unwrap_err();
    assert!(
        matches!(&err, SimError::WrongDirectory { .. })
            && err.to_string().contains("SimulatedChip::load"),
        "{err:?}"
    );
    // Negative control: the same directory loads as a chip.
    SimulatedChip::load(node.path()).unwrap();
}

#[test]
fn a_chip_with_files_from_another_chip_is_refused_with_the_file_named() {
    let a = Scratch::new("a");
    let b = Scratch::new("b");
    platform().issue_chip().unwrap().save(a.path()).unwrap();
    platform().issue_chip().unwrap().save(b.path()).unwrap();
    for (file, blamed) in [
        ("vcek.key.der", "vcek.key.der"),
        ("chip.secret", "chip.secret"),
    ] {
        let mixed = Scratch::new("mixed");
        platform().issue_chip().unwrap().save(mixed.path()).unwrap();
        for f in ["vcek.der", "vcek.key.der", "chip.secret"] {
            std::fs::copy(a.path().join(f), mixed.path().join(f)).unwrap();
        }
        SimulatedChip::load(mixed.path()).expect("a's files together are a's chip");
        std::fs::copy(b.path().join(file), mixed.path().join(file)).unwrap();
        let err = SimulatedChip::load(mixed.path()).unwrap_err();
        assert!(
            matches!(&err, SimError::BadChainFile { path, .. } if path.ends_with(blamed)),
            "{file}: {err:?}"
        );
    }
}
