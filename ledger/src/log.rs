//! The append-only log file: creation, locking, scanning with tail recovery and chain checks,
//! durable appends.

use crate::record::{self, ChainKey, Record, DIGEST_LEN, GENESIS};
use crate::{FrameError, LedgerError, Tamper};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A record, where its frame sits, and the chain digest after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRecord {
    /// Offset of the record's frame in the file.
    pub offset: u64,
    /// The ledger's chain digest after this record (the record's MAC). From
    /// [`read_log`] it is only what the file claims; [`read_log_verified`] and
    /// [`crate::Ledger::open`] have checked it against the key.
    pub digest: [u8; 32],
    /// The record.
    pub record: Record,
}

/// A damaged or partial last frame: no valid frame follows it, so it was never acknowledged
/// (an append is acknowledged only after it is on disk, and nothing is appended after an
/// append that did not finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the damaged frame starts; the file is cut here.
    pub offset: u64,
    /// Bytes from `offset` to the end of the file.
    pub bytes: u64,
    /// What was wrong with the frame.
    pub reason: FrameError,
}

/// What a log file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LogContents {
    /// Every valid record, in order, starting with the header.
    pub records: Vec<LoggedRecord>,
    /// Offset just past the last valid record.
    pub end: u64,
    /// A torn tail after `end`, if any.
    pub torn_tail: Option<TornTail>,
}

/// Reads a ledger file without the key, locking or repairing it (for audits and tests):
/// every record, and the torn tail that [`crate::Ledger::open`] would cut. Checks frames
/// (CRC) and that each record links to the one before it, so damage, a removed or a
/// reordered record is an error naming its offset, but not the MACs: a record rewritten
/// together with its link passes here. Use [`read_log_verified`] where the key is at hand.
pub fn read_log(path: impl AsRef<Path>) -> Result<LogContents, LedgerError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| io_err(path, "read", e))?;
    scan(&bytes, path, None)
}

/// [`read_log`] that also verifies every record's MAC under `key`, as
/// [`crate::Ledger::open`] does: [`LedgerError::WrongKey`] if the header does not
/// authenticate, [`LedgerError::Tampered`] naming the first record that does not.
pub fn read_log_verified(
    path: impl AsRef<Path>,
    key: &[u8; 32],
) -> Result<LogContents, LedgerError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| io_err(path, "read", e))?;
    scan(&bytes, path, Some(&ChainKey::new(key)))
}

impl LogContents {
    /// The chain digest after the last valid record.
    pub(crate) fn head(&self) -> [u8; DIGEST_LEN] {
        self.records.last().map_or(GENESIS, |r| r.digest)
    }
}

/// Splits a log image into records, telling a torn tail from damage in the middle, and checks
/// the chain: links always, MACs when `key` is given.
pub(crate) fn scan(
    buf: &[u8],
    path: &Path,
    key: Option<&ChainKey>,
) -> Result<LogContents, LedgerError> {
    let mut records: Vec<LoggedRecord> = Vec::new();
    let mut offset = 0usize;
    let mut prev = GENESIS;
    while offset < buf.len() {
        let index = records.len() as u64;
        let frame = match record::read_frame(buf, offset) {
            Ok(frame) => frame,
            Err(reason) if offset == 0 => {
                if let Some(found) = record::v1_header_format(buf) {
                    return Err(LedgerError::UnsupportedVersion {
                        path: path.to_owned(),
                        found,
                        supported: record::FORMAT_VERSION,
                    });
                }
                return Err(LedgerError::NotALedger {
                    path: path.to_owned(),
                    reason: format!("first frame unreadable: {reason}"),
                });
            }
            Err(reason) => {
                if record::valid_frame_after(buf, offset).is_some() {
                    return Err(LedgerError::Corrupt {
                        path: path.to_owned(),
                        offset: offset as u64,
                        reason,
                    });
                }
                return Ok(LogContents {
                    records,
                    end: offset as u64,
                    torn_tail: Some(TornTail {
                        offset: offset as u64,
                        bytes: (buf.len() - offset) as u64,
                        reason,
                    }),
                });
            }
        };
        // A sound frame (its CRC holds) that fails the chain was written on purpose: it is
        // never a torn write, even as the last frame, so it is never cut off.
        let tampered = |reason| LedgerError::Tampered {
            path: path.to_owned(),
            offset: offset as u64,
            record: index,
            reason,
        };
        if frame.prev != prev {
            return Err(tampered(Tamper::BrokenChain));
        }
        if let Some(key) = key {
            if !key.verifies(&frame) {
                // The header is the first thing a wrong key fails on.
                return Err(if index == 0 {
                    LedgerError::WrongKey {
                        path: path.to_owned(),
                    }
                } else {
                    tampered(Tamper::BadMac)
                });
            }
        }
        let record = record::decode(&frame).map_err(|reason| LedgerError::InvalidRecord {
            path: path.to_owned(),
            offset: offset as u64,
            reason,
        })?;
        match (&record, offset) {
            (Record::Header(h), 0) if h.format != record::FORMAT_VERSION => {
                return Err(LedgerError::UnsupportedVersion {
                    path: path.to_owned(),
                    found: h.format,
                    supported: record::FORMAT_VERSION,
                })
            }
            (Record::Header(_), 0) => {}
            (_, 0) => {
                return Err(LedgerError::NotALedger {
                    path: path.to_owned(),
                    reason: "first record is not a ledger header".into(),
                })
            }
            (Record::Header(_), _) => {
                return Err(LedgerError::InvalidRecord {
                    path: path.to_owned(),
                    offset: offset as u64,
                    reason: "a second header".into(),
                })
            }
            _ => {}
        }
        prev = frame.mac;
        records.push(LoggedRecord {
            offset: offset as u64,
            digest: frame.mac,
            record,
        });
        offset = frame.end;
    }
    if records.is_empty() {
        return Err(LedgerError::NotALedger {
            path: path.to_owned(),
            reason: "the file is empty".into(),
        });
    }
    Ok(LogContents {
        records,
        end: offset as u64,
        torn_tail: None,
    })
}

