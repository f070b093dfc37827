//! The released model's digest.
//!
//! Every regular file under the release directory, except `receipt.json` at its top, is
//! listed by its relative `/`-separated path with its SHA-256, in byte order of the paths,
//! one line `"<sha256 hex>  <path>\n"` each: exactly what `sha256sum` prints. The model's
//! SHA-256 is the digest of that listing, so a model owner recomputes it without our tools:
//!
//! ```sh
//! cd release && find . -type f ! -path ./receipt.json -printf '%P\0' \
//!   | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
//! ```
//!
//! Symbolic links and other special files are refused rather than followed or skipped (a
//! link could point anywhere, and a skipped file would be an unlisted part of the model), and
//! so are names that are not UTF-8 or that hold a newline or a backslash (which `sha256sum`
//! would escape).

use std::io::Read;
use std::path::Path;

use crate::body::{ModelFile, ModelRecord};
use crate::error::ReceiptError;
use crate::RECEIPT_FILE;

/// Lists and hashes the release directory `dir`.
pub fn hash_dir(dir: &Path) -> Result<ModelRecord, ReceiptError> {
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.sort_by(|a: &ModelFile, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(ModelRecord {
        sha256: listing_sha256(&files),
        files,
    })
}

/// SHA-256 of `files` listed in `sha256sum` format, in the order given.
pub fn listing_sha256(files: &[ModelFile]) -> String {
    let mut listing = String::new();
    for f in files {
        listing.push_str(&f.sha256);
        listing.push_str("  ");
        listing.push_str(&f.path);
        listing.push('\n');
    }
    crate::sha256_hex(listing.as_bytes())
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<ModelFile>) -> Result<(), ReceiptError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReceiptError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReceiptError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            ReceiptError::malformed(
                "model",
                format!("{}: a file name that is not UTF-8", path.display()),
            )
        })?;
        if name.contains(['\n', '\\']) {
            return Err(ReceiptError::malformed(
                "model",
                format!(
                    "{}: a file name with a newline or backslash",
                    path.display()
                ),
            ));
        }
        let rel = format!("{prefix}{name}");
        if rel == RECEIPT_FILE {
            continue;
        }
        let kind = entry.file_type().map_err(|e| ReceiptError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, &format!("{rel}/"), out)?;
        } else if kind.is_file() {
            let (bytes, sha256) = hash_file(&path)?;
            out.push(ModelFile {
                path: rel,
                bytes,
                sha256,
            });
        } else {
            return Err(ReceiptError::malformed(
                "model",
                format!(
                    "{}: a symbolic link or special file; a release holds regular files only",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, String), ReceiptError> {
    let mut file = std::fs::File::open(path).map_err(|e| ReceiptError::io(path, e))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| ReceiptError::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        ctx.update(&buf[..n]);
    }
    Ok((total, hex::encode(ctx.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), b"{\"kind\":\"resnet\"}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), vec![7u8; 3_000_000]).unwrap();
        std::fs::create_dir(dir.path().join("adapter")).unwrap();
        std::fs::write(dir.path().join("adapter/a b.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("adapter.txt"), b"sorted before adapter/").unwrap();
        std::fs::write(dir.path().join(RECEIPT_FILE), b"not part of the model").unwrap();
        dir
    }

    /// The digest is what coreutils computes: an independent implementation of the definition.
    #[test]
    fn equals_sha256sum_of_the_sorted_listing() {
        let dir = release();
        let ours = hash_dir(dir.path()).unwrap();
        let paths: Vec<&str> = ours.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "adapter.txt",
                "adapter/a b.json",
                "config.json",
                "model.safetensors"
            ]
        );
        assert_eq!(ours.files[3].bytes, 3_000_000);
        let script = "find . -type f ! -path ./receipt.json -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir.path())
            .output()
            .expect("sh with find, sort, xargs and sha256sum");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8(out.stdout).unwrap();
        assert_eq!(theirs.split_whitespace().next().unwrap(), ours.sha256);
    }

    #[test]
    fn any_change_to_any_file_changes_the_digest() {
        let dir = release();
        let before = hash_dir(dir.path()).unwrap().sha256;
        std::fs::write(dir.path().join("adapter/a b.json"), b"{ }").unwrap();
        assert_ne!(hash_dir(dir.path()).unwrap().sha256, before);
        // receipt.json is not part of the model; one deeper down would be.
        let before = hash_dir(dir.path()).unwrap().sha256;
        std::fs::write(dir.path().join(RECEIPT_FILE), b"changed").unwrap();
        assert_eq!(hash_dir(dir.path()).unwrap().sha256, before);
        std::fs::write(dir.path().join("adapter").join(RECEIPT_FILE), b"x").unwrap();
        assert_ne!(hash_dir(dir.path()).unwrap().sha256, before);
    }

    #[test]
    fn links_are_refused() {
        let dir = release();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        let err = hash_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
