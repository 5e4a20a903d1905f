//! Shared pieces of the targets that work on whole logs (`recover_dir`,
//! `model`): segment headers written independently of the library (from the
//! table in DESIGN.md §2), an independent model of replay (DESIGN.md §9),
//! and helpers that read a log back and compare it with the model.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use durability::{Config, Error, KeyDiff, KeyState, Snapshot, SyncMode, Txn, WalEntry};
use durability::{EntryKind, RunId};

/// Bytes of a segment header.
pub const HEADER_LEN: usize = 128;
/// Offset of the first frame in a segment file.
pub const DATA_START: usize = 4096;
/// The assumed-atomic write unit.
pub const SECTOR: usize = 512;
/// `"DURWAL\r\n"`.
pub const MAGIC: [u8; 8] = *b"DURWAL\r\n";

/// The configuration the targets open logs with: small segments, syncs only
/// when asked (or when the log rotates or closes), no pre-faulting.
pub fn config(segment_size: u64) -> Config {
    Config::default()
        .segment_size(segment_size)
        .sync_mode(SyncMode::Async {
            interval_ms: 3_600_000,
        })
        .prefault(false)
}

/// The 128 header bytes of a segment, laid out as DESIGN.md §2 says.
pub fn header_bytes(
    instance: [u8; 16],
    seq: u64,
    first_lsn: u64,
    segment_size: u64,
    created_micros: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h[16..32].copy_from_slice(&instance);
    h[32..40].copy_from_slice(&seq.to_le_bytes());
    h[40..48].copy_from_slice(&first_lsn.to_le_bytes());
    h[48..56].copy_from_slice(&segment_size.to_le_bytes());
    h[56..64].copy_from_slice(&created_micros.to_le_bytes());
    fix_header_crc(&mut h);
    h
}

/// Recomputes the CRC of the header at the start of `bytes`.
pub fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[..HEADER_LEN - 4]);
    bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// True if `bytes` starts with a well-formed header (magic, version, CRC).
pub fn header_valid(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[..8] == MAGIC
        && bytes[8..12] == 1u32.to_le_bytes()
        && crc32c::crc32c(&bytes[..HEADER_LEN - 4]).to_le_bytes()
            == bytes[HEADER_LEN - 4..HEADER_LEN]
}

/// True if the header is blank (all zero).
pub fn header_blank(bytes: &[u8]) -> bool {
    bytes.iter().take(HEADER_LEN).all(|&b| b == 0)
}

/// The `first_lsn` field of a header.
pub fn header_first_lsn(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[40..48].try_into().unwrap())
}

/// The sequence number in a segment file name (`<20 digits>.wal`).
pub fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of segment `seq`.
pub fn seg_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// One entry read back from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub lsn: u64,
    pub segment: u64,
    pub offset: usize,
    pub entry: WalEntry,
}

/// Every entry of `snap`, checking that iteration never fails (the open
/// validated all of it), that LSNs are contiguous from the snapshot's start
/// to its end, and that each entry's offset is where its LSN says.
pub fn read_all(snap: &Snapshot) -> Vec<Read> {
    let mut out: Vec<Read> = Vec::new();
    let mut next = snap.start_lsn();
    for (i, r) in snap.iter().enumerate() {
        let e = r.unwrap_or_else(|e| {
            panic!("entry {i} of a log that opened without error fails to read: {e}")
        });
        // A truncation's deleted range is skipped: the next entry read is
        // its record.
        assert_eq!(
            e.lsn,
            snap.skip_truncated(next),
            "entry {i}: LSNs are not contiguous"
        );
        assert!(e.offset >= DATA_START, "entry {i} inside the header page");
        let entry = e.entry.to_owned();
        next = e.lsn + durability::format::frame::frame_len(&entry.as_borrowed()) as u64;
        out.push(Read {
            lsn: e.lsn,
            segment: e.segment,
            offset: e.offset,
            entry,
        });
    }
    assert_eq!(
        next,
        snap.end_lsn(),
        "the entries do not reach the snapshot's end"
    );
    out
}

