//! The bytes on disk, and nothing else: the entry model, the frame codec,
//! the CRC, the segment header and segment names. Pure functions over byte
//! slices: no file, no map, no system call (DESIGN.md §2-§4).

pub(crate) mod crc;
pub mod entry;
pub mod frame;
pub mod header;
pub mod view;

/// A log position: the byte offset of an entry in the log's logical stream
/// (all segments' frames end to end). Stable across reopen; see DESIGN.md.
pub type Lsn = u64;
