//! Where an append put its entries, and what "durable" waits for.
//!
//! Every append returns a position that says what it holds: where its
//! entry (or first entry) starts, and its `end`, the LSN just past it. A
//! unit is durable once everything below its end is, so waiting for
//! durability takes an [`Appended`] (any of these positions, whose `end`
//! it waits for), never a bare LSN: `wal.durable(wal.submit_entry(e)?)`
//! waits for the entry's last byte, not its first. A bare LSN becomes an
//! end only explicitly, with [`End`]:
//!
//! ```compile_fail,E0277
//! # let dir = tempfile::tempdir().unwrap();
//! # let wal = durability::Wal::open(dir.path(), durability::Config::default()).unwrap();
//! let pos = wal.submit_entry(durability::BorrowedEntry::Truncate { from: 0 }).unwrap();
//! wal.wait_durable(pos.lsn).unwrap(); // an entry's start is not an end: refused
//! ```
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! # let wal = durability::Wal::open(dir.path(), durability::Config::default()).unwrap();
//! # let e = durability::BorrowedEntry::CommitTxn { txn_id: 1, run_id: durability::RunId::new() };
//! let pos = wal.submit_entry(e).unwrap();
//! wal.wait_durable(pos).unwrap(); // waits for pos.end
//! wal.wait_durable(durability::End(wal.end_lsn())).unwrap();
//! assert!(wal.durable_lsn() >= pos.end);
//! ```

use crate::format::Lsn;

/// Anything an append returned: durable once everything below its
/// [`end`](Appended::end) is. [`Wal::durable`](crate::Wal::durable),
/// [`Wal::wait_durable`](crate::Wal::wait_durable) and
/// [`Wal::on_durable`](crate::Wal::on_durable) take one.
pub trait Appended {
    /// The LSN just past the appended unit: it is durable once everything
    /// below this is.
    fn end(&self) -> Lsn;
}

/// Where one entry landed ([`Wal::append`](crate::Wal::append),
/// [`Wal::submit_entry`](crate::Wal::submit_entry),
/// [`Wal::checkpoint`](crate::Wal::checkpoint), and the record of
/// [`Wal::truncate_from`](crate::Wal::truncate_from)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryPosition {
    /// The entry's LSN: where it starts (what `read_at`, `iter_from`,
    /// `tail` and `purge_to_checkpoint` take).
    pub lsn: Lsn,
    /// The LSN just past it (what durability waits for).
    pub end: Lsn,
}

/// Where a transaction appended with [`Wal::append_txn`](crate::Wal::append_txn)
/// landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnPosition {
    /// LSN of its BeginTxn.
    pub begin: Lsn,
    /// LSN of its CommitTxn.
    pub commit: Lsn,
    /// LSN just past it.
    pub end: Lsn,
}

/// Where an [`append_batch`](crate::Wal::append_batch) put its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchPosition {
    /// LSN of the first entry.
    pub first: Lsn,
    /// LSN just past the last.
    pub end: Lsn,
}

/// An end given as a bare LSN: "everything below `0`". For an LSN that
/// came from elsewhere (a stored position, [`Wal::end_lsn`](crate::Wal::end_lsn)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct End(pub Lsn);

impl Appended for EntryPosition {
    fn end(&self) -> Lsn {
        self.end
    }
}

impl Appended for TxnPosition {
    fn end(&self) -> Lsn {
        self.end
    }
}

impl Appended for BatchPosition {
    fn end(&self) -> Lsn {
        self.end
    }
}

impl Appended for End {
    fn end(&self) -> Lsn {
        self.0
    }
}

impl<T: Appended + ?Sized> Appended for &T {
    fn end(&self) -> Lsn {
        (**self).end()
    }
}
