//! The purge mark (`PURGED`, DESIGN.md §1, §7, §9): the log's logical
//! start, below which every entry is purged, whatever segments still hold
//! it.
//!
//! [`Wal::purge_before`](crate::Wal::purge_before) deletes whole segments
//! only; the entries below its LSN in the first segment it keeps must stay
//! unreadable too, across reopens and in other processes. The mark says
//! so. The file is 36 bytes, little-endian:
//!
//! ```text
//! 0   8  "DURPURG1"
//! 8   16 the log's instance id (a mark belongs to one log)
//! 24  8  the mark: the LSN of the first entry not purged (u64)
//! 32  4  CRC-32C of bytes 0..32 (u32)
//! ```
//!
//! It is replaced like `META` (`PURGED.new`, fsync, rename, directory
//! fsync: [`replace_file`](crate::os::durable::replace_file)), so after a
//! crash it holds the old mark or the new one. A missing file is no mark
//! (a log that was never purged, or written before marks existed); a file
//! that is not exactly a mark of this log is [`Error::BadPurgeMark`],
//! never "no mark": taking it for none would bring purged entries back.

use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::format::Lsn;

/// The purge mark's name in the log directory.
pub const PURGE_FILE: &str = "PURGED";
const NEW_FILE: &str = "PURGED.new";
const MAGIC: &[u8; 8] = b"DURPURG1";
/// The mark's size: magic, instance, LSN, CRC.
pub const PURGE_LEN: usize = 8 + 16 + 8 + 4;
const _: () = assert!(PURGE_LEN == 36);

/// The mark's bytes for log `instance` at `mark`.
fn encode(instance: Uuid, mark: Lsn) -> [u8; PURGE_LEN] {
    let mut b = [0u8; PURGE_LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..24].copy_from_slice(instance.as_bytes());
    b[24..32].copy_from_slice(&mark.to_le_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Parses a mark; what is wrong with it otherwise.
fn decode(bytes: &[u8]) -> std::result::Result<(Uuid, Lsn), String> {
    let Ok(b) = <&[u8; PURGE_LEN]>::try_from(bytes) else {
        return Err(format!("{} bytes; a mark is {PURGE_LEN}", bytes.len()));
    };
    if &b[..8] != MAGIC {
        return Err("no DURPURG1 magic".into());
    }
    let stored = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
    let computed = crc32c::crc32c(&b[..32]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&b[8..24]);
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&b[24..32]);
    Ok((Uuid::from_bytes(id), u64::from_le_bytes(lsn)))
}

/// The purge mark in `dir` for the log `instance`, or `None` if there is
/// none. Only a regular file is read, and at most [`PURGE_LEN`] bytes of
/// it (one more, to tell a longer file).
pub(crate) fn read(dir: &Path, instance: Uuid) -> Result<Option<Lsn>> {
    let path = dir.join(PURGE_FILE);
    let bad = |detail: String| Error::BadPurgeMark {
        path: path.clone(),
        detail,
    };
    let bytes = match crate::os::files::read_small(&path, PURGE_LEN) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::InvalidInput) => {
            return Err(bad(e.to_string()))
        }
        Err(e) => return Err(Error::io("read purge mark", &path, e)),
    };
    let (id, mark) = decode(&bytes).map_err(bad)?;
    if id != instance {
        return Err(bad(format!(
            "the mark of log {id}, in the directory of log {instance}"
        )));
    }
    Ok(Some(mark))
}

/// True if `dir` holds a file by the mark's name (of any content).
pub(crate) fn exists(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(PURGE_FILE)).is_ok()
}

/// Records, durably before it returns, that everything below `mark` in
/// log `instance` is purged. The caller serialises writes (they share
/// `PURGED.new`) and never lowers a mark it wrote, except where the log
/// ends below it (DESIGN.md §7).
pub(crate) fn write(dir: &Path, instance: Uuid, mark: Lsn) -> Result<()> {
    let ops = crate::os::durable::Replace {
        remove: "remove stale purge mark",
        create: "create purge mark",
        write: "write purge mark",
        sync: "sync purge mark",
        rename: "replace purge mark",
    };
    crate::os::durable::replace_file(dir, NEW_FILE, PURGE_FILE, &encode(instance, mark), &ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::from_u128(7);
        assert_eq!(read(dir.path(), id).unwrap(), None);
        write(dir.path(), id, 4242).unwrap();
        assert_eq!(read(dir.path(), id).unwrap(), Some(4242));
        assert!(matches!(
            read(dir.path(), Uuid::from_u128(8)),
            Err(Error::BadPurgeMark { .. })
        ));
        let path = dir.path().join(PURGE_FILE);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() * 8 {
            let mut b = good.clone();
            b[i / 8] ^= 1 << (i % 8);
            std::fs::write(&path, &b).unwrap();
            assert!(
                matches!(read(dir.path(), id), Err(Error::BadPurgeMark { .. })),
                "bit {i}"
            );
        }
        for len in [0, 1, PURGE_LEN - 1, PURGE_LEN + 1, 1 << 20] {
            let mut b = good.clone();
            b.resize(len, 0);
            std::fs::write(&path, &b).unwrap();
            assert!(matches!(
                read(dir.path(), id),
                Err(Error::BadPurgeMark { .. })
            ));
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            read(dir.path(), id),
            Err(Error::BadPurgeMark { .. })
        ));
    }
}