/// The transactions open just before `at` (run, txn id), by replay's rule,
/// in a log whose entries `entries` start where `cut` were open.
pub fn open_at<'a>(
    cut: &[(RunId, u64)],
    entries: impl IntoIterator<Item = (u64, &'a WalEntry)>,
    at: u64,
) -> Vec<(RunId, u64)> {
    let mut open = cut.to_vec();
    for (lsn, e) in entries {
        if lsn >= at {
            break;
        }
        let Some(run) = e.run_id() else { continue };
        let i = open.iter().position(|o| o.0 == run);
        match e.kind() {
            EntryKind::BeginTxn => {
                if let Some(i) = i {
                    open.remove(i);
                }
                open.push((run, e.txn_id().unwrap_or(0)));
            }
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                if let Some(i) = i.filter(|&i| Some(open[i].1) == e.txn_id()) {
                    open.remove(i);
                }
            }
            _ => {}
        }
    }
    open
}

/// A committed unit (DESIGN.md §9), borrowing the model's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit<'a> {
    pub run: RunId,
    pub txn: Option<u64>,
    pub timestamp: Option<u64>,
    pub begin: u64,
    pub commit: u64,
    pub ops: Vec<(u64, &'a WalEntry)>,
}

impl Unit<'_> {
    /// True if replay delivered exactly this unit as `t`.
    pub fn is(&self, t: &Txn<'_, '_>) -> bool {
        self.run == t.run_id
            && self.txn == t.txn_id
            && self.timestamp == t.timestamp
            && self.begin == t.begin_lsn
            && self.commit == t.commit_lsn
            && self.ops.len() == t.ops.len()
            && self
                .ops
                .iter()
                .zip(t.ops)
                .all(|((lsn, e), o)| *lsn == o.lsn && e.as_borrowed() == o.entry.as_borrowed())
    }

    fn brief(&self) -> String {
        brief(
            &self.run,
            self.txn,
            self.begin,
            self.commit,
            self.ops.iter().map(|o| o.0),
        )
    }
}

fn brief(
    run: &RunId,
    txn: Option<u64>,
    begin: u64,
    commit: u64,
    ops: impl Iterator<Item = u64>,
) -> String {
    format!(
        "run {:02x}.. txn {txn:?} LSN {begin}..={commit}, ops at {:?}",
        run.as_bytes()[0],
        ops.collect::<Vec<_>>()
    )
}

struct Open<'a> {
    /// Begun below the log's start (the purge mark): never delivered.
    cut: bool,
    run: RunId,
    txn: u64,
    timestamp: u64,
    begin: u64,
    ops: Vec<(u64, &'a WalEntry)>,
}

/// The committed units of a sequence of `(lsn, entry)`, by the rules of
/// DESIGN.md §9 and `Txn`'s documentation: a BeginTxn, the Writes and
/// Deletes of its run that follow, and the CommitTxn of the same txn id form
/// a unit; a Write/Delete of a run with no open transaction is a unit of its
/// own; a new BeginTxn of a run replaces (drops) its open transaction; an
/// AbortTxn of the open txn id drops it; ends with another id are ignored.
pub fn units<'a>(entries: impl IntoIterator<Item = (u64, &'a WalEntry)>) -> Vec<Unit<'a>> {
    units_from(&[], entries)
}

