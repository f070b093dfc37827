//! MedMNIST `.npz` files: a zip (stored or deflated) of NPY arrays.
//!
//! The reader parses NPY format versions 1, 2 and 3 (C order only), checks every size against
//! the header before trusting it, and turns `{split}_images` / `{split}_labels` into an
//! [`ImageSet`]. The writer produces the same layout as MedMNIST's `np.savez_compressed`:
//! images `(N, H, W)` (one channel) or `(N, H, W, 3)` uint8, labels `(N, 1)` uint8 (or `<i8`
//! when a label exceeds 255).

use super::{resize_pixels, DataError, ImageSet, Split};
use std::io::{Read, Write};
use std::path::Path;
use tch::{Kind, Tensor};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An element type the reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Unsigned integer of this many bytes.
    Unsigned(usize),
    /// Signed integer of this many bytes.
    Signed(usize),
    /// Boolean (one byte).
    Bool,
    /// IEEE float of this many bytes (read only to name it in an error: no dataset field is
    /// a float here).
    Float(usize),
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::Unsigned(n) | Dtype::Signed(n) | Dtype::Float(n) => n,
            Dtype::Bool => 1,
        }
    }
}

/// One NPY array: its header and its raw little-endian-or-not bytes, sizes already checked.
#[derive(Debug, Clone)]
pub struct NpyArray {
    /// The header's `descr`, e.g. `|u1`, `<i8`.
    pub descr: String,
    /// The parsed element type.
    pub dtype: Dtype,
    /// Big-endian elements (`>` in `descr`).
    pub big_endian: bool,
    /// The header's `shape`.
    pub shape: Vec<usize>,
    /// `product(shape) * itemsize` bytes, C order.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element as an `i64`; integer and boolean dtypes only.
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        let size = self.dtype.size();
        if matches!(self.dtype, Dtype::Float(_)) {
            return Err(format!("dtype {} is not an integer type", self.descr));
        }
        let signed = matches!(self.dtype, Dtype::Signed(_));
        self.data
            .chunks_exact(size)
            .map(|b| {
                let mut le = [0u8; 8];
                for (i, byte) in b.iter().enumerate() {
                    le[if self.big_endian { size - 1 - i } else { i }] = *byte;
                }
                // Sign-extend narrower signed integers.
                if signed && size < 8 && le[size - 1] & 0x80 != 0 {
                    le[size..].fill(0xff);
                }
                let v = u64::from_le_bytes(le);
                if !signed && v > i64::MAX as u64 {
                    Err(format!("value {v} does not fit in an int64"))
                } else {
                    Ok(v as i64)
                }
            })
            .collect()
    }
}

/// Parses one `.npy` file's bytes.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an NPY array (bad magic)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or("truncated NPY header length")?;
            (
                u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize,
                12,
            )
        }
        _ => {
            return Err(format!(
                "NPY format version {major}.{minor} is not supported"
            ))
        }
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or("truncated NPY header")?;
    // Versions 1 and 2 are latin-1 (ASCII in practice), version 3 is UTF-8.
    let header = std::str::from_utf8(header).map_err(|_| "NPY header is not text")?;
    let fields = parse_header(header)?;
    let descr = fields.descr.ok_or("NPY header has no 'descr'")?;
    let fortran = fields
        .fortran_order
        .ok_or("NPY header has no 'fortran_order'")?;
    let shape = fields.shape.ok_or("NPY header has no 'shape'")?;
    if fortran {
        return Err(
            "array is stored in Fortran order; only C order is supported (save it with \
             np.ascontiguousarray)"
                .into(),
        );
    }
    let (dtype, big_endian) = parse_descr(&descr)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let expected = count.checked_mul(dtype.size()).ok_or("shape overflows")?;
    let body = &bytes[header_start + header_len..];
    if body.len() != expected {
        return Err(format!(
            "shape {shape:?} of {descr} needs {expected} data bytes, the array holds {}",
            body.len()
        ));
    }
    Ok(NpyArray {
        descr,
        dtype,
        big_endian,
        shape,
        data: body.to_vec(),
    })
}

fn parse_descr(descr: &str) -> Result<(Dtype, bool), String> {
    let unsupported = || format!("dtype {descr:?} is not supported (integers only)");
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let kind = chars.next().ok_or_else(unsupported)?;
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let big_endian = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(unsupported()),
    };
    let dtype = match (kind, size) {
        ('u', 1 | 2 | 4 | 8) => Dtype::Unsigned(size),
        ('i', 1 | 2 | 4 | 8) => Dtype::Signed(size),
        ('b', 1) => Dtype::Bool,
        ('f', 2 | 4 | 8) => Dtype::Float(size),
        _ => return Err(unsupported()),
    };
    Ok((dtype, big_endian && size > 1))
}