/// The open, locked log file.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// Offset just past the last durable record.
    end: u64,
    /// Set when a write or fsync failed: the file's tail is then unknown.
    poisoned: bool,
    key: ChainKey,
}

impl LogFile {
    /// Creates a ledger containing only `header` atomically: written to a side file, made
    /// durable, then linked into place (never clobbering a ledger that appeared meanwhile) and
    /// the directory synced. A crash leaves either no ledger or a complete header. The file
    /// is readable by its owner only (0600); a missing parent directory is created 0700.
    pub(crate) fn create(
        path: &Path,
        header: &Record,
        key: &ChainKey,
    ) -> Result<bool, LedgerError> {
        let (frame, _) = record::encode(header, &GENESIS, key)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dirs(dir)?;
        }
        let side = side_path(path);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&side)
            .map_err(|e| io_err(&side, "create", e))?;
        // `mode` applies only to a new file; a side file left by a crash keeps its own.
        f.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| io_err(&side, "chmod", e))?;
        io::Write::write_all(&mut f, &frame).map_err(|e| io_err(&side, "write", e))?;
        f.sync_all().map_err(|e| io_err(&side, "fsync", e))?;
        drop(f);
        let linked = match fs::hard_link(&side, path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_err(path, "link", e)),
        };
        fs::remove_file(&side).map_err(|e| io_err(&side, "remove", e))?;
        sync_dir(path)?;
        Ok(linked)
    }

    /// Opens and locks an existing ledger and reads all of it.
    pub(crate) fn open(path: &Path, key: ChainKey) -> Result<(LogFile, Vec<u8>), LedgerError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, "open", e))?;
        lock(&file, path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(path, "read", e))?;
        let end = bytes.len() as u64;
        Ok((
            LogFile {
                path: path.to_owned(),
                file,
                end,
                poisoned: false,
                key,
            },
            bytes,
        ))
    }

    /// Cuts a torn tail off and makes the cut durable.
    pub(crate) fn truncate(&mut self, end: u64) -> Result<(), LedgerError> {
        self.file
            .set_len(end)
            .map_err(|e| io_err(&self.path, "truncate", e))?;
        self.file
            .sync_all()
            .map_err(|e| io_err(&self.path, "fsync", e))?;
        self.end = end;
        Ok(())
    }

    /// Appends one record linked to `prev` (the chain digest after the last record) and
    /// returns its own digest only once it is on disk (`write_all` then `sync_data`). Any
    /// failure poisons the file: after a failed fsync the kernel may have dropped the dirty
    /// pages, so neither retrying nor appending after it is safe.
    pub(crate) fn append(
        &mut self,
        record: &Record,
        prev: &[u8; DIGEST_LEN],
    ) -> Result<[u8; DIGEST_LEN], LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                path: self.path.clone(),
            });
        }
        let (frame, digest) = record::encode(record, prev, &self.key)?;
        let result = self
            .file
            .write_all_at(&frame, self.end)
            .map_err(|e| io_err(&self.path, "write", e))
            .and_then(|()| {
                self.file
                    .sync_data()
                    .map_err(|e| io_err(&self.path, "fsync", e))
            });
        match result {
            Ok(()) => {
                self.end += frame.len() as u64;
                Ok(digest)
            }
            Err(e) => {
                self.poisoned = true;
                tracing::error!(path = %self.path.display(), error = %e, "ledger append failed; refusing further writes until reopened");
                Err(e)
            }
        }
    }

    pub(crate) fn key(&self) -> &ChainKey {
        &self.key
    }

    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The side file a new ledger is prepared in.
