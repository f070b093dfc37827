//! Tests only: a copy of every plaintext byte this node puts on the network, so a test can
//! check what crosses the wire (inside TLS, a capture would show only ciphertext).
//!
//! Enabled by the environment variable [`TAP_ENV`] naming a directory; the node appends its
//! control frames to `<node>.control` and its ring payloads to `<node>.ring`. Never set it
//! in production: it writes the (noisy) gradients to disk. The node warns when it is set.

use std::io::Write;
use std::path::PathBuf;

/// The environment variable that enables the tap.
pub const TAP_ENV: &str = "BASTION_DANGER_WIRE_TAP_FOR_TESTS";

fn file(node: &str, kind: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(TAP_ENV)?;
    Some(PathBuf::from(dir).join(format!("{node}.{kind}")))
}

/// True when the tap is on (the node logs a warning at start).
pub fn enabled() -> bool {
    std::env::var_os(TAP_ENV).is_some()
}

/// Appends `bytes` to the node's tap of `kind` ("control" or "ring"), if the tap is on.
pub fn record(node: &str, kind: &str, bytes: &[u8]) {
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

/// Appends a control message as the exact frame bytes the wire carries.
pub fn record_frame<T: serde::Serialize>(node: &str, msg: &T) {
    if enabled() {
        if let Ok(frame) = bastion_wire::encode_frame(msg, usize::MAX) {
            record(node, "control", &frame);
        }
    }
}
