//! A data owner's records: where they come from, how they are checked, how they are held.
//!
//! [`load_dataset`] reads one [`DataSource`] (a node.toml `[[datasets]]` entry) against what
//! the job expects ([`DataExpectation`]) and returns [`Records`] only once every record has
//! been decoded and checked, so nothing half-valid is ever sealed or joined. Formats:
//! - `generated`: [`cancer_tiles`], for demos and tests;
//! - `medmnist-npz`: [`npz`], MedMNIST's `.npz` layout;
//! - `image-folder`: [`folder`], one subfolder of PNG/JPEG files per class;
//! - `jsonl`, `text-lines`: [`text`], one record per line, tokenized with the job's tokenizer.
//!
//! Images are held as floats `(N, C, S, S)` in [0, 1] with labels `(N,)`; texts as token ids
//! and an attention mask `(N, T)` (see [`TokenSet`]).

pub mod folder;
mod generated;
pub mod npz;
pub mod text;

pub use generated::cancer_tiles;
pub use text::TokenSet;

use bastion_models::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The filter every image is resized with (image folders and `.npz` files alike): bilinear
/// ("triangle") interpolation whose support widens when shrinking, so downscaling averages
/// instead of aliasing. `image::imageops::resize` semantics.
pub const RESIZE_FILTER: image::imageops::FilterType = image::imageops::FilterType::Triangle;

/// Resizes `w x h` 8-bit pixels with `channels` (1 or 3) interleaved channels to
/// `size x size` with [`RESIZE_FILTER`].
pub(crate) fn resize_pixels(raw: &[u8], w: u32, h: u32, channels: usize, size: u32) -> Vec<u8> {
    use image::imageops::resize;
    use image::{GrayImage, RgbImage};
    let raw = raw.to_vec();
    if channels == 1 {
        let img = GrayImage::from_raw(w, h, raw).expect("buffer matches its dimensions");
        resize(&img, size, size, RESIZE_FILTER).into_raw()
    } else {
        let img = RgbImage::from_raw(w, h, raw).expect("buffer matches its dimensions");
        resize(&img, size, size, RESIZE_FILTER).into_raw()
    }
}