fn side_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".creating");
    path.with_file_name(name)
}

/// An exclusive advisory lock for the life of the file handle; the kernel drops it when the
/// process dies, so a crash never leaves a stale lock.
fn lock(file: &File, path: &Path) -> Result<(), LedgerError> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LedgerError::Locked {
            path: path.to_owned(),
        }),
        Err(e) => Err(io_err(path, "lock", e.into())),
    }
}

/// Creates `dir` and any missing ancestors, each 0700 and each made durable in its parent.
/// Directories that already exist keep their permissions.
fn create_private_dirs(dir: &Path) -> Result<(), LedgerError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for d in missing.into_iter().rev() {
        match DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => sync_dir(d)?,
            // Another process made it meanwhile: not ours to change.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(d, "create directory", e)),
        }
    }
    Ok(())
}

/// Makes a new directory entry durable.
fn sync_dir(path: &Path) -> Result<(), LedgerError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "fsync directory", e))
}

pub(crate) fn io_err(path: &Path, op: &'static str, source: io::Error) -> LedgerError {
    LedgerError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::HeaderRecord;

    fn header(format: u32) -> Record {
        Record::Header(HeaderRecord {
            format,
            accountant: "rdp".into(),
            created_unix_ms: 0,
        })
    }

    #[test]
    fn a_version_1_ledger_is_refused_by_its_version() {
        // A version-1 header frame, built by hand: marker, type 1, flags 0, length, CRC-32 of
        // bytes 0..8 and the payload, then postcard {format: 1, "rdp", 0}.
        let payload = [0x01, 0x03, b'r', b'd', b'p', 0x00];
        let mut v1 = vec![0xB5, 0x1D, 1, 0];
        v1.extend((payload.len() as u32).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&v1);
        crc.update(&payload);
        v1.extend(crc.finalize().to_le_bytes());
        v1.extend(payload);
        let path = Path::new("old.ledger");
        let err = scan(&v1, path, None).unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::UnsupportedVersion {
                    found: 1,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("format version 1"), "{err}");

        // Negative control: the same bytes with a broken CRC are not a ledger at all.
        let n = v1.len();
        v1[n - 1] ^= 1;
        assert!(matches!(
            scan(&v1, path, None),
            Err(LedgerError::NotALedger { .. })
        ));
    }

    #[test]
    fn a_newer_header_is_refused_by_its_version() {
        let key = ChainKey::new(&[1; 32]);
        let (frame, _) = record::encode(&header(3), &GENESIS, &key).unwrap();
        let err = scan(&frame, Path::new("new.ledger"), Some(&key)).unwrap_err();
        assert!(
            matches!(err, LedgerError::UnsupportedVersion { found: 3, .. }),
            "{err:?}"
        );
        let (frame, _) = record::encode(&header(FORMAT_CURRENT), &GENESIS, &key).unwrap();
        assert_eq!(
            scan(&frame, Path::new("l"), Some(&key))
                .unwrap()
                .records
                .len(),
            1
        );
    }

    #[test]
    fn a_header_not_at_genesis_is_tampering() {
        // A header cut from the middle of another chain (it links to a non-zero digest).
        let key = ChainKey::new(&[1; 32]);
        let (frame, _) = record::encode(&header(FORMAT_CURRENT), &[7; 32], &key).unwrap();
        assert!(matches!(
            scan(&frame, Path::new("l"), None),
            Err(LedgerError::Tampered {
                record: 0,
                offset: 0,
                reason: Tamper::BrokenChain,
                ..
            })
        ));
    }

    const FORMAT_CURRENT: u32 = record::FORMAT_VERSION;
}