/// [`units`] of a log that starts at a purge mark, where the transactions
/// `cut` (run, txn id) are open, begun below it: they are never delivered,
/// and their entries after the mark are neither (DESIGN.md §9). So the
/// units are those a replay of the whole log delivers that begin at or
/// after the mark.
pub fn units_from<'a>(
    cut: &[(RunId, u64)],
    entries: impl IntoIterator<Item = (u64, &'a WalEntry)>,
) -> Vec<Unit<'a>> {
    let mut open: Vec<Open<'a>> = cut
        .iter()
        .map(|&(run, txn)| Open {
            cut: true,
            run,
            txn,
            timestamp: 0,
            begin: 0,
            ops: Vec::new(),
        })
        .collect();
    let mut out = Vec::new();
    for (lsn, e) in entries {
        let Some(run) = e.run_id() else { continue };
        let at = open.iter().position(|o| o.run == run);
        match e.kind() {
            EntryKind::Write | EntryKind::Delete => match at {
                Some(i) => open[i].ops.push((lsn, e)),
                None => out.push(Unit {
                    run,
                    txn: None,
                    timestamp: None,
                    begin: lsn,
                    commit: lsn,
                    ops: vec![(lsn, e)],
                }),
            },
            EntryKind::BeginTxn => {
                if let Some(i) = at {
                    open.remove(i);
                }
                let WalEntry::BeginTxn {
                    txn_id, timestamp, ..
                } = e
                else {
                    unreachable!()
                };
                open.push(Open {
                    cut: false,
                    run,
                    txn: *txn_id,
                    timestamp: *timestamp,
                    begin: lsn,
                    ops: Vec::new(),
                });
            }
            EntryKind::CommitTxn | EntryKind::AbortTxn => {
                if let Some(i) = at.filter(|&i| Some(open[i].txn) == e.txn_id()) {
                    let o = open.remove(i);
                    if e.kind() == EntryKind::CommitTxn && !o.cut {
                        out.push(Unit {
                            run,
                            txn: Some(o.txn),
                            timestamp: Some(o.timestamp),
                            begin: o.begin,
                            commit: lsn,
                            ops: o.ops,
                        });
                    }
                }
            }
            EntryKind::Checkpoint | EntryKind::Truncate | EntryKind::Raft => {}
        }
    }
    out
}

