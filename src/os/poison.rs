//! The poisoned-log record (`POISONED`, DESIGN.md §7): written when a sync
//! of the log failed, read by the next write open, removed once the log is
//! consistent on disk again.

use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, Result};

/// The name of the poisoned-log record in a log directory: one line,
/// `DURPOIS1 <instance id> <LSN below which a sync completed> <CRC-32C>`,
/// the CRC (8 hex digits) over everything before its separating space.
pub const POISON_FILE: &str = "POISONED";
const POISON_MAGIC: &str = "DURPOIS1";
/// The longest record: magic, a hyphenated UUID, a u64, a CRC, separators.
const MAX_POISON_RECORD: usize = 8 + 1 + 36 + 1 + 20 + 1 + 8 + 1;

fn poison_record(instance: Uuid, synced: u64) -> String {
    let body = format!("{POISON_MAGIC} {instance} {synced}");
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body} {crc:08x}\n")
}

/// Parses a record: the checksummed form, or the form written before it
/// had one (`<instance> <LSN>` and a newline, exactly as that version
/// wrote it). Anything else is damage.
fn parse_poison_record(bytes: &[u8]) -> std::result::Result<(Uuid, u64), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| "no line end: the record is cut short".to_string())?;
    if let Some(rest) = line.strip_prefix(POISON_MAGIC) {
        let (body, crc) = line
            .rsplit_once(' ')
            .ok_or_else(|| "no checksum".to_string())?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| "bad checksum field".to_string())?;
        let computed = crc32c::crc32c(body.as_bytes());
        if crc != computed {
            return Err(format!(
                "checksum mismatch (stored {crc:#010x}, computed {computed:#010x})"
            ));
        }
        let mut it = rest.split(' ').skip(1);
        let parsed = (|| {
            let id: Uuid = it.next()?.parse().ok()?;
            let lsn: u64 = it.next()?.parse().ok()?;
            Some((id, lsn))
        })();
        return match parsed {
            Some((id, lsn)) if poison_record(id, lsn) == text => Ok((id, lsn)),
            _ => Err("fields do not parse".to_string()),
        };
    }
    // The form without a checksum: believed only if it is byte for byte
    // what that version wrote for the values it parses to.
    let mut it = line.split(' ');
    let legacy = (|| {
        let id: Uuid = it.next()?.parse().ok()?;
        let lsn: u64 = it.next()?.parse().ok()?;
        Some((id, lsn))
    })();
    match legacy {
        Some((id, lsn)) if format!("{id} {lsn}\n") == text => Ok((id, lsn)),
        _ => Err("not a poisoned-log record".to_string()),
    }
}

pub(crate) fn write_poison_file(dir: &Path, instance: Uuid, synced: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{POISON_FILE}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = crate::os::files::open_regular(
        &tmp,
        std::fs::OpenOptions::new().write(true).create_new(true),
    )?;
    f.write_all(poison_record(instance, synced).as_bytes())?;
    crate::os::durable::sync_file(&f)?;
    std::fs::rename(&tmp, dir.join(POISON_FILE))?;
    crate::os::durable::sync_file(&std::fs::File::open(dir)?)
}

pub(crate) fn read_poison_file(dir: &Path) -> Result<Option<(Uuid, u64)>> {
    let path = dir.join(POISON_FILE);
    let bad = |detail: String| Error::BadPoisonRecord {
        path: path.clone(),
        detail,
    };
    match crate::os::files::read_small(&path, MAX_POISON_RECORD) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => parse_poison_record(&bytes).map(Some).map_err(bad),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ) =>
        {
            Err(bad(e.to_string()))
        }
        Err(e) => Err(Error::io("read poison record", &path, e)),
    }
}