/// Why a dataset was refused. The message names the file (or folder), the record where one is
/// at fault (`train_labels row 17`, `line 4`, `file benign/a.png`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The file as a whole is unusable (unreadable, not the format, wrong shape, empty...).
    #[error("dataset {path}: {reason}")]
    File {
        /// The file or folder.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// One record is at fault.
    #[error("dataset {path}, {record}: {reason}")]
    Record {
        /// The file or folder.
        path: String,
        /// Which record: `train_labels row 17`, `line 4`, `file benign/a.png`.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// The source does not fit what the job trains (images for a text job, too few classes
    /// for generated tiles...).
    #[error("dataset {source_name}: {reason}")]
    Mismatch {
        /// The source (its path, or `generated`).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

impl DataError {
    pub(crate) fn file(path: &Path, reason: impl Into<String>) -> DataError {
        DataError::File {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
    pub(crate) fn record(
        path: &Path,
        record: impl Into<String>,
        reason: impl Into<String>,
    ) -> DataError {
        DataError::Record {
            path: path.display().to_string(),
            record: record.into(),
            reason: reason.into(),
        }
    }
}

/// Which split of a MedMNIST `.npz` (`train_*`, `val_*`, `test_*` arrays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// `train_images` / `train_labels` (the default).
    #[default]
    Train,
    /// `val_images` / `val_labels`.
    Val,
    /// `test_images` / `test_labels`.
    Test,
}

impl Split {
    /// `train`, `val` or `test`: the arrays' name prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Where a dataset's records come from: a node.toml `[[datasets]]` entry's `format` and the
/// fields that format takes. Deserializes from the flat table through [`DataSourceSpec`]
/// (`format` defaults to `generated`; a field the format does not take is refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DataSourceSpec", into = "DataSourceSpec")]
pub enum DataSource {
    /// `format = "generated"`: [`cancer_tiles`] (`records`, default 256; `seed`, default 0).
    Generated {
        /// How many tiles.
        records: usize,
        /// Generation seed (the data owner's; unrelated to DP noise).
        seed: u64,
    },
    /// `format = "medmnist-npz"`: `path` to the `.npz`; `split` = train (default) | val | test.
    MedmnistNpz {
        /// The `.npz` file.
        path: PathBuf,
        /// Which arrays to read.
        split: Split,
    },
    /// `format = "image-folder"`: `path` to a folder with one subfolder per class.
    ImageFolder {
        /// The folder.
        path: PathBuf,
    },
    /// `format = "jsonl"`: `path`; each line a JSON object whose string `field` (default
    /// `text`) is one record.
    Jsonl {
        /// The file.
        path: PathBuf,
        /// The member holding the text.
        field: String,
    },
    /// `format = "text-lines"`: `path`; each non-empty line is one record.
    TextLines {
        /// The file.
        path: PathBuf,
    },
}

/// A dataset's `format` name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `generated`
    #[default]
    Generated,
    /// `medmnist-npz`
    MedmnistNpz,
    /// `image-folder`
    ImageFolder,
    /// `jsonl`
    Jsonl,
    /// `text-lines`
    TextLines,
}

/// The flat form of [`DataSource`], as written in node.toml. A config that embeds a
/// dataset's other fields beside these (name, budget) can copy these six fields and call
/// [`DataSource::try_from`], keeping its own `deny_unknown_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSourceSpec {
    /// `generated` (default), `medmnist-npz`, `image-folder`, `jsonl` or `text-lines`.
    #[serde(default)]
    pub format: Format,
    /// The file or folder (every format but `generated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `jsonl` only: the member holding the text (default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `medmnist-npz` only: `train` (default), `val` or `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// `generated` only: how many tiles (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<usize>,
    /// `generated` only: the generation seed (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Tiles generated when `records` is not given.
pub const DEFAULT_GENERATED_RECORDS: usize = 256;

impl TryFrom<DataSourceSpec> for DataSource {
    type Error = String;

    fn try_from(s: DataSourceSpec) -> Result<DataSource, String> {
        let format = serde_json::to_value(s.format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let refuse = |field: &str, given: bool| -> Result<(), String> {
            if given {
                Err(format!("format {format:?} takes no `{field}`"))
            } else {
                Ok(())
            }
        };
        let path = |p: Option<PathBuf>| p.ok_or(format!("format {format:?} needs a `path`"));
        if s.format != Format::Generated {
            refuse("records", s.records.is_some())?;
            refuse("seed", s.seed.is_some())?;
        }
        if s.format != Format::Jsonl {
            refuse("field", s.field.is_some())?;
        }
        if s.format != Format::MedmnistNpz {
            refuse("split", s.split.is_some())?;
        }
        Ok(match s.format {
            Format::Generated => {
                refuse("path", s.path.is_some())?;
                DataSource::Generated {
                    records: s.records.unwrap_or(DEFAULT_GENERATED_RECORDS),
                    seed: s.seed.unwrap_or(0),
                }
            }
            Format::MedmnistNpz => DataSource::MedmnistNpz {
                path: path(s.path)?,
                split: s.split.unwrap_or_default(),
            },
            Format::ImageFolder => DataSource::ImageFolder {
                path: path(s.path)?,
            },
            Format::Jsonl => DataSource::Jsonl {
                path: path(s.path)?,
                field: s.field.unwrap_or_else(|| "text".to_owned()),
            },
            Format::TextLines => DataSource::TextLines {
                path: path(s.path)?,
            },
        })
    }
}

impl From<DataSource> for DataSourceSpec {
    fn from(s: DataSource) -> DataSourceSpec {
        let mut spec = DataSourceSpec::default();
        match s {
            DataSource::Generated { records, seed } => {
                spec.records = Some(records);
                spec.seed = Some(seed);
            }
            DataSource::MedmnistNpz { path, split } => {
                spec.format = Format::MedmnistNpz;
                spec.path = Some(path);
                spec.split = Some(split);
            }
            DataSource::ImageFolder { path } => {
                spec.format = Format::ImageFolder;
                spec.path = Some(path);
            }
            DataSource::Jsonl { path, field } => {
                spec.format = Format::Jsonl;
                spec.path = Some(path);
                spec.field = Some(field);
            }
            DataSource::TextLines { path } => {
                spec.format = Format::TextLines;
                spec.path = Some(path);
            }
        }
        spec
    }
}

impl DataSource {
    /// The file or folder, or `generated`, for messages.
    pub fn name(&self) -> String {
        match self {
            DataSource::Generated { .. } => "generated".to_owned(),
            DataSource::MedmnistNpz { path, .. }
            | DataSource::ImageFolder { path }
            | DataSource::Jsonl { path, .. }
            | DataSource::TextLines { path } => path.display().to_string(),
        }
    }

    /// True for the image formats (generated, medmnist-npz, image-folder).
    pub fn is_images(&self) -> bool {
        matches!(
            self,
            DataSource::Generated { .. }
                | DataSource::MedmnistNpz { .. }
                | DataSource::ImageFolder { .. }
        )
    }
}

/// The job's classes: named (image folders map a subfolder to its name's index) or counted
/// (subfolders are labelled in sorted order and must be exactly this many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassSpec {
    /// Class names; label `i` is `names[i]`.
    Names(Vec<String>),
    /// Only the number of classes.
    Count(usize),
}

impl ClassSpec {
    /// The number of classes.
    pub fn count(&self) -> usize {
        match self {
            ClassSpec::Names(n) => n.len(),
            ClassSpec::Count(k) => *k,
        }
    }
}

/// What the job trains on, against which every record is checked.
// Built once per dataset; boxing the tokenizer would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DataExpectation {
    /// Image classification.
    Images {
        /// The classes (labels must be below their count).
        classes: ClassSpec,
        /// Images are resized to `image_size x image_size`.
        image_size: i64,
        /// 1 (grayscale) or 3 (RGB).
        channels: i64,
    },
    /// Causal language modelling.
    Text {
        /// The job's tokenizer.
        tokenizer: TextTokenizer,
        /// Records are truncated to, and padded to, this many tokens.
        seq_len: usize,
        /// The model's vocabulary: every id must be below it.
        vocab_size: usize,
    },
}

/// Reads and checks `source` against `expect`. Nothing is returned unless every record
/// decodes and fits; the error names the file, the record and the reason.
pub fn load_dataset(source: &DataSource, expect: &DataExpectation) -> Result<Records, DataError> {
    load_dataset_from(source, None, expect)
}

/// As [`load_dataset`], from the file's bytes already in memory (`content`; a dataset pushed
/// by its owner, never written out in the clear): the source's path only names it in errors.
/// Formats that are not one file (`image-folder`, `generated`) cannot come this way.
pub fn load_dataset_from(
    source: &DataSource,
    content: Option<&[u8]>,
    expect: &DataExpectation,
) -> Result<Records, DataError> {
    if content.is_some()
        && matches!(
            source,
            DataSource::Generated { .. } | DataSource::ImageFolder { .. }
        )
    {
        return Err(DataError::Mismatch {
            source_name: source.name(),
            reason: "only single-file formats (medmnist-npz, jsonl, text-lines) can be pushed; pack an image folder as a MedMNIST .npz".into(),
        });
    }
    let mismatch = |reason: String| DataError::Mismatch {
        source_name: source.name(),
        reason,
    };
    match (source, expect) {
        (
            _,
            DataExpectation::Images {
                classes,
                image_size,
                channels,
            },
        ) if source.is_images() => {
            if !(1..=4096).contains(image_size) {
                return Err(mismatch(format!(
                    "image_size {image_size} is outside 1..=4096"
                )));
            }
            if *channels != 1 && *channels != 3 {
                return Err(mismatch(format!(
                    "{channels} channels; 1 or 3 are supported"
                )));
            }
            if classes.count() < 2 {
                return Err(mismatch(format!(
                    "the job has {} classes; classification needs at least 2",
                    classes.count()
                )));
            }
            let set = match source {
                DataSource::Generated { records, seed } => {
                    if *channels != 3 {
                        return Err(mismatch(format!(
                            "generated tiles are RGB; the job's images have {channels} channel(s)"
                        )));
                    }
                    if *records == 0 {
                        return Err(mismatch("`records = 0`: the dataset is empty".into()));
                    }
                    cancer_tiles(*records, *image_size, *seed)
                }
                DataSource::MedmnistNpz { path, split } => npz::load_medmnist(
                    path,
                    content,
                    *split,
                    classes.count(),
                    *image_size,
                    *channels,
                )?,
                DataSource::ImageFolder { path } => {
                    folder::load_image_folder(path, classes, *image_size, *channels)?
                }
                _ => unreachable!("is_images"),
            };
            Ok(Records::Images(set))
        }
        (
            DataSource::Jsonl { .. } | DataSource::TextLines { .. },
            DataExpectation::Text {
                tokenizer,
                seq_len,
                vocab_size,
            },
        ) => Ok(Records::Tokens(text::load_text(
            source,
            content,
            tokenizer,
            *seq_len,
            *vocab_size,
        )?)),
        (_, DataExpectation::Images { .. }) => {
            Err(mismatch("holds text, but the job classifies images".into()))
        }
        (_, DataExpectation::Text { .. }) => Err(mismatch(
            "holds images, but the job is a language model (jsonl or text-lines needed)".into(),
        )),
    }
}

/// A labelled image set held in memory: images `(N, C, S, S)` in [0, 1], labels `(N,)`.
#[derive(Debug)]
pub struct ImageSet {
    /// `(N, C, S, S)` floats in [0, 1]; C is 1 or 3.
    pub images: Tensor,
    /// `(N,)` class indices (int64).
    pub labels: Tensor,
}

impl ImageSet {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// True when the set has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records at `indices`, as a batch.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Tensor) {
        let idx = index_tensor(indices);
        (
            self.images.index_select(0, &idx),
            self.labels.index_select(0, &idx),
        )
    }

    /// The set as bytes: [`IMAGES_MAGIC`], channels, side, count (u64 each), then `f32`
    /// pixels and `i64` labels, little-endian.
    pub fn to_bytes(&self) -> Result<Vec<u8>, tch::TchError> {
        let size = self.images.size();
        let (channels, side) = (
            size.get(1).copied().unwrap_or(0),
            *size.last().unwrap_or(&0),
        );
        let pixels = Vec::<f32>::try_from(&self.images.reshape([-1]))?;
        let labels = Vec::<i64>::try_from(&self.labels)?;
        let mut out = Vec::with_capacity(32 + pixels.len() * 4 + labels.len() * 8);
        out.extend_from_slice(IMAGES_MAGIC);
        for word in [channels as u64, side as u64, labels.len() as u64] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        pixels
            .iter()
            .for_each(|p| out.extend_from_slice(&p.to_le_bytes()));
        labels
            .iter()
            .for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
        Ok(out)
    }

    /// Reads [`ImageSet::to_bytes`]' format, or the earlier one without magic and channels
    /// (side, count; three channels), which shards sealed before it hold.
    pub fn from_bytes(bytes: &[u8]) -> Result<ImageSet, String> {
        let word = |at: usize| -> Result<u64, String> {
            let b = bytes.get(at..at + 8).ok_or("truncated header")?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let (channels, side, count, body) = if bytes.starts_with(IMAGES_MAGIC) {
            (word(8)?, word(16)?, word(24)?, 32)
        } else {
            (3, word(0)?, word(8)?, 16)
        };
        if channels != 1 && channels != 3 {
            return Err(format!("{channels} channels; 1 or 3 expected"));
        }
        let (channels, side, count) = (channels as usize, side as usize, count as usize);
        let pixels = side
            .checked_mul(side)
            .and_then(|p| p.checked_mul(channels))
            .and_then(|p| p.checked_mul(count))
            .ok_or("image dimensions overflow")?;
        let expected = pixels
            .checked_mul(4)
            .and_then(|p| p.checked_add(count.checked_mul(8)?))
            .and_then(|p| p.checked_add(body))
            .ok_or("image dimensions overflow")?;
        if bytes.len() != expected {
            return Err(format!(
                "{} bytes do not hold {count} images of {channels} x {side} x {side}",
                bytes.len()
            ));
        }
        let body = &bytes[body..];
        let images: Vec<f32> = body[..pixels * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let labels: Vec<i64> = body[pixels * 4..]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let (n, c, s) = (count as i64, channels as i64, side as i64);
        Ok(ImageSet {
            images: Tensor::from_slice(&images).view([n, c, s, s]),
            labels: Tensor::from_slice(&labels),
        })
    }
}

/// The first bytes of [`ImageSet::to_bytes`] (never a plausible side length of the earlier
/// format, whose first word was the side).
pub const IMAGES_MAGIC: &[u8; 8] = b"BSTIMG02";
/// The first bytes of [`Records::to_bytes`], followed by a kind byte (0 images, 1 tokens).
pub const RECORDS_MAGIC: &[u8; 8] = b"BSTREC01";

pub(crate) fn index_tensor(indices: &[usize]) -> Tensor {
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_slice(&idx)
}

/// One dataset's records, images or tokens.
#[derive(Debug)]
pub enum Records {
    /// Labelled images.
    Images(ImageSet),
    /// Tokenized texts.
    Tokens(TokenSet),
}

/// The records a step drew, as tensors.
#[derive(Debug)]
pub enum Batch {
    /// `images (B, C, S, S)` float, `labels (B,)` int64.
    Images {
        /// Pixels in [0, 1].
        images: Tensor,
        /// Class indices.
        labels: Tensor,
    },
    /// `ids (B, T)` int64, `mask (B, T)` int64 (1 real token, 0 padding).
    Tokens {
        /// Token ids, right-padded.
        ids: Tensor,
        /// Attention mask; the loss mask of position t is `mask[t + 1]`.
        mask: Tensor,
    },
}

impl Batch {
    /// Records in the batch.
    pub fn rows(&self) -> i64 {
        match self {
            Batch::Images { labels, .. } => labels.size()[0],
            Batch::Tokens { ids, .. } => ids.size()[0],
        }
    }

    /// The batch on `device` (records are held on the host, inside the VM's encrypted
    /// memory; a step's batch goes to a GPU only for its forward pass). A no-op on its own
    /// device.
    pub fn to_device(&self, device: tch::Device) -> Batch {
        match self {
            Batch::Images { images, labels } => Batch::Images {
                images: images.to_device(device),
                labels: labels.to_device(device),
            },
            Batch::Tokens { ids, mask } => Batch::Tokens {
                ids: ids.to_device(device),
                mask: mask.to_device(device),
            },
        }
    }

    /// Consecutive parts of at most `parts` non-empty batches, sizes differing by at most
    /// one, in order: a step's sample split across the GPUs of a node.
    pub fn split(self, parts: usize) -> Vec<Batch> {
        let rows = self.rows();
        let parts = (parts.max(1) as i64).min(rows.max(1));
        if parts == 1 {
            return vec![self];
        }
        let (base, extra) = (rows / parts, rows % parts);
        let mut out = Vec::with_capacity(parts as usize);
        let mut start = 0;
        for i in 0..parts {
            let len = base + i64::from(i < extra);
            out.push(match &self {
                Batch::Images { images, labels } => Batch::Images {
                    images: images.narrow(0, start, len),
                    labels: labels.narrow(0, start, len),
                },
                Batch::Tokens { ids, mask } => Batch::Tokens {
                    ids: ids.narrow(0, start, len),
                    mask: mask.narrow(0, start, len),
                },
            });
            start += len;
        }
        out
    }
}

impl Records {
    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Records::Images(s) => s.len(),
            Records::Tokens(s) => s.len(),
        }
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records at `indices`.
    pub fn batch(&self, indices: &[usize]) -> Batch {
        match self {
            Records::Images(s) => {
                let (images, labels) = s.batch(indices);
                Batch::Images { images, labels }
            }
            Records::Tokens(s) => {
                let (ids, mask) = s.batch(indices);
                Batch::Tokens { ids, mask }
            }
        }
    }

    /// Tagged bytes: [`RECORDS_MAGIC`], a kind byte (0 images, 1 tokens), the set's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, tch::TchError> {
        let (kind, body) = match self {
            Records::Images(s) => (0u8, s.to_bytes()?),
            Records::Tokens(s) => (1u8, s.to_bytes()?),
        };
        let mut out = Vec::with_capacity(9 + body.len());
        out.extend_from_slice(RECORDS_MAGIC);
        out.push(kind);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads [`Records::to_bytes`]; bytes of a bare [`ImageSet`] (what earlier shards hold)
    /// are read as images.
    pub fn from_bytes(bytes: &[u8]) -> Result<Records, String> {
        if !bytes.starts_with(RECORDS_MAGIC) {
            return ImageSet::from_bytes(bytes).map(Records::Images);
        }
        match bytes.get(8) {
            Some(0) => ImageSet::from_bytes(&bytes[9..]).map(Records::Images),
            Some(1) => TokenSet::from_bytes(&bytes[9..]).map(Records::Tokens),
            Some(k) => Err(format!("unknown record kind {k}")),
            None => Err("truncated records header".into()),
        }
    }
}
pub mod sealed {
    //! A data owner's records sealed on the node's disk: AES-256-GCM under a key only this
    //! guest image on this chip can derive, so a restarted node reloads its shard and nobody
    //! else can.
    //!
    //! Format 2 binds each shard to its owner, so two shards on one node (sealed under the
    //! same key) cannot be swapped:
    //!
    //! ```text
    //!  BSTSHRD2 | binding_len u16 LE | binding | nonce (12) | AES-256-GCM(set) | tag (16)
    //!  AAD = magic, binding length and binding (everything before the nonce)
    //! ```
    //! The binding (e.g. `dataset=hospital-a;node=node-1`) sits in the clear but
    //! authenticated, so a swapped file is refused by name after authentication.
    //! The sealed body is [`Records::to_bytes`] ([`seal_records`]) or
    //! [`ImageSet::to_bytes`] ([`seal`]); [`unseal_records`] reads either.

    use super::{ImageSet, Records};
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
    use std::path::Path;

    const MAGIC: &[u8; 8] = b"BSTSHRD2";
    /// Format 1 had no binding; such files are refused with a hint.
    const MAGIC_V1: &[u8; 8] = b"BSTSHRD1";
    const TAG_LEN: usize = 16;
    /// Longest binding, in bytes.
    const MAX_BINDING: usize = 1024;

    /// Why a sealed shard could not be written or read.
    #[derive(Debug, thiserror::Error)]
    pub enum SealError {
        /// Reading or writing the file failed.
        #[error("sealed shard {path}: {source}")]
        Io {
            /// The file.
            path: String,
            /// The cause.
            source: std::io::Error,
        },
        /// The file is not a sealed shard of this node (wrong key, tampered or truncated).
        #[error("sealed shard {path} does not open: {reason}")]
        Invalid {
            /// The file.
            path: String,
            /// What was wrong.
            reason: String,
        },
        /// The file authenticates but was sealed for another dataset or node: shard files were
        /// swapped or copied.
        #[error(
            "sealed shard {path} is sealed for another dataset or node: it holds {found:?}, \
             expected {expected:?}"
        )]
        WrongBinding {
            /// The file.
            path: String,
            /// The binding asked for.
            expected: String,
            /// The binding the file was sealed with.
            found: String,
        },
    }

    /// The authenticated header: magic, binding length, binding.
    fn header(binding: &str) -> Vec<u8> {
        let mut h = Vec::with_capacity(MAGIC.len() + 2 + binding.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&(binding.len() as u16).to_le_bytes());
        h.extend_from_slice(binding.as_bytes());
        h
    }

    /// Seals `set` into `path` for `binding` (who the shard belongs to, e.g.
    /// `dataset=hospital-a;node=node-1`, 1 to 1024 bytes): written to a temporary file
    /// readable by its owner only (0600), synced, then renamed.
    pub fn seal(
        set: &ImageSet,
        key: &[u8; 32],
        path: &Path,
        binding: &str,
    ) -> Result<(), SealError> {
        let body = set.to_bytes().map_err(|e| SealError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        seal_bytes(body, key, path, binding)
    }

    /// [`seal`] for any [`Records`] (images or tokens), tagged with their kind.
    pub fn seal_records(
        records: &Records,
        key: &[u8; 32],
        path: &Path,
        binding: &str,
    ) -> Result<(), SealError> {
        let body = records.to_bytes().map_err(|e| SealError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        seal_bytes(body, key, path, binding)
    }

    /// Seals any bytes (a pushed file as its owner sent it) in the same format, bound to
    /// `binding`.
    pub fn seal_bytes(
        mut body: Vec<u8>,
        key: &[u8; 32],
        path: &Path,
        binding: &str,
    ) -> Result<(), SealError> {
        let name = path.display().to_string();
        let io = |source| SealError::Io {
            path: name.clone(),
            source,
        };
        if binding.is_empty() || binding.len() > MAX_BINDING {
            return Err(SealError::Invalid {
                path: name.clone(),
                reason: format!("binding {binding:?} must be 1 to {MAX_BINDING} bytes"),
            });
        }
        let header = header(binding);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header[..]),
            &mut body,
        )
        .map_err(|_| io(std::io::Error::other("encryption failed")))?;
        let mut file = Vec::with_capacity(header.len() + NONCE_LEN + body.len());
        file.extend_from_slice(&header);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&body);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // A leftover from a crashed seal may carry looser permissions: start afresh.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&file).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    /// Opens a shard sealed by [`seal`] with the same key for the same `binding`. A shard
    /// sealed for another binding is [`SealError::WrongBinding`].
    pub fn unseal(key: &[u8; 32], path: &Path, binding: &str) -> Result<ImageSet, SealError> {
        match unseal_records(key, path, binding)? {
            Records::Images(set) => Ok(set),
            Records::Tokens(_) => Err(SealError::Invalid {
                path: path.display().to_string(),
                reason: "holds token records, not images".into(),
            }),
        }
    }

    /// Opens a shard sealed by [`seal_records`] or [`seal`] (read as images).
    pub fn unseal_records(
        key: &[u8; 32],
        path: &Path,
        binding: &str,
    ) -> Result<Records, SealError> {
        let plain = unseal_bytes(key, path, binding)?;
        Records::from_bytes(&plain).map_err(|r| SealError::Invalid {
            path: path.display().to_string(),
            reason: r,
        })
    }

    /// Opens a file sealed by [`seal_bytes`] (or any of the above) and returns its body.
    pub fn unseal_bytes(key: &[u8; 32], path: &Path, binding: &str) -> Result<Vec<u8>, SealError> {
        let name = path.display().to_string();
        let invalid = |reason: &str| SealError::Invalid {
            path: name.clone(),
            reason: reason.to_string(),
        };
        let file = std::fs::read(path).map_err(|source| SealError::Io {
            path: name.clone(),
            source,
        })?;
        if file.starts_with(MAGIC_V1) {
            return Err(invalid(
                "sealed in format 1, which binds no dataset or node; remove the file and the \
                 node seals its shard again",
            ));
        }
        if file.len() < MAGIC.len() + 2 || &file[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a sealed shard (bad magic)"));
        }
        let binding_len = u16::from_le_bytes([file[8], file[9]]) as usize;
        let header_len = MAGIC.len() + 2 + binding_len;
        if file.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(invalid("truncated"));
        }
        let (header, rest) = file.split_at(header_len);
        let nonce: [u8; NONCE_LEN] = rest[..NONCE_LEN].try_into().expect("nonce length");
        let mut body = rest[NONCE_LEN..].to_vec();
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .map_err(|_| invalid("authentication failed: another node's key, or tampered"))?;
        // Only an authenticated binding says anything about whose shard this is.
        let found = &header[MAGIC.len() + 2..];
        if found != binding.as_bytes() {
            return Err(SealError::WrongBinding {
                path: name.clone(),
                expected: binding.to_owned(),
                found: String::from_utf8_lossy(found).into_owned(),
            });
        }
        let len = plain.len();
        body.truncate(len);
        Ok(body)
    }

    #[cfg(test)]
    mod tests {
        use super::super::cancer_tiles;
        use super::*;
        use std::os::unix::fs::PermissionsExt;
        use std::path::PathBuf;

        const KEY: [u8; 32] = [0x11; 32];
        const A: &str = "dataset=hospital-a;node=node-1";
        const B: &str = "dataset=hospital-b;node=node-1";

        /// A fresh directory for one test (the crate has no tempfile dev-dependency).
        fn scratch(test: &str) -> PathBuf {
            let dir =
                std::env::temp_dir().join(format!("bastion-sealed-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }

        fn same(a: &ImageSet, b: &ImageSet) -> bool {
            a.images.equal(&b.images) && a.labels.equal(&b.labels)
        }

        #[test]
        fn round_trip_with_a_private_file() {
            let dir = scratch("round-trip");
            let set = cancer_tiles(6, 8, 1);
            let path = dir.join("a.sealed");
            seal(&set, &KEY, &path, A).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(same(&unseal(&KEY, &path, A).unwrap(), &set));
            // Another key does not open it.
            let mut other = KEY;
            other[0] ^= 1;
            assert!(matches!(
                unseal(&other, &path, A),
                Err(SealError::Invalid { .. })
            ));
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn token_records_seal_and_image_shards_still_open() {
            let dir = scratch("records");
            let tokens = Records::Tokens(crate::data::TokenSet {
                ids: tch::Tensor::from_slice(&[3i64, 4, 0, 5, 6, 7]).view([2, 3]),
                mask: tch::Tensor::from_slice(&[1i64, 1, 0, 1, 1, 1]).view([2, 3]),
                pad_id: 0,
            });
            let path = dir.join("t.sealed");
            seal_records(&tokens, &KEY, &path, A).unwrap();
            match unseal_records(&KEY, &path, A).unwrap() {
                Records::Tokens(t) => {
                    let Records::Tokens(want) = &tokens else {
                        unreachable!()
                    };
                    assert!(t.ids.equal(&want.ids) && t.mask.equal(&want.mask));
                }
                Records::Images(_) => panic!("expected tokens"),
            }
            // Token records are not images.
            let msg = unseal(&KEY, &path, A).unwrap_err().to_string();
            assert!(msg.contains("token records"), "{msg}");
            // A shard sealed with `seal` opens as records.
            let set = cancer_tiles(3, 8, 4);
            seal(&set, &KEY, &path, A).unwrap();
            match unseal_records(&KEY, &path, A).unwrap() {
                Records::Images(back) => assert!(same(&back, &set)),
                Records::Tokens(_) => panic!("expected images"),
            }
            // Bytes of the earlier, magic-less image format (side, count, 3 channels) read.
            let mut legacy = Vec::new();
            legacy.extend_from_slice(&8u64.to_le_bytes());
            legacy.extend_from_slice(&3u64.to_le_bytes());
            let bytes = set.to_bytes().unwrap();
            legacy.extend_from_slice(&bytes[32..]);
            assert!(same(&ImageSet::from_bytes(&legacy).unwrap(), &set));
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn swapped_shards_are_refused() {
            let dir = scratch("swap");
            let (a, b) = (dir.join("a.sealed"), dir.join("b.sealed"));
            let set_a = cancer_tiles(4, 8, 1);
            seal(&set_a, &KEY, &a, A).unwrap();
            seal(&cancer_tiles(4, 8, 2), &KEY, &b, B).unwrap();
            // The host swaps the two files: both authenticate (same key), neither opens.
            let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
            std::fs::write(&a, &bytes_b).unwrap();
            std::fs::write(&b, &bytes_a).unwrap();
            for (path, expected, found) in [(&a, A, B), (&b, B, A)] {
                let e = unseal(&KEY, path, expected).unwrap_err();
                let msg = e.to_string();
                match e {
                    SealError::WrongBinding {
                        expected: x,
                        found: f,
                        ..
                    } => assert_eq!((x.as_str(), f.as_str()), (expected, found)),
                    other => panic!("expected WrongBinding, got {other:?}"),
                }
                assert!(msg.contains("another dataset or node"), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            // Negative control: swapped back, each opens as its own.
            std::fs::write(&a, &bytes_a).unwrap();
            assert!(same(&unseal(&KEY, &a, A).unwrap(), &set_a));
            std::fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn an_edited_binding_does_not_authenticate() {
            let dir = scratch("edit");
            let path = dir.join("a.sealed");
            seal(&cancer_tiles(2, 8, 1), &KEY, &path, A).unwrap();
            // Rewrite the clear-text binding to B's (same length): the AAD no longer matches.
            let mut bytes = std::fs::read(&path).unwrap();
            assert_eq!(A.len(), B.len());
            bytes[10..10 + B.len()].copy_from_slice(B.as_bytes());
            std::fs::write(&path, &bytes).unwrap();
            assert!(matches!(
                unseal(&KEY, &path, B),
                Err(SealError::Invalid { .. })
            ));
            // A format-1 file is refused with a hint, not as garbage.
            bytes[..8].copy_from_slice(MAGIC_V1);
            std::fs::write(&path, &bytes).unwrap();
            let msg = unseal(&KEY, &path, A).unwrap_err().to_string();
            assert!(msg.contains("format 1"), "{msg}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