#[derive(Default)]
struct HeaderFields {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parses the header, a Python dict literal such as
/// `{'descr': '<i8', 'fortran_order': False, 'shape': (3, 1), }`.
fn parse_header(text: &str) -> Result<HeaderFields, String> {
    let bad = |why: &str| format!("malformed NPY header {:?}: {why}", text.trim_end());
    let mut p = Cursor {
        s: text.as_bytes(),
        at: 0,
    };
    let mut fields = HeaderFields::default();
    p.skip_ws();
    if !p.eat(b'{') {
        return Err(bad("expected '{'"));
    }
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.skip_ws();
        if !p.eat(b':') {
            return Err(bad("expected ':'"));
        }
        p.skip_ws();
        match key.as_str() {
            "descr" => fields.descr = Some(p.string().ok_or_else(|| bad("descr is not a string"))?),
            "fortran_order" => {
                fields.fortran_order = Some(if p.word("True") {
                    true
                } else if p.word("False") {
                    false
                } else {
                    return Err(bad("fortran_order is not True or False"));
                })
            }
            "shape" => fields.shape = Some(p.tuple().ok_or_else(|| bad("shape is not a tuple"))?),
            other => return Err(bad(&format!("unexpected key {other:?}"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            if !p.eat(b'}') {
                return Err(bad("expected ',' or '}'"));
            }
            break;
        }
    }
    p.skip_ws();
    if p.at != p.s.len() {
        return Err(bad("trailing characters"));
    }
    Ok(fields)
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&c);
        self.at += hit as usize;
        hit
    }
    fn word(&mut self, w: &str) -> bool {
        let hit = self.s[self.at..].starts_with(w.as_bytes());
        self.at += if hit { w.len() } else { 0 };
        hit
    }
    fn string(&mut self) -> Option<String> {
        let quote = *self.s.get(self.at)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let start = self.at + 1;
        let len = self.s[start..].iter().position(|&c| c == quote)?;
        self.at = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }
    fn number(&mut self) -> Option<usize> {
        let start = self.at;
        while self.at < self.s.len() && self.s[self.at].is_ascii_digit() {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at])
            .ok()?
            .parse()
            .ok()
    }
    /// `()`, `(3,)`, `(3, 28, 28)` (a trailing comma allowed).
    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(dims);
            }
            dims.push(self.number()?);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                return self.eat(b')').then_some(dims);
            }
        }
    }
}

/// The largest array an `.npz` may hold, uncompressed (as large as a whole pushed dataset).
const MAX_ARRAY_BYTES: u64 = 4 << 30;

/// Reads every array of an `.npz` whose name (without `.npy`) is in `wanted`; absent names
/// are absent from the result. Errors are reasons; the caller adds the file name.
fn read_arrays(
    path: &Path,
    content: &[u8],
    wanted: &[&str],
) -> Result<Vec<(String, NpyArray)>, DataError> {
    let file_err = |reason: String| DataError::file(path, reason);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(content))
        .map_err(|e| file_err(format!("not a readable .npz (zip): {e}")))?;
    let mut out = Vec::new();
    for name in wanted {
        let entry_name = format!("{name}.npy");
        let mut entry = match zip.by_name(&entry_name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(e) => return Err(file_err(format!("{entry_name}: {e}"))),
        };
        // A pushed file comes from another party: a small zip that inflates without bound
        // must be refused, not allowed to exhaust the node's memory.
        let declared = entry.size();
        if declared > MAX_ARRAY_BYTES {
            return Err(file_err(format!(
                "{entry_name} declares {declared} bytes uncompressed, more than the {MAX_ARRAY_BYTES} an array may hold"
            )));
        }
        let mut bytes = Vec::with_capacity(declared as usize);
        (&mut entry)
            .take(declared + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| file_err(format!("{entry_name} does not decompress: {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(file_err(format!(
                "{entry_name} inflates to {} bytes, not the {declared} its zip entry declares",
                bytes.len()
            )));
        }
        let array = parse_npy(&bytes).map_err(|e| file_err(format!("{entry_name}: {e}")))?;
        out.push((name.to_string(), array));
    }
    Ok(out)
}

/// The names of the arrays in an `.npz`, for error messages.
fn array_names(content: &[u8]) -> Vec<String> {
    zip::ZipArchive::new(std::io::Cursor::new(content))
        .ok()
        .map(|z| {
            let mut names: Vec<String> = z
                .file_names()
                .map(|n| n.trim_end_matches(".npy").to_string())
                .collect();
            names.sort();
            names
        })
        .unwrap_or_default()
}

