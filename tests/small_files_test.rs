//! The log's small files (`LOCK`, `META`, `POISONED`) as someone else may
//! have left them: not regular files, far larger than they can legitimately
//! be, or damaged. An open never blocks on them, never reads more than the
//! file can hold, and never takes a damaged poisoned-log record for none.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use durability::{Config, Error, Op, RunId, SyncMode, Wal, WalReader};

fn cfg() -> Config {
    Config::default()
        .segment_size(64 << 10)
        .sync_mode(SyncMode::Strict)
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, which
    // only reads it. (rustix has no `mkfifoat` on Apple systems.)
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o400) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Runs `f` on another thread and returns what it returns; fails the test if
/// it has not returned after a minute (a hang: nothing here waits for time
/// to pass when it works).
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not return: it blocks"))
}

fn new_log(dir: &Path) {
    let wal = Wal::open(dir, cfg()).unwrap();
    wal.append_txn(
        RunId::from_bytes([1; 16]),
        1,
        &[Op::Write {
            key: b"k",
            value: b"v",
            version: 1,
        }],
    )
    .unwrap();
    wal.close().unwrap();
}

#[test]
fn a_fifo_named_lock_never_blocks_an_open() {
    let dir = tempfile::tempdir().unwrap();
    new_log(dir.path());
    let lock = dir.path().join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    mkfifo(&lock);
    let d = dir.path().to_path_buf();
    let r = returns("WalReader::open", move || {
        WalReader::open(&d, cfg()).map(|r| r.recovery_report().entries)
    });
    assert_eq!(r.unwrap(), 3, "the reader still reads the log");
    let d = dir.path().to_path_buf();
    let e = returns("Wal::open", move || Wal::open(&d, cfg()).map(drop)).unwrap_err();
    assert!(
        matches!(&e, Error::Io { .. }) && e.to_string().contains("LOCK"),
        "{e}"
    );
    // The system's reason is in the message, once.
    assert!(e.to_string().contains("FIFO"), "{e}");
}

#[test]
fn a_fifo_named_meta_never_blocks_and_is_replaced_by_set_meta() {
    let dir = tempfile::tempdir().unwrap();
    new_log(dir.path());
    mkfifo(&dir.path().join("META"));
    mkfifo(&dir.path().join("META.new"));
    let d = dir.path().to_path_buf();
    let e = returns("WalReader::meta", move || {
        WalReader::open(&d, cfg()).unwrap().meta()
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadMeta { .. }), "{e}");
    let d = dir.path().to_path_buf();
    returns("Wal::open, set_meta and meta", move || {
        let wal = Wal::open(&d, cfg()).unwrap();
        assert!(matches!(wal.meta(), Err(Error::BadMeta { .. })));
        wal.set_meta(b"vote").unwrap();
        assert_eq!(wal.meta().unwrap().unwrap(), b"vote");
    });
}

#[test]
fn a_huge_meta_is_refused_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    new_log(dir.path());
    let f = std::fs::File::create(dir.path().join("META")).unwrap();
    f.set_len(1 << 30).unwrap();
    let reader = WalReader::open(dir.path(), cfg()).unwrap();
    match reader.meta() {
        Err(Error::BadMeta { detail, .. }) => assert!(detail.contains("longer than"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

/// A record as a version without checksums wrote it (`<id> <lsn>\n`).
fn legacy_record(dir: &Path, lsn: u64) {
    let id = WalReader::open(dir, cfg()).unwrap().instance_id();
    std::fs::write(dir.join("POISONED"), format!("{id} {lsn}\n")).unwrap();
}

#[test]
fn a_damaged_poisoned_record_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    new_log(dir.path());
    let path = dir.path().join("POISONED");
    // Cut short, garbled, a FIFO, far too long: never "no record".
    let damaged: [&dyn Fn(); 4] = [
        &|| std::fs::write(&path, b"DURPOIS1 0000").unwrap(),
        &|| std::fs::write(&path, b"\xff\xfe garbage\n").unwrap(),
        &|| mkfifo(&path),
        &|| {
            std::fs::File::create(&path)
                .unwrap()
                .set_len(1 << 30)
                .unwrap()
        },
    ];
    for damage in damaged {
        let _ = std::fs::remove_file(&path);
        damage();
        let d = dir.path().to_path_buf();
        let e = returns("Wal::open", move || Wal::open(&d, cfg()).map(drop)).unwrap_err();
        assert!(matches!(e, Error::BadPoisonRecord { .. }), "{e}");
        assert!(path.exists(), "the record was removed");
    }
    // A flipped bit in a checksummed record is caught: write a valid one
    // through the legacy form, let an open that honours it rewrite nothing
    // (it clears it), then flip a bit of a fresh checksummed record.
    std::fs::remove_file(&path).unwrap();
    let id = WalReader::open(dir.path(), cfg()).unwrap().instance_id();
    let body = format!("DURPOIS1 {id} 0");
    let good = format!("{body} {:08x}\n", crc32c::crc32c(body.as_bytes()));
    let mut bad = good.clone().into_bytes();
    bad[30] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let e = Wal::open(dir.path(), cfg()).map(drop).unwrap_err();
    assert!(matches!(e, Error::BadPoisonRecord { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    // The intact record is honoured: nothing past LSN 0 is trusted.
    std::fs::write(&path, &good).unwrap();
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(
        wal.end_lsn(),
        0,
        "entries past the record's LSN were trusted"
    );
    let p = wal.recovery_report().problem.clone().unwrap();
    assert!(p.detail.contains("not trusted"), "{p}");
    wal.close().unwrap();
    assert!(!path.exists(), "the record outlived the repair");
}

#[test]
fn a_record_without_a_checksum_is_still_honoured() {
    let dir = tempfile::tempdir().unwrap();
    new_log(dir.path());
    legacy_record(dir.path(), 0);
    let wal = Wal::open(dir.path(), cfg()).unwrap();
    assert_eq!(wal.end_lsn(), 0);
    wal.close().unwrap();
    assert!(!dir.path().join("POISONED").exists());
}
