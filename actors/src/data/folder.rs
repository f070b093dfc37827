//! Image folders: one subfolder per class, PNG or JPEG files in each.
//!
//! ```text
//!  tiles/benign/0001.png
//!  tiles/malignant/0002.jpg
//! ```
//! Labels: when the job names its classes, a subfolder's label is its name's index in the
//! job's list (a class may have no subfolder; a subfolder outside the list is refused). When
//! the job gives only a count, the subfolders must be exactly that many and are labelled in
//! byte-wise sorted order of their names. Either way every node maps names to labels the same.
//!
//! Each file is decoded by content (not extension), converted to the job's channels (RGB, or
//! luma with Rec. 709 weights; alpha dropped; 16-bit samples scaled to 8), then resized to
//! `size x size` with [`super::RESIZE_FILTER`] when it is not already that size (the aspect
//! ratio is not preserved). Records are ordered by label, then by file name.
//! Hidden entries (names starting with `.`) are skipped; any other file that is not a
//! `.png`, `.jpg` or `.jpeg`, a nested folder or a file beside the class folders is refused.

use super::{resize_pixels, ClassSpec, DataError, ImageSet};
use image::DynamicImage;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let io = |e: std::io::Error| DataError::file(dir, e.to_string());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| DataError::file(dir, format!("entry {n:?} is not a UTF-8 name")))?;
        if !name.starts_with('.') {
            out.push((name, entry.path()));
        }
    }
    // Byte-wise order: identical on every node whatever its locale.
    out.sort();
    Ok(out)
}

/// The (label, subfolder) pairs of `root` under the job's class spec.
fn class_folders(root: &Path, classes: &ClassSpec) -> Result<Vec<(i64, PathBuf)>, DataError> {
    let mut folders = Vec::new();
    for (name, path) in sorted_entries(root)? {
        if !path.is_dir() {
            return Err(DataError::record(
                root,
                format!("file {name}"),
                "expected only one subfolder per class here",
            ));
        }
        folders.push((name, path));
    }
    let names: Vec<&str> = folders.iter().map(|(n, _)| n.as_str()).collect();
    match classes {
        ClassSpec::Names(job) => folders
            .into_iter()
            .map(|(name, path)| match job.iter().position(|c| *c == name) {
                Some(label) => Ok((label as i64, path)),
                None => Err(DataError::file(
                    root,
                    format!("class folder {name:?} is not one of the job's classes {job:?}"),
                )),
            })
            .collect(),
        ClassSpec::Count(k) => {
            if folders.len() != *k {
                return Err(DataError::file(
                    root,
                    format!(
                        "holds {} class folders {names:?}; the job has {k} classes",
                        folders.len()
                    ),
                ));
            }
            Ok(folders
                .into_iter()
                .enumerate()
                .map(|(label, (_, path))| (label as i64, path))
                .collect())
        }
    }
}

/// Decodes one image to `size x size` pixels with `channels` channels, HWC order.
pub(crate) fn decode_image(file: &Path, size: u32, channels: usize) -> Result<Vec<u8>, String> {
    let image = image::ImageReader::open(file)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("does not decode: {e}"))?;
    let (w, h) = (image.width(), image.height());
    let raw = match channels {
        1 => DynamicImage::to_luma8(&image).into_raw(),
        3 => DynamicImage::to_rgb8(&image).into_raw(),
        c => return Err(format!("{c} channels are not supported (1 or 3)")),
    };
    Ok(if (w, h) == (size, size) {
        raw
    } else {
        resize_pixels(&raw, w, h, channels, size)
    })
}

/// Loads an image folder as images `(N, channels, size, size)` in [0, 1], labels `(N,)`.
pub fn load_image_folder(
    root: &Path,
    classes: &ClassSpec,
    size: i64,
    channels: i64,
) -> Result<ImageSet, DataError> {
    if !root.is_dir() {
        return Err(DataError::file(root, "is not a folder"));
    }
    let c = channels as usize;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut folders = class_folders(root, classes)?;
    folders.sort();
    for (label, folder) in folders {
        for (name, file) in sorted_entries(&folder)? {
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if file.is_dir() || !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                return Err(DataError::record(
                    root,
                    format!("file {shown}"),
                    "is not a .png, .jpg or .jpeg image",
                ));
            }
            let image = decode_image(&file, size as u32, c)
                .map_err(|reason| DataError::record(root, format!("file {shown}"), reason))?;
            pixels.extend(image);
            labels.push(label);
        }
    }
    if labels.is_empty() {
        return Err(DataError::file(root, "holds no images"));
    }
    let n = labels.len() as i64;
    let images = Tensor::from_slice(&pixels)
        .view([n, size, size, channels])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    Ok(ImageSet {
        images: images.contiguous(),
        labels: Tensor::from_slice(&labels),
    })
}
