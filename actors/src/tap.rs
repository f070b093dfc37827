//! Tests only: a copy of every plaintext byte this node puts on the network, so a test can
//! check what crosses the wire (inside TLS, a capture would show only ciphertext).
//!
//! Exists only in builds with the `danger-test-switches` feature (the runtime's tests); there
//! the environment variable [`TAP_ENV`] names a directory and the node appends its control
//! frames to `<node>.control` and its ring payloads to `<node>.ring`. It writes this node's
//! noisy share to disk in plaintext, so a release build never has it: there [`refuse_if_set`]
//! stops the node at start when the variable is set, rather than let someone believe it works.

/// The environment variable that enables the tap.
pub const TAP_ENV: &str = "BASTION_DANGER_WIRE_TAP_FOR_TESTS";

/// At node start: an error when the tap is asked for in a build that has no tap.
pub fn refuse_if_set() -> Result<(), String> {
    if cfg!(feature = "danger-test-switches") || std::env::var_os(TAP_ENV).is_none() {
        return Ok(());
    }
    Err(format!(
        "{TAP_ENV} is set, but this is a release build without test switches: refusing to start \
         (unset it; the wire tap exists only in test builds)"
    ))
}

#[cfg(feature = "danger-test-switches")]
mod imp {
    use std::io::Write;
    use std::path::PathBuf;

    fn file(node: &str, kind: &str) -> Option<PathBuf> {
        let dir = std::env::var_os(super::TAP_ENV)?;
        Some(PathBuf::from(dir).join(format!("{node}.{kind}")))
    }

    pub(super) fn enabled() -> bool {
        std::env::var_os(super::TAP_ENV).is_some()
    }

    pub(super) fn record(node: &str, kind: &str, bytes: &[u8]) {
        if let Some(path) = file(node, kind) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(bytes));
            if let Err(e) = appended {
                tracing::error!(path = %path.display(), error = %e, "wire tap write failed");
            }
        }
    }
}

#[cfg(not(feature = "danger-test-switches"))]
mod imp {
    pub(super) fn enabled() -> bool {
        false
    }

    pub(super) fn record(_node: &str, _kind: &str, _bytes: &[u8]) {}
}

/// True when the tap is on (the node logs a warning at start). Always false in release.
pub fn enabled() -> bool {
    imp::enabled()
}

/// Appends `bytes` to the node's tap of `kind` ("control" or "ring"), if the tap is on.
pub fn record(node: &str, kind: &str, bytes: &[u8]) {
    imp::record(node, kind, bytes)
}

/// Appends a control message as the exact frame bytes the wire carries.
pub fn record_frame<T: serde::Serialize>(node: &str, msg: &T) {
    if enabled() {
        if let Ok(frame) = bastion_wire::encode_frame(msg, usize::MAX) {
            record(node, "control", &frame);
        }
    }
}
