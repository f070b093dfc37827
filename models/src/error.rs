//! The crate's one error type.
//!
//! Loading runs on files a user hands us, so every variant names the file and, where there is
//! one, the tensor or field, and carries the evidence (expected and found shapes, the dtype
//! found). Caller misuse (an impossible configuration) has its own variant, apart from bad
//! files.

use std::path::PathBuf;

/// Why building, loading or saving a model failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A config.json is not valid JSON, misses a required field or has a field of the wrong
    /// type (serde's message names the field, line and column).
    #[error("{}: {source}", path.display())]
    ConfigJson {
        /// The config file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration parsed but describes a model this crate cannot build, or builds
    /// differently from what the checkpoint's authors meant.
    #[error("{}invalid {field}: {reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    InvalidConfig {
        /// The config file, when the configuration came from one.
        path: Option<PathBuf>,
        /// The offending field.
        field: &'static str,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// A safetensors file is malformed (header, offsets or sizes).
    #[error("{}: not a valid safetensors file: {source}", path.display())]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The full tensor name looked for (with any prefix the file uses).
        name: String,
    },
    /// The checkpoint holds a tensor the model has no place for: usually a config.json that
    /// does not match the weights (e.g. fewer layers).
    #[error("{}: unexpected tensor `{name}` (does config.json match these weights?)", path.display())]
    UnexpectedTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
        /// The shape the model needs, in the checkpoint's layout.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype that cannot hold model weights.
    #[error("{}: tensor `{name}` has dtype {found}, expected F32 (or F16, BF16, F64)", path.display())]
    Dtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
        /// The dtype in the file, as safetensors names it.
        found: String,
    },
    /// The checkpoint's output layer is not the token embedding, but this model ties them.
    #[error("{}: `{name}` differs from the token embedding; this model ties them", path.display())]
    UntiedHead {
        /// The weights file.
        path: PathBuf,
        /// The output layer's name in the file.
        name: String,
    },
    /// A model variable has a kind the checkpoint format cannot store.
    #[error("cannot save variable `{name}` of kind {kind:?}")]
    UnsupportedKind {
        /// The variable's name.
        name: String,
        /// Its kind.
        kind: tch::Kind,
    },
    /// A tokenizer could not be read, trained, written, or refused a text or ids.
    #[error("{}tokenizer: {reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Tokenizer {
        /// The tokenizer.json, when the tokenizer came from or goes to a file.
        path: Option<PathBuf>,
        /// What went wrong.
        reason: String,
    },
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
