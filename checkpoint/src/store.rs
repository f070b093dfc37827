//! The directory of checkpoints: atomic saves, pruning, loading.

use crate::format;
use crate::{Checkpoint, CheckpointError};
use ring::rand::{SecureRandom, SystemRandom};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const PREFIX: &str = "ckpt-";
const SUFFIX: &str = ".bin";
const TMP_PREFIX: &str = ".ckpt-";
const TMP_SUFFIX: &str = ".tmp";
const QUARANTINE_SUFFIX: &str = ".corrupt";

/// A directory of encrypted checkpoints, `ckpt-<step:020>.bin`, of which the newest `keep`
/// are kept. One writer per directory.
pub struct CheckpointStore {
    dir: PathBuf,
    /// Wiped on drop.
    key: Zeroizing<[u8; 32]>,
    /// The owner every checkpoint is bound to (authenticated in each header).
    binding: String,
    keep: usize,
    rng: SystemRandom,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CheckpointStore")
            .field("dir", &self.dir)
            .field("binding", &self.binding)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

/// A checkpoint file [`CheckpointStore::load_latest_valid`] could not use.
#[derive(Debug)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Its step (from the name).
    pub step: u64,
    /// Why it could not be loaded.
    pub error: CheckpointError,
}

/// What [`CheckpointStore::load_latest_valid`] found.
#[derive(Debug)]
pub struct LatestValid {
    /// The newest checkpoint that loaded, if any did.
    pub checkpoint: Option<Checkpoint>,
    /// Newer files that did not load, newest first.
    pub skipped: Vec<Skipped>,
}

