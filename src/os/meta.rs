//! The log's metadata file: a small blob of the caller's, replaced
//! atomically and durably (DESIGN.md §10, "Metadata").
//!
//! A replication layer keeps here what must survive a crash beside the log
//! but is not part of it (a Raft vote, the last purged entry). The file is
//! `META`: `"DURMETA1"`, the blob's length (u32 LE), CRC-32C of the length
//! and blob (u32 LE), the blob. A write goes to `META.new`, is fsynced,
//! renamed over `META`, and the directory is fsynced: after a crash the
//! file holds the old blob or the new one, never a mix. A `META` that does
//! not check out is reported ([`Error::BadMeta`]), never ignored: the blob
//! may be a vote, and forgetting a vote allows a double vote.

use std::io::ErrorKind;
use std::path::Path;

use crate::error::{Error, Result};

/// The metadata file's name in the log directory.
pub const META_FILE: &str = "META";
const NEW_FILE: &str = "META.new";
const MAGIC: &[u8; 8] = b"DURMETA1";
const HEADER: usize = 16;
/// The largest blob stored.
pub const MAX_META: usize = 1 << 20;

fn checksum(len: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), data)
}

/// The blob in `dir`'s metadata file, or `None` if there is none. Only a
/// regular file is read, and only as much as a metadata file can hold.
pub(crate) fn read(dir: &Path) -> Result<Option<Vec<u8>>> {
    let path = dir.join(META_FILE);
    let bad = |detail: String| Error::BadMeta {
        path: path.clone(),
        detail,
    };
    let bytes = match crate::os::files::read_small(&path, HEADER + MAX_META) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        // Too long, or not a regular file: not a metadata file this crate
        // wrote, and never "no metadata" (it may hold a vote).
        Err(e) if matches!(e.kind(), ErrorKind::InvalidData | ErrorKind::InvalidInput) => {
            return Err(bad(e.to_string()))
        }
        Err(e) => return Err(Error::io("read metadata", &path, e)),
    };
    let Some((head, data)) = bytes.split_at_checked(HEADER) else {
        return Err(bad(format!(
            "{} bytes, shorter than its header",
            bytes.len()
        )));
    };
    if &head[..8] != MAGIC {
        return Err(bad("no DURMETA1 magic".into()));
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let crc = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if len as usize != data.len() {
        return Err(bad(format!(
            "the header gives {len} bytes of data, the file holds {}",
            data.len()
        )));
    }
    if checksum(len, data) != crc {
        return Err(bad("checksum mismatch".into()));
    }
    Ok(Some(data.to_vec()))
}

/// Replaces `dir`'s metadata with `data`, durably, before returning.
pub(crate) fn write(dir: &Path, data: &[u8]) -> Result<()> {
    if data.len() > MAX_META {
        return Err(Error::InvalidArgument {
            detail: format!("metadata of {} bytes; at most {MAX_META}", data.len()),
        });
    }
    let len = data.len() as u32;
    let mut buf = Vec::with_capacity(HEADER + data.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(len, data).to_le_bytes());
    buf.extend_from_slice(data);
    let ops = crate::os::durable::Replace {
        remove: "remove stale metadata",
        create: "create metadata",
        write: "write metadata",
        sync: "sync metadata",
        rename: "replace metadata",
    };
    crate::os::durable::replace_file(dir, NEW_FILE, META_FILE, &buf, &ops)
}