/// Loads split `split` of a MedMNIST-layout `.npz` as images `(N, channels, size, size)` in
/// [0, 1] and labels `(N,)`.
///
/// Images must be uint8 `(N, H, W)` (one channel) or `(N, H, W, 3)` and their channel count
/// must equal `channels`: a grayscale file for an RGB job (or the reverse) is the wrong
/// dataset, so it is refused rather than converted. `H x W` other than `size x size` is
/// resized with the image folder's filter ([`super::RESIZE_FILTER`]), so MedMNIST+'s 64, 128
/// and 224 pixel files feed a 28-pixel job. Labels are `(N, 1)` or `(N,)` integers in
/// `0..classes`.
///
/// `content` is the file's bytes when they are already in memory (a pushed dataset, which
/// `path` then only names); otherwise the file at `path` is read.
pub fn load_medmnist(
    path: &Path,
    content: Option<&[u8]>,
    split: Split,
    classes: usize,
    size: i64,
    channels: i64,
) -> Result<ImageSet, DataError> {
    let (ik, lk) = (
        format!("{}_images", split.as_str()),
        format!("{}_labels", split.as_str()),
    );
    let read;
    let content = match content {
        Some(c) => c,
        None => {
            read = std::fs::read(path).map_err(|e| DataError::file(path, e.to_string()))?;
            &read
        }
    };
    let mut arrays = read_arrays(path, content, &[&ik, &lk])?;
    let mut take = |key: &str| -> Result<NpyArray, DataError> {
        match arrays.iter().position(|(n, _)| n == key) {
            Some(i) => Ok(arrays.swap_remove(i).1),
            None => Err(DataError::file(
                path,
                format!(
                    "no array {key:?} (split {:?}); the file holds {:?}",
                    split.as_str(),
                    array_names(content)
                ),
            )),
        }
    };
    let images = take(&ik)?;
    let labels = take(&lk)?;
    let file_err = |reason: String| DataError::file(path, reason);

    if images.dtype != Dtype::Unsigned(1) {
        return Err(file_err(format!(
            "{ik} has dtype {}; MedMNIST images are uint8 (|u1)",
            images.descr
        )));
    }
    let (n, h, w, c) = match images.shape[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c @ (1 | 3)] => (n, h, w, c),
        _ => {
            return Err(file_err(format!(
                "{ik} has shape {:?}; expected (N, H, W) or (N, H, W, 3)",
                images.shape
            )))
        }
    };
    if c as i64 != channels {
        return Err(file_err(format!(
            "{ik} has {c} channel(s) (shape {:?}); the job's images have {channels}",
            images.shape
        )));
    }
    if h == 0 || w == 0 {
        return Err(file_err(format!(
            "{ik} has empty images (shape {:?})",
            images.shape
        )));
    }
    let label_count = match labels.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(file_err(format!(
                "{lk} has shape {:?}; expected (N, 1) or (N,) (multi-label data is not supported)",
                labels.shape
            )))
        }
    };
    if label_count != n {
        return Err(file_err(format!(
            "{ik} holds {n} images but {lk} holds {label_count} labels"
        )));
    }
    if n == 0 {
        return Err(file_err(format!("split {:?} is empty", split.as_str())));
    }
    let label_values = labels
        .to_i64()
        .map_err(|e| file_err(format!("{lk}: {e}")))?;
    if let Some((row, &v)) = label_values
        .iter()
        .enumerate()
        .find(|(_, &v)| v < 0 || v as u64 >= classes as u64)
    {
        return Err(DataError::record(
            path,
            format!("{lk} row {row}"),
            format!("label {v} is outside 0..{classes} (the job has {classes} classes)"),
        ));
    }

    let s = size as usize;
    let pixels = if (h, w) == (s, s) {
        images.data
    } else {
        let per = h * w * c;
        let mut out = Vec::with_capacity(n * s * s * c);
        for row in images.data.chunks_exact(per) {
            out.extend(resize_pixels(row, w as u32, h as u32, c, size as u32));
        }
        out
    };
    let images = Tensor::from_slice(&pixels)
        .view([n as i64, size, size, c as i64])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 255.0;
    Ok(ImageSet {
        images: images.contiguous(),
        labels: Tensor::from_slice(&label_values),
    })
}

