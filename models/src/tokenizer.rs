//! Text to token ids and back, through Hugging Face's `tokenizers` crate, so a checkpoint's
//! `tokenizer.json` gives exactly the ids `transformers` gives.
//!
//! [`TextTokenizer::encode`] is `tokenizer(text)["input_ids"]`: the tokenizer's own
//! normalizer, pre-tokenizer and model, then its post-processor, which adds special tokens only
//! if the file says so (GPT-2's byte-level post-processor adds none). [`TextTokenizer::decode`]
//! keeps special tokens, as `tokenizer.decode(ids)` does.
//!
//! [`train_byte_level_bpe`] trains a GPT-2-style byte-level BPE tokenizer (the setup of the
//! Python `ByteLevelBPETokenizer`) with `<|endoftext|>` as its one special token, for models
//! trained from scratch.

use crate::ModelError;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::{AddedToken, Tokenizer};

/// GPT-2's end-of-text token, its document separator and only special token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A tokenizer loaded from a Hugging Face `tokenizer.json`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// The file as given, so every node gets byte-identical content.
    json: Vec<u8>,
    /// Where it was read from, for error messages.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("eos_id", &self.eos_id())
            .finish()
    }
}

fn tokenizer_error(path: Option<&Path>, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer {
        path: path.map(Path::to_path_buf),
        reason: reason.to_string(),
    }
}

impl TextTokenizer {
    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<TextTokenizer, ModelError> {
        let json = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TextTokenizer::parse(json, Some(path))
    }

    /// Parses the content of a `tokenizer.json` (e.g. as received from the coordinator).
    pub fn from_bytes(json: &[u8]) -> Result<TextTokenizer, ModelError> {
        TextTokenizer::parse(json.to_vec(), None)
    }

    fn parse(json: Vec<u8>, path: Option<&Path>) -> Result<TextTokenizer, ModelError> {
        let inner = Tokenizer::from_bytes(&json)
            .map_err(|e| tokenizer_error(path, format!("not a valid tokenizer.json: {e}")))?;
        // Padding or truncation in the file would change ids per call; transformers ignores
        // neither, but our callers window and pad themselves, so refuse to guess.
        if inner.get_truncation().is_some() || inner.get_padding().is_some() {
            return Err(tokenizer_error(
                path,
                "tokenizer.json enables truncation or padding; remove them (sequences are \
                 windowed and padded by the trainer)",
            ));
        }
        Ok(TextTokenizer {
            inner,
            json,
            path: path.map(Path::to_path_buf),
        })
    }

    /// The token ids of `text`, as `transformers`' `tokenizer(text)["input_ids"]`.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, ModelError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| tokenizer_error(self.path.as_deref(), format!("encoding failed: {e}")))?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// The text of `ids`, special tokens kept (`tokenizer.decode(ids)`). An id outside the
    /// vocabulary is an error naming it.
    pub fn decode(&self, ids: &[i64]) -> Result<String, ModelError> {
        let vocab = self.vocab_size();
        let ids: Vec<u32> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                u32::try_from(id)
                    .ok()
                    .filter(|&id| (id as usize) < vocab)
                    .ok_or_else(|| {
                        tokenizer_error(
                            self.path.as_deref(),
                            format!("id {id} at position {i} is outside the vocabulary of {vocab}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        self.inner
            .decode(&ids, false)
            .map_err(|e| tokenizer_error(self.path.as_deref(), format!("decoding failed: {e}")))
    }

    /// The number of ids, added tokens included (`len(tokenizer)` in transformers): a model
    /// needs at least this many embedding rows.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `<|endoftext|>`, if the vocabulary has it.
    pub fn eos_id(&self) -> Option<i64> {
        self.inner.token_to_id(END_OF_TEXT).map(i64::from)
    }

    /// The `tokenizer.json` content this tokenizer was made from, byte for byte.
    pub fn to_bytes(&self) -> &[u8] {
        &self.json
    }

    /// Writes the `tokenizer.json` content to `path` (write-then-rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        write_atomically(path, &self.json)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Trains a GPT-2-style byte-level BPE tokenizer on `texts` and writes its `tokenizer.json`
/// to `out`; returns it loaded.
///
/// The setup is that of GPT-2 and of the Python `ByteLevelBPETokenizer`: no normalizer, the
/// byte-level pre-tokenizer (GPT-2's split regex, no prefix space) whose 256-symbol byte
/// alphabet is always in the vocabulary (so any text encodes, nothing is unknown), pairs
/// merged when seen at least twice, and `<|endoftext|>` as the only special token (id 0).
/// `vocab_size` counts all of these and is a maximum (merging stops early when no pair is seen
/// twice); it must leave room for the byte alphabet and the special token. Training is deterministic for the same texts.
pub fn train_byte_level_bpe(
    texts: &[String],
    vocab_size: usize,
    out: &Path,
) -> Result<TextTokenizer, ModelError> {
    let minimum = ByteLevel::alphabet().len() + 1;
    if vocab_size < minimum {
        return Err(tokenizer_error(
            Some(out),
            format!(
                "vocab_size {vocab_size} is below {minimum} (the 256 byte symbols and \
                 {END_OF_TEXT})"
            ),
        ));
    }
    if texts.iter().all(|t| t.is_empty()) {
        return Err(tokenizer_error(Some(out), "no text to train on"));
    }
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
        .with_post_processor(Some(ByteLevelProcessor::default().trim_offsets(false)))
        .with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| tokenizer_error(Some(out), format!("training failed: {e}")))?;
    let json = tokenizer
        .to_string(true)
        .map_err(|e| tokenizer_error(Some(out), format!("serialising failed: {e}")))?;
    write_atomically(out, json.as_bytes())?;
    TextTokenizer::parse(json.into_bytes(), Some(out))
}

/// [`train_byte_level_bpe`] on the contents of text files (each file one text).
pub fn train_byte_level_bpe_files(
    files: &[PathBuf],
    vocab_size: usize,
    out: &Path,
) -> Result<TextTokenizer, ModelError> {
    let texts = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f).map_err(|source| ModelError::Io {
                path: f.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    train_byte_level_bpe(&texts, vocab_size, out)
}
