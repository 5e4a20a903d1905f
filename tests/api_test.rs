//! The public surface that the behaviour suites do not reach on their way:
//! accessors, Display and Debug output, builders, and refusals of bad
//! arguments. Each assertion checks what a caller would rely on.

use durability::format::frame::{self, Decoder};
use durability::format::header::{self, Header, HeaderState};
use durability::{
    BorrowedEntry, Config, EntryKind, Error, Location, Op, ProblemClass, RecoveryMode, RunId,
    SyncMode, Wal, WalEntry, WalReader,
};
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

fn every_entry() -> Vec<WalEntry> {
    vec![
        WalEntry::BeginTxn {
            txn_id: 1,
            run_id: run(1),
            timestamp: 11,
        },
        WalEntry::Write {
            run_id: run(1),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            version: 2,
        },
        WalEntry::Delete {
            run_id: run(1),
            key: b"k".to_vec(),
            version: 3,
        },
        WalEntry::CommitTxn {
            txn_id: 1,
            run_id: run(1),
        },
        WalEntry::AbortTxn {
            txn_id: 4,
            run_id: run(2),
        },
        WalEntry::Checkpoint {
            snapshot_id: Uuid::from_u128(9),
            version: 5,
            active_runs: vec![run(1), run(2)],
        },
    ]
}

#[test]
fn run_ids_and_entry_kinds_convert_and_print() {
    let u = Uuid::from_u128(0x1234);
    let r = RunId::from(u);
    assert_eq!(r.as_uuid(), u);
    assert_eq!(r.as_bytes(), u.as_bytes());
    assert_eq!(format!("{r:?}"), format!("RunId({u})"));
    assert_eq!(r.to_string(), u.to_string());
    for k in EntryKind::ALL {
        assert_eq!(k.to_string(), k.name());
        assert_eq!(EntryKind::from_tag(k.tag()), Some(k));
    }
    assert_eq!(ProblemClass::TornTail.to_string(), "torn tail");
    assert_eq!(
        ProblemClass::MidLogCorruption.to_string(),
        "mid-log corruption"
    );
    assert_eq!(Location::at(7).to_string(), "offset 7");
    assert_eq!(
        Location::in_segment(3, 4100).to_string(),
        "segment 00000000000000000003.wal at offset 4100"
    );
}

#[test]
fn borrowed_and_viewed_entries_agree_with_owned_ones() {
    let dec = Decoder::default();
    assert_eq!(dec.max_payload(), frame::DEFAULT_MAX_PAYLOAD);
    for e in every_entry() {
        let b = e.as_borrowed();
        assert_eq!(b.kind(), e.kind());
        assert_eq!(b.run_id(), e.run_id());
        assert_eq!(b.to_owned(), e);
        let bytes = frame::encode_entry(&e);
        let f = dec.decode(&bytes, 0, 0).unwrap().unwrap();
        let v = f.entry;
        assert_eq!(v, v, "EntryRef compares by value");
        assert!(!format!("{v:?}").is_empty());
        assert_eq!(v.archived().clone_kind(), e.kind());
        assert_eq!(
            v.key(),
            match &e {
                WalEntry::Write { key, .. } | WalEntry::Delete { key, .. } => Some(&key[..]),
                _ => None,
            }
        );
        assert_eq!(v.value().is_some(), matches!(e, WalEntry::Write { .. }));
        assert_eq!(
            v.timestamp(),
            match e {
                WalEntry::BeginTxn { timestamp, .. } => Some(timestamp),
                _ => None,
            }
        );
        assert_eq!(
            v.snapshot_id(),
            match e {
                WalEntry::Checkpoint { snapshot_id, .. } => Some(snapshot_id),
                _ => None,
            }
        );
        assert_eq!(v.active_runs().len(), if e.is_checkpoint() { 2 } else { 0 });
        assert_eq!(v.run_id_ref().copied(), e.run_id());
    }
    let op = Op::Delete {
        key: b"x",
        version: 1,
    };
    assert_eq!(op.entry(run(3)).kind(), EntryKind::Delete);
}

/// A tiny extension so the test reads the archived enum's variant directly.
trait CloneKind {
    fn clone_kind(&self) -> EntryKind;
}