/// Runs `replay` and checks it delivers exactly `want`, in order; panics
/// naming the first difference.
pub fn check_replay(
    what: &str,
    want: &[Unit<'_>],
    replay: impl FnOnce(&mut dyn FnMut(&Txn<'_, '_>)) -> Result<(), Error>,
) {
    let mut n = 0;
    let mut first_bad: Option<(usize, String)> = None;
    replay(&mut |t| {
        if first_bad.is_none() && !want.get(n).is_some_and(|u| u.is(t)) {
            let got = brief(
                &t.run_id,
                t.txn_id,
                t.begin_lsn,
                t.commit_lsn,
                t.ops.iter().map(|o| o.lsn),
            );
            first_bad = Some((n, got));
        }
        n += 1;
    })
    .unwrap_or_else(|e| panic!("{what} of a log that opened without error failed: {e}"));
    if let Some((i, got)) = first_bad {
        panic!(
            "{what} differs from the model at unit {i} (of {n}; the model has {}):\n  got:  {got}\n  want: {}",
            want.len(),
            want.get(i).map_or("nothing".into(), |u| u.brief())
        );
    }
    assert_eq!(
        n,
        want.len(),
        "{what} delivered {n} units, the model has {}",
        want.len()
    );
}

/// Checks that `snap` holds exactly `want` (LSN and entry), without copying
/// entries out, and that its LSNs are contiguous from its start to its end
/// once the deleted ranges `dead` (sorted, disjoint, not touching: the
/// union of the truncation records' `[from, at)`) are stepped over, which
/// must be exactly the ranges the snapshot reports.
pub fn check_entries<'a>(
    snap: &Snapshot,
    want: impl ExactSizeIterator<Item = (u64, &'a WalEntry)>,
    dead: &[(u64, u64)],
) {
    assert_eq!(
        snap.truncated(),
        dead,
        "the snapshot's deleted ranges differ from the model's"
    );
    let skip = |lsn: u64| {
        dead.iter()
            .find(|&&(s, e)| s <= lsn && lsn < e)
            .map_or(lsn, |&(_, e)| e)
    };
    let n = want.len();
    let mut want = want;
    let mut next = skip(snap.start_lsn());
    let mut count = 0;
    for (i, r) in snap.iter().enumerate() {
        let e = r.unwrap_or_else(|e| {
            panic!("entry {i} of a log that opened without error fails to read: {e}")
        });
        // A truncation's deleted range is skipped: the next entry read is
        // its record.
        assert_eq!(
            e.lsn,
            snap.skip_truncated(next),
            "entry {i}: LSNs are not contiguous"
        );
        let b = e.entry.as_borrowed();
        match want.next() {
            Some((lsn, w)) => assert!(
                lsn == e.lsn && w.as_borrowed() == b,
                "entry {i} differs from the model:\n  got:  LSN {} {:?}\n  want: LSN {lsn} {w:?}",
                e.lsn,
                e.entry.to_owned()
            ),
            None => panic!(
                "the log holds more entries than the model ({n}); entry {i} at LSN {}: {:?}",
                e.lsn,
                e.entry.to_owned()
            ),
        }
        next = skip(e.lsn + durability::format::frame::frame_len(&b) as u64);
        count += 1;
    }
    assert_eq!(count, n, "the log holds {count} entries, the model {n}");
    assert_eq!(
        next,
        snap.end_lsn(),
        "the entries do not reach the snapshot's end"
    );
}

/// The deleted ranges of a sequence of `(lsn, entry)` in log order: the
/// union of `[from, at)` for every Truncate record at `at` naming
/// `from < at`, merged where they overlap or touch. Computed independently
/// of the library: sort and merge.
pub fn dead_ranges<'a>(entries: impl IntoIterator<Item = (u64, &'a WalEntry)>) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = entries
        .into_iter()
        .filter_map(|(at, e)| match e {
            WalEntry::Truncate { from } if *from < at => Some((*from, at)),
            _ => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// True if `lsn` lies in one of the `dead` ranges.
pub fn is_dead(dead: &[(u64, u64)], lsn: u64) -> bool {
    dead.iter().any(|&(s, e)| s <= lsn && lsn < e)
}

/// The final state of every key `run` touched, from `units`.
pub fn final_state(units: &[Unit<'_>], run: RunId) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut state = BTreeMap::new();
    for u in units.iter().filter(|u| u.run == run) {
        for (_, op) in &u.ops {
            match op {
                WalEntry::Write { key, value, .. } => {
                    state.insert(key.clone(), Some(value.clone()));
                }
                WalEntry::Delete { key, .. } => {
                    state.insert(key.clone(), None);
                }
                _ => {}
            }
        }
    }
    state
}

/// What `diff_runs(a, b)` should return, from the model's units.
pub fn expected_diff(units: &[Unit<'_>], a: RunId, b: RunId) -> Vec<KeyDiff> {
    let (sa, sb) = (final_state(units, a), final_state(units, b));
    let state = |m: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, k: &Vec<u8>| match m.get(k) {
        None => KeyState::Absent,
        Some(None) => KeyState::Deleted,
        Some(Some(v)) => KeyState::Value(v.clone()),
    };
    let mut keys: Vec<&Vec<u8>> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| sa.get(*k).cloned().flatten() != sb.get(*k).cloned().flatten())
        .map(|k| KeyDiff {
            key: k.clone(),
            a: state(&sa, k),
            b: state(&sb, k),
        })
        .collect()
}

/// A cheap check that reading never changed a file: name and bytes of every
/// file in `dir` except the lock file.
pub fn dir_state(dir: &Path) -> Vec<(String, Vec<u8>)> {
    crate::scratch::read_files(dir)
        .into_iter()
        .filter(|(n, _)| n != "LOCK")
        .collect()
}

/// The segment files (`*.wal`) of `dir`, sorted by sequence number.
pub fn segment_files(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("list dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            seq_of(name.to_str()?).map(|s| (s, e.path()))
        })
        .collect();
    out.sort();
    out
}
