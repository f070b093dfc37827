//! The append-only log file: creation, locking, scanning with tail recovery, durable appends.

use crate::record::{self, Record};
use crate::{FrameError, LedgerError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A record and the byte offset of its frame.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRecord {
    /// Offset of the record's frame in the file.
    pub offset: u64,
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

/// Reads a ledger file without locking or repairing it (for audits and tests): every valid
/// record, and the torn tail that [`crate::Ledger::open`] would cut. Corruption in the middle
/// is an error naming its offset, as it is for `open`.
pub fn read_log(path: impl AsRef<Path>) -> Result<LogContents, LedgerError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|e| io_err(path, "read", e))?;
    scan(&bytes, path)
}

/// Splits a log image into records, telling a torn tail from damage in the middle.
pub(crate) fn scan(buf: &[u8], path: &Path) -> Result<LogContents, LedgerError> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset < buf.len() {
        let frame = match record::read_frame(buf, offset) {
            Ok(frame) => frame,
            Err(reason) if offset == 0 => {
                return Err(LedgerError::NotALedger {
                    path: path.to_owned(),
                    reason: format!("first frame unreadable: {reason}"),
                })
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
        records.push(LoggedRecord {
            offset: offset as u64,
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
}

impl LogFile {
    /// Creates a ledger containing only `header` atomically: written to a side file, made
    /// durable, then linked into place (never clobbering a ledger that appeared meanwhile) and
    /// the directory synced. A crash leaves either no ledger or a complete header.
    pub(crate) fn create(path: &Path, header: &Record) -> Result<bool, LedgerError> {
        let frame = record::encode(header)?;
        let side = side_path(path);
        let mut f = File::create(&side).map_err(|e| io_err(&side, "create", e))?;
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
    pub(crate) fn open(path: &Path) -> Result<(LogFile, Vec<u8>), LedgerError> {
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

    /// Appends one record and returns only once it is on disk (`write_all` then
    /// `sync_data`). Any failure poisons the file: after a failed fsync the kernel may have
    /// dropped the dirty pages, so neither retrying nor appending after it is safe.
    pub(crate) fn append(&mut self, record: &Record) -> Result<(), LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                path: self.path.clone(),
            });
        }
        let frame = record::encode(record)?;
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
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                tracing::error!(path = %self.path.display(), error = %e, "ledger append failed; refusing further writes until reopened");
                Err(e)
            }
        }
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