/// Serializes one NPY (format 1.0) array.
pub fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Pad with spaces and a newline so the data starts on a 64-byte boundary, as numpy does.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes `splits` to `path` in MedMNIST's layout, deflated like `np.savez_compressed`:
/// `{split}_images` uint8 `(N, H, W)` for one channel or `(N, H, W, 3)` for three (pixels are
/// `round(255 x)`, clamped to [0, 255]), `{split}_labels` `(N, 1)` uint8, or `<i8` when a
/// label is outside 0..=255. Written to a temporary file, then renamed.
pub fn write_medmnist_npz(path: &Path, splits: &[(Split, &ImageSet)]) -> Result<(), DataError> {
    let file_err = |reason: String| DataError::file(path, reason);
    let tmp = path.with_extension("npz.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| file_err(e.to_string()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (split, set) in splits {
        let dims = set.images.size();
        let [n, c, h, w] = dims[..] else {
            return Err(file_err(format!(
                "images have shape {dims:?}, not (N, C, H, W)"
            )));
        };
        if c != 1 && c != 3 {
            return Err(file_err(format!(
                "images have {c} channels; MedMNIST holds 1 or 3"
            )));
        }
        let pixels = (set.images.permute([0, 2, 3, 1]).contiguous() * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .reshape([-1]);
        let pixels = Vec::<u8>::try_from(&pixels).map_err(|e| file_err(e.to_string()))?;
        let (n, h, w) = (n as usize, h as usize, w as usize);
        let shape: Vec<usize> = if c == 1 {
            vec![n, h, w]
        } else {
            vec![n, h, w, 3]
        };
        let labels = Vec::<i64>::try_from(&set.labels.to_kind(Kind::Int64).reshape([-1]))
            .map_err(|e| file_err(e.to_string()))?;
        let (descr, label_bytes): (&str, Vec<u8>) = if labels.iter().all(|l| (0..=255).contains(l))
        {
            ("|u1", labels.iter().map(|&l| l as u8).collect())
        } else {
            ("<i8", labels.iter().flat_map(|l| l.to_le_bytes()).collect())
        };
        for (name, bytes) in [
            ("images", npy_bytes("|u1", &shape, &pixels)),
            ("labels", npy_bytes(descr, &[labels.len(), 1], &label_bytes)),
        ] {
            zip.start_file(format!("{}_{name}.npy", split.as_str()), options)
                .and_then(|_| zip.write_all(&bytes).map_err(Into::into))
                .map_err(|e| file_err(e.to_string()))?;
        }
    }
    let mut out = zip.finish().map_err(|e| file_err(e.to_string()))?;
    out.flush()
        .and_then(|_| out.get_ref().sync_all())
        .map_err(|e| file_err(e.to_string()))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| file_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let f = parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (3, 1), }   \n")
            .unwrap();
        assert_eq!(f.descr.as_deref(), Some("<i8"));
        assert_eq!(f.shape, Some(vec![3, 1]));
        let f = parse_header("{'descr':'|u1','fortran_order':True,'shape':(7,)}").unwrap();
        assert_eq!((f.fortran_order, f.shape), (Some(true), Some(vec![7])));
        assert_eq!(parse_header("{'shape': ()}").unwrap().shape, Some(vec![]));
        assert!(parse_header("{'descr': '<i8', 'shape': (3 1)}").is_err());
        assert!(parse_header("{'descr': '<i8'").is_err());
    }

    #[test]
    fn integers_of_every_width() {
        let a = NpyArray {
            descr: ">i2".into(),
            dtype: Dtype::Signed(2),
            big_endian: true,
            shape: vec![2],
            data: vec![0xff, 0xfe, 0x01, 0x00],
        };
        assert_eq!(a.to_i64().unwrap(), vec![-2, 256]);
        let a = NpyArray {
            descr: "<u8".into(),
            dtype: Dtype::Unsigned(8),
            big_endian: false,
            shape: vec![1],
            data: u64::MAX.to_le_bytes().to_vec(),
        };
        assert!(a.to_i64().is_err());
    }

    /// A zip entry that inflates to more than it declares (a decompression bomb's trick) is
    /// refused by name after reading at most one byte past the declaration.
    #[test]
    fn an_entry_larger_than_it_declares_is_refused() {
        let dir = std::env::temp_dir().join(format!("bastion-npz-bomb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiles.npz");
        let tiles = super::super::cancer_tiles(8, 8, 1);
        write_medmnist_npz(&path, &[(Split::Train, &tiles)]).unwrap();
        let honest = std::fs::read(&path).unwrap();
        assert!(load_medmnist(&path, Some(&honest), Split::Train, 2, 8, 3).is_ok());
        // Lower train_images.npy's uncompressed size in the central directory to 100 bytes.
        let mut bomb = honest.clone();
        let name = b"train_images.npy";
        let record = (0..bomb.len() - 46)
            .find(|&i| bomb[i..i + 4] == *b"PK\x01\x02" && bomb[i + 46..].starts_with(name))
            .expect("the entry's central directory record");
        bomb[record + 24..record + 28].copy_from_slice(&100u32.to_le_bytes());
        let err = load_medmnist(&path, Some(&bomb), Split::Train, 2, 8, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train_images.npy") && err.contains("not the 100"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
