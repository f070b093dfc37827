//! Text records: `jsonl` (one JSON object per line, its text in `field`) and `text-lines`
//! (one record per line).
//!
//! One line is one record and one sample, the privacy unit: records are never packed
//! together. Each is tokenized with the job's tokenizer exactly as `transformers`'
//! `tokenizer(text)["input_ids"]`, truncated to `seq_len` tokens and right-padded with the pad
//! id (the tokenizer's `<|endoftext|>`, else 0) under an attention mask of 0. Empty lines are
//! skipped (they hold no record); a line whose text tokenizes to fewer than 2 tokens is
//! refused, since a causal LM has nothing to predict from it. Line numbers in errors count
//! from 1, every line of the file included.

use super::{index_tensor, DataError, DataSource};
use bastion_models::tokenizer::TextTokenizer;
use std::path::Path;
use tch::{Kind, Tensor};

/// Tokenized texts: `ids (N, T)` int64 right-padded with `pad_id`, `mask (N, T)` int64 (1 for
/// a real token, 0 for padding). The loss at position t (predicting t + 1) counts when
/// `mask[t + 1]` is 1.
#[derive(Debug)]
pub struct TokenSet {
    /// `(N, T)` token ids.
    pub ids: Tensor,
    /// `(N, T)` attention mask, int64 0/1, a prefix of ones in each row.
    pub mask: Tensor,
    /// The id padded positions hold.
    pub pad_id: i64,
}

/// The first bytes of [`TokenSet::to_bytes`].
pub const TOKENS_MAGIC: &[u8; 8] = b"BSTTOK01";

impl TokenSet {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.ids.size()[0] as usize
    }

    /// True when the set has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens per record (`T`).
    pub fn seq_len(&self) -> usize {
        self.ids.size()[1] as usize
    }

    /// The records at `indices`: `(ids, mask)`.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Tensor) {
        let idx = index_tensor(indices);
        (
            self.ids.index_select(0, &idx),
            self.mask.index_select(0, &idx),
        )
    }

    /// The set as bytes: [`TOKENS_MAGIC`], count, seq_len, pad id (u64/i64 LE), then `i64`
    /// ids and one byte per mask entry.
    pub fn to_bytes(&self) -> Result<Vec<u8>, tch::TchError> {
        let ids = Vec::<i64>::try_from(&self.ids.reshape([-1]))?;
        let mask = Vec::<i64>::try_from(&self.mask.reshape([-1]))?;
        let mut out = Vec::with_capacity(32 + ids.len() * 9);
        out.extend_from_slice(TOKENS_MAGIC);
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.seq_len() as u64).to_le_bytes());
        out.extend_from_slice(&self.pad_id.to_le_bytes());
        ids.iter()
            .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
        out.extend(mask.iter().map(|&m| m as u8));
        Ok(out)
    }

    /// Reads [`TokenSet::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<TokenSet, String> {
        if !bytes.starts_with(TOKENS_MAGIC) {
            return Err("not a token set (bad magic)".into());
        }
        let word = |at: usize| -> Result<u64, String> {
            let b = bytes.get(at..at + 8).ok_or("truncated header")?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let (n, t, pad_id) = (word(8)? as usize, word(16)? as usize, word(24)? as i64);
        let cells = n.checked_mul(t).ok_or("token set dimensions overflow")?;
        if cells.checked_mul(9).and_then(|b| b.checked_add(32)) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes do not hold {n} records of {t} tokens",
                bytes.len()
            ));
        }
        let body = &bytes[32..];
        let ids: Vec<i64> = body[..cells * 8]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let mask: Vec<i64> = body[cells * 8..].iter().map(|&m| i64::from(m)).collect();
        if mask.iter().any(|&m| m > 1) {
            return Err("mask entries must be 0 or 1".into());
        }
        let shape = [n as i64, t as i64];
        Ok(TokenSet {
            ids: Tensor::from_slice(&ids).view(shape),
            mask: Tensor::from_slice(&mask).view(shape),
            pad_id,
        })
    }
}

/// The id padding holds: `<|endoftext|>` if the tokenizer has it, else 0. Padded positions
/// are masked out, so the choice only has to be a valid id.
pub fn pad_id(tokenizer: &TextTokenizer) -> i64 {
    tokenizer.eos_id().unwrap_or(0)
}

/// The text of one JSON Lines record.
fn json_text(line: &str, field: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("is not valid JSON: {e}"))?;
    let object = value.as_object().ok_or("is not a JSON object")?;
    match object.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "field {field:?} is not a string (found {})",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
                serde_json::Value::String(_) => unreachable!(),
            }
        )),
        None => Err(format!("has no field {field:?}")),
    }
}

/// Loads a `jsonl` or `text-lines` source: every line tokenized and checked.
pub fn load_text(
    source: &DataSource,
    content: Option<&[u8]>,
    tokenizer: &TextTokenizer,
    seq_len: usize,
    vocab_size: usize,
) -> Result<TokenSet, DataError> {
    let (path, field): (&Path, Option<&str>) = match source {
        DataSource::Jsonl { path, field } => (path, Some(field)),
        DataSource::TextLines { path } => (path, None),
        other => {
            return Err(DataError::Mismatch {
                source_name: other.name(),
                reason: "is not a text format".into(),
            })
        }
    };
    if seq_len < 2 {
        return Err(DataError::file(
            path,
            format!("seq_len {seq_len}: a record needs at least 2 tokens"),
        ));
    }
    let pad = pad_id(tokenizer);
    if pad < 0 || pad as u64 >= vocab_size as u64 {
        return Err(DataError::file(
            path,
            format!("pad id {pad} is outside the model's vocabulary of {vocab_size}"),
        ));
    }
    let read;
    let bytes = match content {
        Some(c) => c,
        None => {
            read = std::fs::read(path).map_err(|e| DataError::file(path, e.to_string()))?;
            &read
        }
    };
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    let mut records = 0usize;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = format!("line {}", i + 1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let line = std::str::from_utf8(raw)
            .map_err(|e| DataError::record(path, &at, format!("is not UTF-8: {e}")))?;
        let text = match field {
            Some(field) => json_text(line, field).map_err(|r| DataError::record(path, &at, r))?,
            None => line.to_owned(),
        };
        let mut tokens = tokenizer
            .encode(&text)
            .map_err(|e| DataError::record(path, &at, e.to_string()))?;
        if tokens.len() < 2 {
            return Err(DataError::record(
                path,
                &at,
                format!(
                    "tokenizes to {} token(s); a record needs at least 2 (nothing to predict)",
                    tokens.len()
                ),
            ));
        }
        if let Some((pos, id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id as u64 >= vocab_size as u64)
        {
            return Err(DataError::record(
                path,
                &at,
                format!(
                    "token {pos} has id {id}, outside the model's vocabulary of {vocab_size} \
                     (the tokenizer does not match the model)"
                ),
            ));
        }
        tokens.truncate(seq_len);
        let real = tokens.len();
        tokens.resize(seq_len, pad);
        ids.extend(tokens);
        mask.extend((0..seq_len).map(|t| i64::from(t < real)));
        records += 1;
    }
    if records == 0 {
        return Err(DataError::file(path, "holds no records"));
    }
    let shape = [records as i64, seq_len as i64];
    Ok(TokenSet {
        ids: Tensor::from_slice(&ids).view(shape).to_kind(Kind::Int64),
        mask: Tensor::from_slice(&mask).view(shape),
        pad_id: pad,
    })
}