impl CloneKind for durability::ArchivedWalEntry {
    fn clone_kind(&self) -> EntryKind {
        match self {
            durability::ArchivedWalEntry::BeginTxn { .. } => EntryKind::BeginTxn,
            durability::ArchivedWalEntry::Write { .. } => EntryKind::Write,
            durability::ArchivedWalEntry::Delete { .. } => EntryKind::Delete,
            durability::ArchivedWalEntry::CommitTxn { .. } => EntryKind::CommitTxn,
            durability::ArchivedWalEntry::AbortTxn { .. } => EntryKind::AbortTxn,
            durability::ArchivedWalEntry::Checkpoint { .. } => EntryKind::Checkpoint,
            durability::ArchivedWalEntry::Truncate { .. } => EntryKind::Truncate,
            durability::ArchivedWalEntry::Raft { .. } => EntryKind::Raft,
        }
    }
}

#[test]
fn segment_names_and_headers_are_checked() {
    assert_eq!(
        header::parse_file_name("00000000000000000042.wal"),
        Some(42)
    );
    for bad in [
        "42.wal",
        "0000000000000000004x.wal",
        "00000000000000000042.log",
        "x",
    ] {
        assert_eq!(header::parse_file_name(bad), None, "{bad}");
    }
    assert!(matches!(Header::read(&[1, 2, 3]), HeaderState::Invalid(_)));
    assert!(matches!(Header::read(&[0; 128]), HeaderState::Blank));
    let h = Header::new(Uuid::from_u128(5), 3, 100, 8192);
    assert_eq!(h.instance(), Uuid::from_u128(5));
    let mut bytes = zerocopy::IntoBytes::as_bytes(&h).to_vec();
    assert!(matches!(Header::read(&bytes), HeaderState::Valid(_)));
    bytes[0] ^= 1;
    assert!(matches!(Header::read(&bytes), HeaderState::Invalid(d) if d.contains("magic")));
    bytes[0] ^= 1;
    bytes[8] = 9; // version, with the CRC fixed up
    let crc = crc32c::crc32c(&bytes[..124]);
    bytes[124..].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(Header::read(&bytes), HeaderState::Invalid(d) if d.contains("version")));

    // Opening and mapping segment files is crate-internal; segment.rs
    // tests it.
}

#[test]
fn configs_handles_and_readers_expose_what_they_hold() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::from_u128(77);
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict)
        .recovery_mode(RecoveryMode::AbsoluteConsistency)
        .prefault(false)
        .instance_id(id);
    assert_eq!(cfg.effective_max_entry_size(), (64 << 10) - 4096 - 9);
    assert!(matches!(
        Wal::open(dir.path(), cfg.clone().segment_size(1000)),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Wal::open(dir.path(), cfg.clone().max_entry_size(3)),
        Err(Error::Config(_))
    ));
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(wal.instance_id(), id);
    assert_eq!(wal.dir(), dir.path());
    assert_eq!(wal.config(), &cfg);
    assert!(format!("{wal:?}").contains("Wal"));
    wal.flush().unwrap();
    for e in every_entry() {
        wal.append(&e).unwrap();
    }
    assert_eq!(wal.runs().len(), 2);
    let snap = wal.snapshot();
    assert!(format!("{snap:?}").contains("Snapshot"));
    assert_eq!(snap.segment_seqs().collect::<Vec<_>>(), vec![0]);
    assert!(matches!(
        snap.read_at(snap.end_lsn()),
        Err(Error::BadLsn { .. })
    ));
    assert_eq!(wal.size(), snap.len_bytes());
    drop(snap);
    let tail = wal.tail(0);
    assert_eq!(tail.position(), 0);
    wal.close().unwrap();

    let reader = WalReader::open(dir.path(), &cfg).unwrap();
    assert_eq!(reader.instance_id(), id);
    assert_eq!(reader.dir(), dir.path());
    assert!(format!("{reader:?}").contains("WalReader"));
    assert_eq!(reader.runs().len(), 2);
    let diffs = reader.diff_runs(run(1), run(2)).unwrap();
    assert!(
        diffs.is_empty(),
        "run 1 deleted its only key; run 2 never wrote it: {diffs:?}"
    );
    let file = dir.path().join("00000000000000000000.wal");
    assert!(matches!(
        WalReader::open(&file, &cfg),
        Err(Error::Io { .. })
    ));
}