impl CheckpointStore {
    /// Opens (creating if needed) the checkpoint directory `dir`, keeping the newest `keep`
    /// checkpoints, bound to `binding`: the owner's name (e.g. `"node=node-1"`, 1 to
    /// [`crate::MAX_BINDING`] bytes) that every checkpoint saved here carries and every load
    /// checks. The directory is made 0700 (created so, or tightened if group or others had
    /// access: it holds nothing but this store's files). Temporary files left by a save that
    /// crashed are removed.
    pub fn open(
        dir: impl AsRef<Path>,
        key: [u8; 32],
        keep: usize,
        binding: &str,
    ) -> Result<Self, CheckpointError> {
        let key = Zeroizing::new(key);
        if keep == 0 {
            return Err(CheckpointError::InvalidKeep { keep });
        }
        if binding.is_empty() || binding.len() > format::MAX_BINDING {
            return Err(CheckpointError::InvalidBinding {
                binding: binding.to_owned(),
            });
        }
        let dir = dir.as_ref().to_owned();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err(&dir, "create directory", e))?;
        let mode = fs::metadata(&dir)
            .map_err(|e| io_err(&dir, "stat", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&dir, Permissions::from_mode(0o700))
                .map_err(|e| io_err(&dir, "chmod", e))?;
            tracing::info!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "checkpoint directory made private (0700)");
        }
        let store = CheckpointStore {
            dir,
            key,
            binding: binding.to_owned(),
            keep,
            rng: SystemRandom::new(),
        };
        let mut removed = 0;
        for entry in store.entries()? {
            let name = entry.to_string_lossy();
            if name.starts_with(TMP_PREFIX) && name.ends_with(TMP_SUFFIX) {
                let path = store.dir.join(&entry);
                fs::remove_file(&path).map_err(|e| io_err(&path, "remove", e))?;
                tracing::info!(path = %path.display(), "removed a temporary file left by an interrupted checkpoint save");
                removed += 1;
            }
        }
        if removed > 0 {
            store.sync_dir()?;
        }
        Ok(store)
    }

    /// Saves `ckpt` atomically and durably, then prunes to the newest `keep` (never removing
    /// the file just written). Returns the checkpoint's path. An existing checkpoint of the
    /// same step is replaced atomically.
    pub fn save(&self, ckpt: &Checkpoint) -> Result<PathBuf, CheckpointError> {
        let image = format::seal(&self.key, &self.rng, &self.binding, ckpt)?;
        let mut tag = [0u8; 8];
        self.rng
            .fill(&mut tag)
            .map_err(|_| CheckpointError::Crypto {
                what: "temporary name",
            })?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{:020}.{tag}{TMP_SUFFIX}", ckpt.step));
        let path = self.path_for(ckpt.step);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, "create", e))?;
            f.write_all(&image).map_err(|e| io_err(&tmp, "write", e))?;
            f.sync_all().map_err(|e| io_err(&tmp, "fsync", e))?;
            drop(f);
            fs::rename(&tmp, &path).map_err(|e| io_err(&path, "rename", e))
        })();
        if let Err(e) = written {
            // Best effort: open() removes it next time anyway.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir()?;
        tracing::debug!(path = %path.display(), step = ckpt.step, bytes = image.len(), "checkpoint saved");
        self.prune(ckpt.step)?;
        Ok(path)
    }

    /// Loads the checkpoint of `step`.
    pub fn load(&self, step: u64) -> Result<Checkpoint, CheckpointError> {
        let path = self.path_for(step);
        let image = match fs::read(&path) {
            Ok(image) => image,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(CheckpointError::Missing {
                    step,
                    dir: self.dir.clone(),
                })
            }
            Err(e) => return Err(io_err(&path, "read", e)),
        };
        format::open(&self.key, &path, step, &self.binding, image)
    }

    /// Loads the newest checkpoint, `None` if there is none. If the newest file does not
    /// load, that is the error (naming the file): it never silently falls back to an older
    /// one. Use [`CheckpointStore::load_latest_valid`] for that.
    pub fn load_latest(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match self.steps()?.last() {
            None => Ok(None),
            Some(&step) => self.load(step).map(Some),
        }
    }

    /// Loads the newest checkpoint that loads, reporting every newer file it had to skip (do
    /// log them). I/O errors other than per-file ones still fail. Skipped files stay where
    /// they are: [`CheckpointStore::quarantine`] them before training on, or they remain
    /// "newest" for the next `load_latest`.
    pub fn load_latest_valid(&self) -> Result<LatestValid, CheckpointError> {
        let mut skipped = Vec::new();
        for step in self.steps()?.into_iter().rev() {
            match self.load(step) {
                Ok(ckpt) => {
                    return Ok(LatestValid {
                        checkpoint: Some(ckpt),
                        skipped,
                    })
                }
                Err(error) => {
                    let path = self.path_for(step);
                    tracing::warn!(path = %path.display(), %error, "skipping a checkpoint that does not load");
                    skipped.push(Skipped { path, step, error });
                }
            }
        }
        Ok(LatestValid {
            checkpoint: None,
            skipped,
        })
    }

    /// Moves a checkpoint aside as `ckpt-<step>.bin.corrupt` (kept for inspection, no longer
    /// listed or loaded).
    pub fn quarantine(&self, step: u64) -> Result<PathBuf, CheckpointError> {
        let path = self.path_for(step);
        let mut aside = path.clone().into_os_string();
        aside.push(QUARANTINE_SUFFIX);
        let aside = PathBuf::from(aside);
        fs::rename(&path, &aside).map_err(|e| io_err(&path, "rename", e))?;
        self.sync_dir()?;
        Ok(aside)
    }

    /// Steps of the checkpoints present, oldest first.
    pub fn steps(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut steps: Vec<u64> = self
            .entries()?
            .iter()
            .filter_map(|name| parse_name(&name.to_string_lossy()))
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    /// Where the checkpoint of `step` lives.
    pub fn path_for(&self, step: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{step:020}{SUFFIX}"))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The owner every checkpoint of this store is bound to.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// How many checkpoints are kept.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Removes the oldest checkpoints beyond `keep`, never the one just written (a save of an
    /// older step, after a restore, must not delete itself).
    fn prune(&self, just_saved: u64) -> Result<(), CheckpointError> {
        let steps = self.steps()?;
        let excess = steps.len().saturating_sub(self.keep);
        let doomed: Vec<u64> = steps
            .into_iter()
            .filter(|&s| s != just_saved)
            .take(excess)
            .collect();
        for &step in &doomed {
            let path = self.path_for(step);
            fs::remove_file(&path).map_err(|e| io_err(&path, "remove", e))?;
        }
        if !doomed.is_empty() {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<std::ffi::OsString>, CheckpointError> {
        let read = fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, "list", e))?;
        read.map(|e| {
            e.map(|e| e.file_name())
                .map_err(|e| io_err(&self.dir, "list", e))
        })
        .collect()
    }

    /// Makes renames and removals durable.
    fn sync_dir(&self) -> Result<(), CheckpointError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&self.dir, "fsync directory", e))
    }
}

/// `ckpt-<20 digits>.bin` -> the step.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn io_err(path: &Path, op: &'static str, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn only_canonical_names_are_checkpoints() {
        assert_eq!(parse_name("ckpt-00000000000000000042.bin"), Some(42));
        assert_eq!(parse_name("ckpt-18446744073709551615.bin"), Some(u64::MAX));
        for name in [
            "ckpt-42.bin",
            "ckpt-00000000000000000042.bin.corrupt",
            ".ckpt-00000000000000000042.0123abcd.tmp",
            "ckpt-0000000000000000004x.bin",
            "ckpt-99999999999999999999.bin",
        ] {
            assert_eq!(parse_name(name), None, "{name}");
        }
    }
}