#[test]
fn errors_say_what_they_are() {
    let at = Location::in_segment(1, 4096);
    let all = [
        Error::Checksum {
            at,
            expected: 1,
            got: 2,
        },
        Error::Truncated {
            at,
            needed: 9,
            available: 3,
        },
        Error::TooLarge {
            at,
            len: 10,
            max: 5,
        },
        Error::TooSmall {
            at,
            len: 1,
            min: 41,
        },
        Error::UnknownType { at, tag: 99 },
        Error::TypeMismatch {
            at,
            tag: 2,
            payload_tag: 3,
        },
        Error::InvalidPayload {
            at,
            detail: "x".into(),
        },
        Error::Corrupt {
            at,
            class: ProblemClass::MidLogCorruption,
            detail: "x".into(),
        },
    ];
    for e in &all {
        assert_eq!(e.location(), Some(at), "{e}");
        assert!(e.is_corruption());
        assert!(
            e.to_string()
                .contains("00000000000000000001.wal at offset 4096"),
            "{e}"
        );
    }
    let others = [
        Error::EntryTooLarge { len: 1, max: 0 },
        Error::Locked {
            lock_file: "LOCK".into(),
        },
        Error::NotALog { dir: "d".into() },
        Error::Config("c".into()),
        Error::Poisoned {
            cause: "eio".into(),
        },
        Error::Closed,
        Error::BadLsn {
            lsn: 3,
            detail: "d".into(),
        },
        Error::Io {
            op: "read",
            path: "p".into(),
            error: std::io::Error::other("boom"),
        },
    ];
    // An I/O error says the call, the file and the system's error once,
    // in its message, so a chain printer does not repeat it.
    let io = others.last().unwrap();
    assert_eq!(io.to_string(), "read p: boom");
    assert!(std::error::Error::source(io).is_none());
    for e in &others {
        assert_eq!(e.location(), None);
        assert!(!e.is_corruption());
        assert!(!e.to_string().is_empty());
    }
    assert!(Error::SegmentHeader {
        segment: 2,
        detail: "d".into()
    }
    .is_corruption());
    assert!(Error::Layout {
        dir: "d".into(),
        detail: "x".into()
    }
    .to_string()
    .contains('x'));
    let b = BorrowedEntry::CommitTxn {
        txn_id: 1,
        run_id: run(1),
    };
    let mut small = [0u8; 10];
    assert!(matches!(
        frame::encode_into(&b, 0, &mut small),
        Err(Error::EntryTooLarge { .. })
    ));
}

/// A position that is not an entry's start is the caller's mistake
/// (`Error::BadLsn`), never reported as damage, wherever a position is
/// taken; damage at a real entry's start is still damage.
#[test]
fn a_position_inside_an_entry_is_bad_lsn_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict);
    let wal = Wal::open(dir.path(), cfg.clone()).unwrap();
    let first = wal
        .append_txn(
            run(1),
            1,
            &[Op::Write {
                key: b"k",
                value: b"v",
                version: 1,
            }],
        )
        .unwrap();
    let ck = wal
        .checkpoint(Uuid::from_u128(1), 1, &[])
        .map(|p| p.lsn)
        .unwrap();
    let bad = |e: Error, lsn: u64| {
        assert!(
            matches!(e, Error::BadLsn { lsn: l, .. } if l == lsn) && !e.is_corruption(),
            "{e}"
        );
    };
    let snap = wal.snapshot();
    for lsn in [1, 13, first.commit - 1, ck + 1, ck + 40] {
        bad(snap.read_at(lsn).unwrap_err(), lsn);
        bad(
            snap.iter_from(lsn).unwrap().next().unwrap().unwrap_err(),
            lsn,
        );
        bad(wal.tail(lsn).poll().unwrap_err(), lsn);
        bad(wal.purge_to_checkpoint(lsn).unwrap_err(), lsn);
        bad(wal.truncate_from(lsn).unwrap_err(), lsn);
    }
    let e = snap.read_at(13).unwrap_err();
    assert!(e.to_string().contains("inside the entry at LSN 0"), "{e}");
    // Real positions still read.
    assert!(snap.read_at(first.commit).is_ok());
    assert_eq!(wal.purge_to_checkpoint(ck).unwrap(), 0);
    drop(snap);
    wal.close().unwrap();

    // Damage under a reader (bytes changed after it validated them): at an
    // entry's start it is reported as damage, not as a bad position.
    let reader = WalReader::open(dir.path(), &cfg).unwrap();
    let seg = dir.path().join(header::file_name(0));
    let at = 4096 + first.commit + 6;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut byte = [0u8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, at).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0x40], at).unwrap();
    let e = reader.snapshot().read_at(first.commit).unwrap_err();
    assert!(e.is_corruption(), "{e}");
}

/// Opening a log where a regular file is says so, with the path, the
/// operation and the system's reason, once; and nothing is created.
#[test]
fn opening_a_log_at_a_regular_file_says_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log");
    std::fs::write(&file, b"not a log").unwrap();
    let e = Wal::open(&file, Config::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, Error::Io { op: "open log directory", error, .. }
            if error.kind() == std::io::ErrorKind::NotADirectory),
        "{e:?}"
    );
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("not a directory"), "{msg}");
    assert!(!msg.contains("create directory"), "{msg}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a log");
}
