//! Concurrency stress: real threads appending to, reading, tailing,
//! replaying and truncating one log at the same time, with seeded workloads
//! and a model of every entry appended.
//!
//! Every loop is bounded by an iteration count and a deadline, and every
//! thread is joined under a watchdog, so a stuck thread fails the test
//! instead of hanging it. What a reader saw (a snapshot, a `WalReader`, a
//! tail) is recorded compactly while the threads run — its LSN range, its
//! entry count and a position-bound hash of its entries — and checked
//! against the model once the writers have stopped, so the assertions hold
//! for every interleaving: timing only bounds the amount of work.
//!
//! The key of every write names its run, its transaction and how that
//! transaction ends (see [`Key`]), so a write delivered by replay is judged
//! on the spot: a write of an aborted or unfinished transaction must never
//! be delivered, and a write of a committed one only inside its own
//! transaction, whole.
//!
//! `DURABILITY_STRESS_MS` sets the work phase of each stress test (default
//! 4000 ms). This is a test binary of its own: one test re-runs it as a
//! child process (like `process_kill_test.rs`).

mod common;

use common::Rng;
use std::any::Any;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use durability::format::frame::frame_len;
use durability::{
    BorrowedEntry, Config, Error, Lsn, Op, RecoveryMode, RunId, Snapshot, SyncMode, Tail, Txn, Wal,
    WalEntry, WalReader,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Small tools: a seeded generator, hashing, locks, watchdogs.

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_bytes(h: u64, bytes: &[u8]) -> u64 {
    let mut h = mix(h ^ bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

/// A hash of everything an entry holds except a BeginTxn's timestamp (which
/// `append_txn` picks).
fn fingerprint(e: &BorrowedEntry<'_>) -> u64 {
    match *e {
        BorrowedEntry::BeginTxn { txn_id, run_id, .. } => {
            mix(hash_bytes(1, run_id.as_bytes()) ^ txn_id)
        }
        BorrowedEntry::Write {
            run_id,
            key,
            value,
            version,
        } => {
            let h = hash_bytes(hash_bytes(2, run_id.as_bytes()), key);
            mix(hash_bytes(h, value) ^ version)
        }
        BorrowedEntry::Delete {
            run_id,
            key,
            version,
        } => mix(hash_bytes(hash_bytes(3, run_id.as_bytes()), key) ^ version),
        BorrowedEntry::CommitTxn { txn_id, run_id } => {
            mix(hash_bytes(4, run_id.as_bytes()) ^ txn_id)
        }
        BorrowedEntry::AbortTxn { txn_id, run_id } => {
            mix(hash_bytes(5, run_id.as_bytes()) ^ txn_id)
        }
        BorrowedEntry::Checkpoint {
            snapshot_id,
            version,
            active_runs,
        } => {
            let mut h = mix(hash_bytes(6, snapshot_id.as_bytes()) ^ version);
            for r in active_runs {
                h = hash_bytes(h, r.as_bytes());
            }
            h
        }
        BorrowedEntry::Truncate { from } => mix(7 ^ from),
        BorrowedEntry::Raft { index, term, data } => mix(hash_bytes(8 ^ index, data) ^ term),
    }
}

/// An entry's contribution to a range hash: bound to its position, summed
/// (contiguity is checked separately, entry by entry).
fn at(lsn: Lsn, fp: u64) -> u64 {
    mix(fp ^ lsn.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

fn txn_hash(set: &BTreeSet<(Lsn, u8, u64)>) -> u64 {
    set.iter().fold(0u64, |h, &(begin, run, txn)| {
        h.wrapping_add(at(begin, mix((u64::from(run) << 56) ^ txn)))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".into()
    }
}

/// The work phase of each stress test.
fn work_time() -> Duration {
    let ms = std::env::var("DURABILITY_STRESS_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000u64);
    Duration::from_millis(ms)
}

/// Failed checks, collected from every thread: a test reports them all at
/// once rather than stopping at the first, grouped by kind (the same bug
/// is seen by many replays), with a count and the first examples of each.
#[derive(Default)]
struct Fails {
    /// (kind, examples, how many).
    kinds: Mutex<Vec<(String, Vec<String>, usize)>>,
    count: AtomicUsize,
}

/// Kinds of failure reported, at most, and examples of each.
const KINDS: usize = 30;
const EXAMPLES: usize = 2;
/// Failed checks after which the workers stop early.
const ENOUGH: usize = 200_000;

/// The kinds of failure, by a phrase of their message.
const FAILURE_KINDS: &[(&str, &str)] = &[
    (
        "did not commit",
        "replay delivered a write of an aborted or unfinished transaction",
    ),
    (
        "delivered as a standalone unit",
        "replay delivered a write of a committed transaction as a standalone unit",
    ),
    (
        "inside another transaction",
        "replay delivered a write inside another transaction",
    ),
    (
        "not delivered whole",
        "replay delivered part of a transaction",
    ),
    (
        "more wrongly delivered",
        "replay delivered more wrong units (see the other kinds)",
    ),
    ("not in commit order", "replay out of commit order"),
    (
        "committed transaction(s) begin and end there",
        "a replay missed (or invented) committed transactions",
    ),
    (
        "(every committed one whose",
        "a replay missed (or invented) committed transactions",
    ),
    (
        "stopped without an error",
        "Snapshot::iter() ended early without an error",
    ),
    (
        "iter() of the snapshot",
        "Snapshot::iter() returned an error",
    ),
    ("iter() of [", "Snapshot::iter() skipped or repeated bytes"),
    ("of its last entry", "Snapshot::read_at(last entry) failed"),
    ("its end is not the end", "a snapshot ends inside an entry"),
    (
        "reported a problem",
        "WalReader::open beside a live writer reported a problem",
    ),
    (
        "beside the live writer failed",
        "WalReader::open beside a live writer failed",
    ),
    (
        "before the open began",
        "WalReader missed entries published before it opened",
    ),
    ("is stuck", "a tail (or thread) got stuck"),
    ("returned an error", "a tail returned an error"),
    ("a gap or a repeat", "a tail skipped or repeated entries"),
    ("at the deadline", "a tail did not catch up by the deadline"),
    (
        "run(s) have an entry in the log",
        "runs() disagrees with the log",
    ),
    (
        "were appended there",
        "a reader saw entries other than those appended",
    ),
    (
        "not the position of an appended",
        "a reader's range is not entry-aligned",
    ),
    (
        "not the end of an appended",
        "a reader's range is not entry-aligned",
    ),
    ("panicked", "a thread panicked"),
    ("replay failed:", "a replay returned an error"),
    (": failed: ", "a replay returned an error"),
    (
        "closing must wake waiting tails",
        "a tail waiting in next_timeout was not woken by closing the log",
    ),
    (
        "must return promptly",
        "a tail returned slowly after the close",
    ),
    (
        "expected Err(Closed) or Ok(None)",
        "a tail returned something odd after the close",
    ),
    (
        "did not exit normally",
        "the child reader process did not exit normally",
    ),
    (
        "failed beside the live writer",
        "WalReader::open beside a live writer failed",
    ),
];

fn failure_kind(msg: &str) -> String {
    if let Some((_, kind)) = FAILURE_KINDS
        .iter()
        .find(|(needle, _)| msg.contains(needle))
    {
        return (*kind).to_string();
    }
    // Otherwise: the message with its numbers blanked.
    let mut sig = String::with_capacity(msg.len());
    for c in msg.chars() {
        if c.is_ascii_digit() {
            if !sig.ends_with('#') {
                sig.push('#');
            }
        } else {
            sig.push(c);
        }
    }
    sig
}

impl Fails {
    fn push(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.count.fetch_add(1, SeqCst);
        let kind = failure_kind(&msg);
        let mut kinds = lock(&self.kinds);
        if let Some(k) = kinds.iter_mut().find(|k| k.0 == kind) {
            k.2 += 1;
            if k.1.len() < EXAMPLES {
                eprintln!("FAILED CHECK: {msg}");
                k.1.push(msg);
            }
        } else if kinds.len() < KINDS {
            eprintln!("FAILED CHECK: {msg}");
            kinds.push((kind, vec![msg], 1));
        }
    }

    fn count(&self) -> usize {
        self.count.load(SeqCst)
    }

    fn first_message(&self) -> Option<String> {
        lock(&self.kinds).first().map(|k| k.1[0].clone())
    }

    fn report(&self, title: &str) -> Option<String> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let kinds = lock(&self.kinds);
        let mut out = format!("{title}: {n} failed check(s) of {} kind(s):", kinds.len());
        for (kind, examples, count) in kinds.iter() {
            out.push_str(&format!("\n  * {kind}: {count} time(s), e.g."));
            for e in examples {
                out.push_str(&format!("\n      - {e}"));
            }
        }
        let listed: usize = kinds.iter().map(|k| k.2).sum();
        if listed < n {
            out.push_str(&format!(
                "\n  * ... and {} failed check(s) of other kinds",
                n - listed
            ));
        }
        Some(out)
    }
}

/// Panics with every report that is not clean.
fn finish(reports: impl IntoIterator<Item = Option<String>>) {
    let failed: Vec<String> = reports.into_iter().flatten().collect();
    if !failed.is_empty() {
        panic!("{}", failed.join("\n\n"));
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> (String, JoinHandle<()>) {
    let h = std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .expect("spawn a test thread");
    (name, h)
}

/// Joins the threads in order; a panic is recorded as a failed check. Err
/// names a thread still running at `deadline` (it is left behind: the
/// harness exits without waiting for it).
fn join_all(
    handles: Vec<(String, JoinHandle<()>)>,
    deadline: Instant,
    fails: &Fails,
) -> Result<(), String> {
    for (name, h) in handles {
        while !h.is_finished() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "thread `{name}` is stuck: still running at the watchdog deadline"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(p) = h.join() {
            fails.push(format!("thread `{name}` panicked: {}", panic_text(&*p)));
        }
    }
    Ok(())
}

/// Runs `f` on its own thread; Err if it panicked or is still running after
/// `timeout` (then it is left behind).
fn with_watchdog<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => {
            let _ = h.join();
            Ok(v)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("still running after {timeout:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => Err(format!("panicked: {}", panic_text(&*p))),
            Ok(()) => Err("ended without a result".into()),
        },
    }
}

/// Opens the log for writing, retrying briefly while the lock looks held: a
/// child process this binary forks holds copies of our descriptors (and so
/// of lock files) until it execs.
fn open_wal(dir: &Path, config: &Config) -> durability::Result<Wal> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match Wal::open(dir, config.clone()) {
            Err(Error::Locked { .. }) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------------
// What the test writes: runs, keys that say how their transaction ends,
// values that can be checked.

/// Appended with `append_txn`: committed.
const COMMITTED: u8 = b'C';
/// Appended entry by entry (`append` of BeginTxn, Writes, CommitTxn).
const COMMITTED_BY_ENTRY: u8 = b'c';
/// Appended entry by entry and ended with AbortTxn.
const ABORTED: u8 = b'A';
/// A BeginTxn and writes that never end (replaced by the run's next
/// BeginTxn, or left open at the end).
const INCOMPLETE: u8 = b'I';
/// A Write appended alone, outside any transaction.
const STANDALONE: u8 = b'S';

fn kind_name(kind: u8) -> &'static str {
    match kind {
        COMMITTED => "committed (append_txn)",
        COMMITTED_BY_ENTRY => "committed (entry by entry)",
        ABORTED => "ABORTED",
        INCOMPLETE => "INCOMPLETE (never committed)",
        STANDALONE => "standalone",
        _ => "unknown",
    }
}

/// The run with test index `i`.
fn run_id(i: u8) -> RunId {
    let mut b = [0x5A; 16];
    b[0] = 0xC0;
    b[1] = i;
    RunId::from_bytes(b)
}

fn run_index(r: &RunId) -> Option<u8> {
    let b = r.as_bytes();
    (b[0] == 0xC0 && b[2..].iter().all(|&x| x == 0x5A)).then_some(b[1])
}

/// The key of every Write and Delete: `k/run/txn/op/nops/kind/vlen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    run: u8,
    /// Unique per appender thread (so per run), increasing.
    txn: u64,
    /// This op's position in its transaction, of `nops`.
    op: u32,
    nops: u32,
    kind: u8,
    vlen: u32,
}

impl Key {
    fn encode(&self) -> Vec<u8> {
        format!(
            "k/{}/{}/{}/{}/{}/{}",
            self.run, self.txn, self.op, self.nops, self.kind as char, self.vlen
        )
        .into_bytes()
    }

    fn parse(b: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split('/');
        if it.next()? != "k" {
            return None;
        }
        let run = it.next()?.parse().ok()?;
        let txn = it.next()?.parse().ok()?;
        let op = it.next()?.parse().ok()?;
        let nops = it.next()?.parse().ok()?;
        let kind = it.next()?.as_bytes();
        let vlen = it.next()?.parse().ok()?;
        if kind.len() != 1 || it.next().is_some() {
            return None;
        }
        Some(Key {
            run,
            txn,
            op,
            nops,
            kind: kind[0],
            vlen,
        })
    }

    /// The key bytes and the value a Write with this key carries.
    fn write(&self) -> (Vec<u8>, Vec<u8>) {
        let key = self.encode();
        let seed = hash_bytes(7, &key);
        let value = (0..self.vlen as usize)
            .map(|i| value_byte(seed, i))
            .collect();
        (key, value)
    }
}

fn value_byte(seed: u64, i: usize) -> u8 {
    (seed >> ((i % 8) * 8)) as u8 ^ ((i / 8) as u8).wrapping_mul(31)
}

/// Checks an entry read back is one this test could have written: a known
/// run, a key that parses and names that run, a value of the length and
/// pattern its key says (its ends; the hashes compare every byte).
fn check_entry(e: &BorrowedEntry<'_>) -> Result<(), String> {
    let (run, key) = match *e {
        BorrowedEntry::Write {
            run_id, key, value, ..
        } => {
            let k = Key::parse(key)
                .ok_or_else(|| format!("a Write with a key this test never wrote: {key:?}"))?;
            if value.len() != k.vlen as usize {
                return Err(format!(
                    "the Write of key {:?} has a value of {} bytes, its key says {}",
                    String::from_utf8_lossy(key),
                    value.len(),
                    k.vlen
                ));
            }
            let seed = hash_bytes(7, key);
            let n = value.len();
            for i in (0..n.min(16)).chain(n.saturating_sub(16)..n) {
                if value[i] != value_byte(seed, i) {
                    return Err(format!(
                        "the Write of key {:?} has a damaged value (byte {i} of {n})",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
            (run_id, Some(k))
        }
        BorrowedEntry::Delete { run_id, key, .. } => {
            let k = Key::parse(key)
                .ok_or_else(|| format!("a Delete with a key this test never wrote: {key:?}"))?;
            (run_id, Some(k))
        }
        BorrowedEntry::BeginTxn { run_id, .. }
        | BorrowedEntry::CommitTxn { run_id, .. }
        | BorrowedEntry::AbortTxn { run_id, .. } => (run_id, None),
        BorrowedEntry::Checkpoint { .. } => return Ok(()),
        BorrowedEntry::Truncate { .. } | BorrowedEntry::Raft { .. } => {
            return Err(format!("an entry this test never writes: {e:?}"))
        }
    };
    let Some(r) = run_index(&run) else {
        return Err(format!("an entry of a run this test never wrote: {run}"));
    };
    if let Some(k) = key {
        if k.run != r {
            return Err(format!("an entry of run {r} with a key of run {}", k.run));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The model: every entry appended, with its LSN; every committed txn.

#[derive(Clone, Copy, Debug)]
struct Rec {
    lsn: Lsn,
    len: u64,
    fp: u64,
    run: Option<u8>,
}

/// A committed transaction: where its BeginTxn is, where it ends.
#[derive(Clone, Copy, Debug)]
struct TxnRec {
    begin: Lsn,
    end: Lsn,
    run: u8,
    txn: u64,
}

#[derive(Default)]
struct Model {
    recs: Vec<Rec>,
    txns: Vec<TxnRec>,
}

impl Model {
    fn note(&mut self, lsn: Lsn, e: &BorrowedEntry<'_>) {
        self.recs.push(Rec {
            lsn,
            len: frame_len(e) as u64,
            fp: fingerprint(e),
            run: e.run_id().as_ref().and_then(run_index),
        });
    }
}

/// The merged model of a finished workload, indexed for range checks.
struct Truth {
    recs: Vec<Rec>,
    /// `prefix[i]`: the range hash of `recs[..i]`.
    prefix: Vec<u64>,
    txns: Vec<TxnRec>,
    end: Lsn,
}

impl Truth {
    /// Merges the models and checks they tile `[0, end)`: the LSNs the
    /// appends returned neither overlap nor leave gaps.
    fn new(models: Vec<Model>, end: Lsn, fails: &Fails, name: &str) -> Truth {
        let mut recs = Vec::new();
        let mut txns = Vec::new();
        for m in models {
            recs.extend(m.recs);
            txns.extend(m.txns);
        }
        recs.sort_by_key(|r| r.lsn);
        txns.sort_by_key(|t| t.begin);
        let mut next = 0;
        for r in &recs {
            if r.lsn != next {
                fails.push(format!(
                    "{name}: the model has an entry at LSN {} but the one before it ends at \
                     {next}: the LSNs the appends returned overlap or leave a gap",
                    r.lsn
                ));
                break;
            }
            next = r.lsn + r.len;
        }
        if next != end {
            fails.push(format!(
                "{name}: the appended entries end at LSN {next}, the log ends at {end}"
            ));
        }
        let mut prefix = Vec::with_capacity(recs.len() + 1);
        let mut h = 0u64;
        prefix.push(h);
        for r in &recs {
            h = h.wrapping_add(at(r.lsn, r.fp));
            prefix.push(h);
        }
        Truth {
            end: next,
            recs,
            prefix,
            txns,
        }
    }

    fn index(&self, lsn: Lsn) -> Option<usize> {
        if lsn == self.end {
            return Some(self.recs.len());
        }
        self.recs.binary_search_by_key(&lsn, |r| r.lsn).ok()
    }

    /// The entry count and range hash of `[start, end)`, which must be
    /// entry boundaries.
    fn range(&self, start: Lsn, end: Lsn) -> Result<(u64, u64), String> {
        let i = self.index(start).ok_or_else(|| {
            format!("its start, LSN {start}, is not the position of an appended entry")
        })?;
        let j = self
            .index(end)
            .ok_or_else(|| format!("its end, LSN {end}, is not the end of an appended entry"))?;
        if j < i {
            return Err(format!("its range [{start}, {end}) is reversed"));
        }
        Ok(((j - i) as u64, self.prefix[j].wrapping_sub(self.prefix[i])))
    }

    fn check_range(&self, r: &RangeRec, fails: &Fails) {
        match self.range(r.start, r.end) {
            Ok((count, hash)) if count == r.count && hash == r.hash => {}
            Ok((count, _)) => fails.push(format!(
                "{}: read {} entries in [{}, {}), but {count} were appended there{}",
                r.what,
                r.count,
                r.start,
                r.end,
                if count == r.count {
                    " and the entries differ from what was appended"
                } else {
                    ""
                }
            )),
            Err(m) => fail_range(fails, r, &m),
        }
    }

    /// The committed transactions whose BeginTxn is in `[start, end)` and
    /// which end by `end`: what a replay of that range must deliver.
    fn committed(&self, start: Lsn, end: Lsn, run: Option<u8>) -> BTreeSet<(Lsn, u8, u64)> {
        self.txns
            .iter()
            .filter(|t| t.begin >= start && t.end <= end && run.is_none_or(|r| r == t.run))
            .map(|t| (t.begin, t.run, t.txn))
            .collect()
    }

    fn check_replay(&self, r: &ReplayRec, fails: &Fails) {
        let want = self.committed(r.start, r.end, r.run);
        if want.len() as u64 != r.count || txn_hash(&want) != r.hash {
            fails.push(format!(
                "{}: delivered {} committed transaction(s) from [{}, {}), but {} committed \
                 transaction(s) begin and end there{}",
                r.what,
                r.count,
                r.start,
                r.end,
                want.len(),
                if want.len() as u64 == r.count {
                    " (not the same ones)"
                } else {
                    ""
                }
            ));
        }
    }

    /// The runs with an entry at or after `start`.
    fn runs_from(&self, start: Lsn) -> BTreeSet<u8> {
        self.recs
            .iter()
            .filter(|r| r.lsn >= start)
            .filter_map(|r| r.run)
            .collect()
    }

    fn all_runs(&self) -> BTreeSet<u8> {
        self.recs.iter().filter_map(|r| r.run).collect()
    }
}

fn fail_range(fails: &Fails, r: &RangeRec, m: &str) {
    fails.push(format!(
        "{}: read [{}, {}) ({} entries), but {m}",
        r.what, r.start, r.end, r.count
    ));
}

/// What one reader saw: `[start, end)`, `count` entries, their range hash.
struct RangeRec {
    what: String,
    start: Lsn,
    end: Lsn,
    count: u64,
    hash: u64,
}

/// What one replay delivered: `count` committed transactions of `[start,
/// end)` (of `run`, if set), their hash.
struct ReplayRec {
    what: String,
    start: Lsn,
    end: Lsn,
    run: Option<u8>,
    count: u64,
    hash: u64,
}

/// Reads a snapshot whole: every entry must come back Ok, the first at its
/// start, each where the previous ended, the last ending at its end, each
/// well-formed. Returns what it saw and the LSN of its last entry.
fn scan(snap: &Snapshot, what: &str, fails: &Fails) -> Option<(RangeRec, Option<Lsn>)> {
    let (start, end) = (snap.start_lsn(), snap.end_lsn());
    let (mut next, mut count, mut hash, mut last) = (start, 0u64, 0u64, None);
    for item in snap.iter() {
        let e = match item {
            Ok(e) => e,
            Err(err) => {
                fails.push(format!(
                    "{what}: iter() of the snapshot [{start}, {end}) failed at LSN {next} after \
                     {count} entries: {err}"
                ));
                return None;
            }
        };
        if e.lsn != next {
            fails.push(format!(
                "{what}: iter() of [{start}, {end}) yielded an entry at LSN {} where the \
                 previous one ended at {next}",
                e.lsn
            ));
            return None;
        }
        let b = e.entry.as_borrowed();
        if let Err(m) = check_entry(&b) {
            fails.push(format!("{what}: the entry at LSN {}: {m}", e.lsn));
            return None;
        }
        hash = hash.wrapping_add(at(e.lsn, fingerprint(&b)));
        count += 1;
        last = Some(e.lsn);
        next += e.len as u64;
    }
    if next != end {
        fails.push(format!(
            "{what}: iter() of the snapshot [{start}, {end}) stopped without an error at LSN \
             {next} after {count} entries: {} bytes of the snapshot were never yielded ({})",
            end.saturating_sub(next),
            seg_summary(snap)
        ));
        return None;
    }
    Some((
        RangeRec {
            what: what.to_string(),
            start,
            end,
            count,
            hash,
        },
        last,
    ))
}

fn seg_summary(snap: &Snapshot) -> String {
    let seqs: Vec<u64> = snap.segment_seqs().collect();
    match (seqs.first(), seqs.last()) {
        (Some(a), Some(b)) => format!("{} segment(s), {a}..={b}", seqs.len()),
        _ => "no segments".into(),
    }
}

/// Judges every transaction a replay delivers, and collects the committed
/// ones.
struct ReplayCheck {
    what: String,
    want_run: Option<u8>,
    delivered: BTreeSet<(Lsn, u8, u64)>,
    last_commit: Option<Lsn>,
    errors: Vec<String>,
    more_errors: usize,
}

impl ReplayCheck {
    fn new(what: String, want_run: Option<u8>) -> Self {
        ReplayCheck {
            what,
            want_run,
            delivered: BTreeSet::new(),
            last_commit: None,
            errors: Vec::new(),
            more_errors: 0,
        }
    }

    fn on_txn(&mut self, t: &Txn<'_, '_>) {
        if let Err(m) = self.judge(t) {
            if self.errors.len() < 4 {
                self.errors.push(m);
            } else {
                self.more_errors += 1;
            }
        }
    }

    fn judge(&mut self, t: &Txn<'_, '_>) -> Result<(), String> {
        let run = run_index(&t.run_id)
            .ok_or_else(|| format!("delivered a transaction of unknown run {}", t.run_id))?;
        let desc = || {
            format!(
                "the unit delivered with txn_id {:?} of run {run} (begin LSN {}, commit LSN \
                 {}, {} op(s))",
                t.txn_id,
                t.begin_lsn,
                t.commit_lsn,
                t.ops.len()
            )
        };
        if let Some(w) = self.want_run {
            if run != w {
                return Err(format!("replay_run of run {w} delivered {}", desc()));
            }
        }
        if let Some(prev) = self.last_commit {
            if t.commit_lsn <= prev {
                return Err(format!(
                    "{} came after a unit committed at LSN {prev}: not in commit order",
                    desc()
                ));
            }
        }
        self.last_commit = Some(t.commit_lsn);
        if t.txn_id.is_some() && t.ops.is_empty() {
            return Err(format!(
                "{}: every transaction this test appends has at least one op",
                desc()
            ));
        }
        for (i, op) in t.ops.iter().enumerate() {
            let b = op.entry.as_borrowed();
            check_entry(&b).map_err(|m| format!("{}: op {i} at LSN {}: {m}", desc(), op.lsn))?;
            let key = op.entry.key().ok_or_else(|| {
                format!(
                    "{}: op {i} at LSN {} is a {}, not a Write or Delete",
                    desc(),
                    op.lsn,
                    op.entry.kind()
                )
            })?;
            let k = Key::parse(key).expect("check_entry parsed it");
            let what = format!(
                "op {i} at LSN {} is op {} of {} of {} transaction {} of run {}",
                op.lsn,
                k.op,
                k.nops,
                kind_name(k.kind),
                k.txn,
                k.run
            );
            match k.kind {
                COMMITTED | COMMITTED_BY_ENTRY => {
                    if t.txn_id != Some(k.txn) {
                        return Err(format!(
                            "{}: {what}, delivered {}",
                            desc(),
                            if t.txn_id.is_none() {
                                "as a standalone unit (txn_id None): a committed transaction \
                                 must be delivered with its own txn_id, or not at all"
                            } else {
                                "inside another transaction"
                            }
                        ));
                    }
                    if k.op as usize != i || k.nops as usize != t.ops.len() {
                        return Err(format!(
                            "{}: {what}: the transaction is not delivered whole and in order",
                            desc()
                        ));
                    }
                }
                STANDALONE => {
                    if t.txn_id.is_some() || t.ops.len() != 1 {
                        return Err(format!(
                            "{}: {what}, which was appended alone, outside any transaction",
                            desc()
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{}: {what}: replay must never deliver a write of a transaction that \
                         did not commit",
                        desc()
                    ));
                }
            }
        }
        if let Some(id) = t.txn_id {
            self.delivered.insert((t.begin_lsn, run, id));
        }
        Ok(())
    }

    /// Moves the errors to `fails`; true if there were none.
    fn flush(&mut self, fails: &Fails) -> bool {
        let clean = self.errors.is_empty();
        for e in self.errors.drain(..) {
            fails.push(format!("{}: {e}", self.what));
        }
        if self.more_errors > 0 {
            fails.push(format!(
                "{}: ... and {} more wrongly delivered unit(s)",
                self.what, self.more_errors
            ));
            self.more_errors = 0;
        }
        clean
    }

    fn record(&self, start: Lsn, end: Lsn) -> ReplayRec {
        ReplayRec {
            what: self.what.clone(),
            start,
            end,
            run: self.want_run,
            count: self.delivered.len() as u64,
            hash: txn_hash(&self.delivered),
        }
    }

    /// Checks the committed transactions delivered are exactly `want`.
    fn expect(&self, want: &BTreeSet<(Lsn, u8, u64)>, fails: &Fails) {
        if &self.delivered == want {
            return;
        }
        let missing: Vec<_> = want.difference(&self.delivered).take(4).collect();
        let extra: Vec<_> = self.delivered.difference(want).take(4).collect();
        fails.push(format!(
            "{}: delivered {} committed transaction(s), expected {} (every committed one whose \
             BeginTxn is still in the log); missing {} e.g. {missing:?}, unexpected {} e.g. \
             {extra:?} (as (begin LSN, run, txn id))",
            self.what,
            self.delivered.len(),
            want.len(),
            want.difference(&self.delivered).count(),
            self.delivered.difference(want).count(),
        ));
    }
}

/// Replays a whole snapshot with the checks; None if it failed.
fn replay_snapshot(snap: &Snapshot, what: String, fails: &Fails) -> Option<ReplayCheck> {
    let mut rc = ReplayCheck::new(what, None);
    if let Err(e) = snap.replay(|t| rc.on_txn(t)) {
        fails.push(format!("{}: replay failed: {e}", rc.what));
        return None;
    }
    rc.flush(fails);
    Some(rc)
}

// ---------------------------------------------------------------------------
// The stress workload (scenarios 1-3).

#[derive(Clone)]
struct Stress {
    name: &'static str,
    seed: u64,
    segment_size: u64,
    sync_mode: SyncMode,
    appenders: usize,
    /// Appender actions, per thread, at most.
    max_actions: u64,
    /// Values are `0..max_value` bytes.
    max_value: u64,
    snapshotters: usize,
    replayers: usize,
    readers: bool,
    tails: bool,
    /// Checkpoint and `purge_to_checkpoint` this often.
    retention: Option<Duration>,
    /// Compare `runs()` of the live log, a reader and a reopen at the end.
    check_runs: bool,
    /// Also append transactions entry by entry (aborted, committed,
    /// abandoned). They keep transactions open across rotations, where the
    /// log may refuse to cut.
    entry_txns: bool,
}

impl Stress {
    fn new(name: &'static str, seed: u64, segment_size: u64) -> Self {
        Stress {
            name,
            seed,
            segment_size,
            sync_mode: SyncMode::default(),
            appenders: 2,
            max_actions: 4000,
            max_value: 3000,
            snapshotters: 1,
            replayers: 1,
            readers: true,
            tails: true,
            retention: Some(Duration::from_millis(25)),
            check_runs: false,
            entry_txns: true,
        }
    }

    /// The test index of the run in `slot` of appender `t` after `gen`
    /// retirements; None once the indices run out.
    fn run_slot(&self, t: usize, slot: usize, gen: usize) -> Option<u8> {
        let i = (gen * 2 + slot) * self.appenders + t;
        (i < 240).then_some(i as u8)
    }
}

struct Ctx {
    p: Stress,
    wal: Arc<Wal>,
    dir: PathBuf,
    config: Config,
    fails: Arc<Fails>,
    work_end: Instant,
    appenders_left: AtomicUsize,
    /// The end of the log once every writer has stopped; MAX before.
    final_end: AtomicU64,
    /// Where each tail is (MAX: no tail there yet); retention never cuts
    /// past the slowest.
    tail_pos: [AtomicU64; 2],
    /// Held while registering a tail and while truncating.
    tail_reg: Mutex<()>,
    models: Mutex<Vec<Model>>,
    ranges: Mutex<Vec<RangeRec>>,
    replays: Mutex<Vec<ReplayRec>>,
    actions: AtomicU64,
    snapshots: AtomicU64,
    reader_opens: AtomicU64,
    replay_calls: AtomicU64,
    tailed: AtomicU64,
    checkpoints: AtomicU64,
    truncated: AtomicU64,
    truncate_skipped: AtomicU64,
}

const MAX_RECORDS: usize = 4000;

impl Ctx {
    fn writers_running(&self) -> bool {
        self.appenders_left.load(SeqCst) > 0
    }

    fn min_tail(&self) -> Lsn {
        self.tail_pos
            .iter()
            .map(|p| p.load(SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn keep_range(&self, r: RangeRec) {
        let mut v = lock(&self.ranges);
        if v.len() < MAX_RECORDS {
            v.push(r);
        }
    }

    fn keep_replay(&self, r: ReplayRec) {
        let mut v = lock(&self.replays);
        if v.len() < MAX_RECORDS {
            v.push(r);
        }
    }
}

/// Decrements a counter when dropped, even by a panic.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// One appender thread's state.
struct Appender<'a> {
    ctx: &'a Ctx,
    rng: Rng,
    model: Model,
    txn: u64,
}

impl Appender<'_> {
    fn fail(&self, msg: String) {
        self.ctx.fails.push(format!(
            "{} (seed {:#x}): {msg}",
            self.ctx.p.name, self.ctx.p.seed
        ));
    }

    /// Appends one entry with `append`.
    fn put(&mut self, e: &WalEntry) -> Option<Lsn> {
        match self.ctx.wal.append(e).map(|p| p.lsn) {
            Ok(lsn) => {
                self.model.note(lsn, &e.as_borrowed());
                Some(lsn)
            }
            Err(err) => {
                self.fail(format!("append of a {} failed: {err}", e.kind()));
                None
            }
        }
    }

    fn value_len(&mut self) -> u32 {
        self.rng.below(self.ctx.p.max_value) as u32
    }

    /// A transaction of `nops` ops appended with `append_txn`.
    fn unit(&mut self, run: u8, nops: u32, deletes: bool) -> bool {
        self.txn += 1;
        let id = self.txn;
        let mut kv = Vec::new();
        for op in 0..nops {
            let delete = deletes && self.rng.below(3) == 0;
            let vlen = if delete { 0 } else { self.value_len() };
            let key = Key {
                run,
                txn: id,
                op,
                nops,
                kind: COMMITTED,
                vlen,
            };
            let (k, v) = key.write();
            kv.push((k, v, delete));
        }
        let ops: Vec<Op<'_>> = kv
            .iter()
            .enumerate()
            .map(|(i, (key, value, delete))| {
                if *delete {
                    Op::Delete {
                        key,
                        version: i as u64,
                    }
                } else {
                    Op::Write {
                        key,
                        value,
                        version: i as u64,
                    }
                }
            })
            .collect();
        let rid = run_id(run);
        let pos = match self.ctx.wal.append_txn(rid, id, &ops) {
            Ok(pos) => pos,
            Err(e) => {
                self.fail(format!("append_txn of txn {id} of run {run} failed: {e}"));
                return false;
            }
        };
        let begin = BorrowedEntry::BeginTxn {
            txn_id: id,
            run_id: rid,
            timestamp: 0,
        };
        self.model.note(pos.begin, &begin);
        let mut lsn = pos.begin + frame_len(&begin) as u64;
        for op in &ops {
            let e = op.entry(rid);
            self.model.note(lsn, &e);
            lsn += frame_len(&e) as u64;
        }
        let commit = BorrowedEntry::CommitTxn {
            txn_id: id,
            run_id: rid,
        };
        if lsn != pos.commit || pos.commit + frame_len(&commit) as u64 != pos.end {
            self.fail(format!(
                "append_txn of txn {id} returned {pos:?}, but its frames put the CommitTxn at \
                 {lsn}"
            ));
            return false;
        }
        self.model.note(pos.commit, &commit);
        self.model.txns.push(TxnRec {
            begin: pos.begin,
            end: pos.end,
            run,
            txn: id,
        });
        true
    }

    /// A Write alone, outside any transaction.
    fn standalone(&mut self, run: u8) -> bool {
        self.txn += 1;
        let vlen = self.value_len();
        let (key, value) = Key {
            run,
            txn: self.txn,
            op: 0,
            nops: 1,
            kind: STANDALONE,
            vlen,
        }
        .write();
        self.put(&WalEntry::Write {
            run_id: run_id(run),
            key,
            value,
            version: self.txn,
        })
        .is_some()
    }

    /// A transaction appended entry by entry with `append`, ending as
    /// `kind` says (INCOMPLETE: not at all). Other threads' entries, and
    /// rotations, fall between its entries.
    fn by_entries(&mut self, run: u8, kind: u8, nops: u32, vmin: u64, vmax: u64) -> bool {
        self.txn += 1;
        let id = self.txn;
        let rid = run_id(run);
        let Some(begin) = self.put(&WalEntry::BeginTxn {
            txn_id: id,
            run_id: rid,
            timestamp: id,
        }) else {
            return false;
        };
        for op in 0..nops {
            std::thread::yield_now();
            let vlen = self.rng.range(vmin, vmax) as u32;
            let (key, value) = Key {
                run,
                txn: id,
                op,
                nops,
                kind,
                vlen,
            }
            .write();
            let write = WalEntry::Write {
                run_id: rid,
                key,
                value,
                version: u64::from(op),
            };
            if self.put(&write).is_none() {
                return false;
            }
        }
        std::thread::yield_now();
        match kind {
            ABORTED => self
                .put(&WalEntry::AbortTxn {
                    txn_id: id,
                    run_id: rid,
                })
                .is_some(),
            COMMITTED_BY_ENTRY => {
                let commit = WalEntry::CommitTxn {
                    txn_id: id,
                    run_id: rid,
                };
                let Some(lsn) = self.put(&commit) else {
                    return false;
                };
                self.model.txns.push(TxnRec {
                    begin,
                    end: lsn + frame_len(&commit.as_borrowed()) as u64,
                    run,
                    txn: id,
                });
                true
            }
            _ => true,
        }
    }
}

fn appender(ctx: &Ctx, t: usize) {
    let _leave = Leave(&ctx.appenders_left);
    let p = &ctx.p;
    let mut a = Appender {
        ctx,
        rng: Rng::new(p.seed ^ (0xA99E_0000 + t as u64)),
        model: Model::default(),
        txn: 0,
    };
    let mut gens = [0usize; 2];
    let mut runs = [
        p.run_slot(t, 0, 0).expect("a first run"),
        p.run_slot(t, 1, 0).expect("a first run"),
    ];
    let mut ok = true;
    for _ in 0..p.max_actions {
        if Instant::now() >= ctx.work_end || ctx.fails.count() >= ENOUGH {
            break;
        }
        ctx.actions.fetch_add(1, SeqCst);
        let slot = a.rng.below(2) as usize;
        let run = runs[slot];
        let nops = 1 + a.rng.below(4) as u32;
        let mut pick = a.rng.below(100);
        if !p.entry_txns && pick >= 67 {
            pick = 0;
        }
        ok = match pick {
            0..=47 => a.unit(run, nops, false),
            48..=54 => a.unit(run, nops, true),
            55..=66 => a.standalone(run),
            // Large writes, so that these span rotations of small segments.
            67..=81 => a.by_entries(run, ABORTED, 1 + nops % 3, 1500, 3000),
            82..=91 => a.by_entries(run, COMMITTED_BY_ENTRY, 1 + nops % 3, 0, p.max_value),
            // Abandoned: the run's next BeginTxn (at once) replaces it.
            _ => a.by_entries(run, INCOMPLETE, 1 + nops % 2, 1000, 3000) && a.unit(run, 1, false),
        };
        if !ok {
            break;
        }
        if a.rng.below(40) == 0 {
            gens[slot] += 1;
            if let Some(r) = p.run_slot(t, slot, gens[slot]) {
                runs[slot] = r;
            }
        }
    }
    // Leave a transaction of each live run open for good.
    if ok && p.entry_txns {
        for run in runs {
            if !a.by_entries(run, INCOMPLETE, 1, 0, p.max_value) {
                break;
            }
        }
    }
    let model = std::mem::take(&mut a.model);
    lock(&ctx.models).push(model);
}

fn retention(ctx: &Ctx, period: Duration) {
    let p = &ctx.p;
    let mut rng = Rng::new(p.seed ^ 0x7E7E);
    let mut model = Model::default();
    let max_run = p.run_slot(p.appenders - 1, 1, 0).unwrap_or(0) as u64 + 1;
    for i in 1..=20_000u64 {
        if !ctx.writers_running() {
            break;
        }
        std::thread::sleep(period);
        let active: Vec<RunId> = if rng.below(10) < 7 {
            Vec::new()
        } else {
            vec![run_id(rng.below(max_run * 3) as u8)]
        };
        let snapshot_id = Uuid::from_u128((u128::from(p.seed) << 64) | u128::from(i));
        let cp = match ctx.wal.checkpoint(snapshot_id, i, &active).map(|p| p.lsn) {
            Ok(lsn) => lsn,
            Err(e) => {
                ctx.fails.push(format!(
                    "{} (seed {:#x}): checkpoint failed: {e}",
                    p.name, p.seed
                ));
                break;
            }
        };
        model.note(
            cp,
            &BorrowedEntry::Checkpoint {
                snapshot_id,
                version: i,
                active_runs: &active,
            },
        );
        ctx.checkpoints.fetch_add(1, SeqCst);
        // Cut only what every tail has read (a tail behind the start of
        // the log could not go on).
        let give_up = Instant::now() + Duration::from_millis(300);
        loop {
            let reg = lock(&ctx.tail_reg);
            if ctx.min_tail() >= cp {
                match ctx.wal.purge_to_checkpoint(cp) {
                    Ok(n) => {
                        ctx.truncated.fetch_add(n as u64, SeqCst);
                    }
                    Err(e) => ctx.fails.push(format!(
                        "{} (seed {:#x}): purge_to_checkpoint({cp}) failed: {e}",
                        p.name, p.seed
                    )),
                }
                break;
            }
            drop(reg);
            if Instant::now() >= give_up {
                ctx.truncate_skipped.fetch_add(1, SeqCst);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    lock(&ctx.models).push(model);
}

fn snapshotter(ctx: &Ctx, s: usize) {
    let p = &ctx.p;
    for i in 1..=100_000u64 {
        if !ctx.writers_running() || ctx.fails.count() >= ENOUGH {
            break;
        }
        let snap = ctx.wal.snapshot();
        ctx.snapshots.fetch_add(1, SeqCst);
        let (start, end) = (snap.start_lsn(), snap.end_lsn());
        let what = format!(
            "{} (seed {:#x}): snapshot {s}/{i} [{start}, {end})",
            p.name, p.seed
        );
        if let Some((rec, last)) = scan(&snap, &what, &ctx.fails) {
            ctx.keep_range(rec);
            if let Some(last) = last {
                match snap.read_at(last) {
                    Ok(e) if e.lsn == last && last + e.len as u64 == end => {}
                    Ok(e) => ctx.fails.push(format!(
                        "{what}: read_at({last}) of its last entry returned the entry at LSN {} \
                         of {} bytes",
                        e.lsn, e.len
                    )),
                    Err(e) => ctx.fails.push(format!(
                        "{what}: read_at({last}) of its last entry failed: {e} ({})",
                        seg_summary(&snap)
                    )),
                }
            }
        }
        if i % 3 == 0 {
            if let Some(rc) =
                replay_snapshot(&snap, format!("{what}: Snapshot::replay"), &ctx.fails)
            {
                ctx.keep_replay(rc.record(start, end));
            }
        }
    }
}

fn reader(ctx: &Ctx) {
    let p = &ctx.p;
    for i in 1..=40u64 {
        if !ctx.writers_running() || ctx.fails.count() >= ENOUGH {
            break;
        }
        let mode = if i % 2 == 0 {
            RecoveryMode::AbsoluteConsistency
        } else {
            RecoveryMode::PointInTime
        };
        let what = format!(
            "{} (seed {:#x}): WalReader::open #{i} ({mode:?}) beside the live writer",
            p.name, p.seed
        );
        let published = ctx.wal.end_lsn();
        let r = match WalReader::open(&ctx.dir, ctx.config.clone().recovery_mode(mode)) {
            Ok(r) => r,
            Err(e) => {
                ctx.fails.push(format!("{what} failed: {e}"));
                continue;
            }
        };
        ctx.reader_opens.fetch_add(1, SeqCst);
        if let Some(problem) = &r.recovery_report().problem {
            ctx.fails.push(format!(
                "{what} reported a problem, but the log is healthy: {problem}"
            ));
        }
        let snap = r.snapshot();
        if snap.end_lsn() < published {
            ctx.fails.push(format!(
                "{what} sees the log up to LSN {}, but it was published up to {published} \
                 before the open began",
                snap.end_lsn()
            ));
        }
        if let Some((rec, _)) = scan(snap, &what, &ctx.fails) {
            ctx.keep_range(rec);
        }
        if i % 2 == 1 {
            let rw = format!("{what}: replay");
            if let Some(rc) = replay_snapshot(snap, rw, &ctx.fails) {
                ctx.keep_replay(rc.record(snap.start_lsn(), snap.end_lsn()));
            }
        }
    }
}

fn replayer(ctx: &Ctx, n: usize) {
    let p = &ctx.p;
    let mut rng = Rng::new(p.seed ^ (0x5E9_1A7 + n as u64));
    let max_run = p.run_slot(p.appenders - 1, 1, 0).unwrap_or(0) as u64 + 1;
    for i in 1..=10_000u64 {
        if !ctx.writers_running() || ctx.fails.count() >= ENOUGH {
            break;
        }
        let mut rc = ReplayCheck::new(
            format!("{} (seed {:#x}): wal.replay #{i}", p.name, p.seed),
            None,
        );
        if let Err(e) = ctx.wal.replay(|t| rc.on_txn(t)) {
            ctx.fails.push(format!("{}: failed: {e}", rc.what));
        }
        rc.flush(&ctx.fails);
        // Runs retire as the appenders go: pick among the early ones too.
        let run = rng.below(max_run * 4) as u8;
        let mut rc = ReplayCheck::new(
            format!(
                "{} (seed {:#x}): wal.replay_run(run {run}) #{i}",
                p.name, p.seed
            ),
            Some(run),
        );
        if let Err(e) = ctx.wal.replay_run(run_id(run), |t| rc.on_txn(t)) {
            ctx.fails.push(format!("{}: failed: {e}", rc.what));
        }
        rc.flush(&ctx.fails);
        ctx.replay_calls.fetch_add(2, SeqCst);
    }
}

/// Follows the log from where `tail` is (or, if None, from its end after
/// `delay`) until the writers have stopped and it has read everything.
fn tailer(ctx: &Ctx, slot: usize, tail: Option<Tail>, delay: Duration) {
    let p = &ctx.p;
    let what = format!("{} (seed {:#x}): tail {slot}", p.name, p.seed);
    let mut tail = match tail {
        Some(t) => t,
        None => {
            std::thread::sleep(delay);
            let _reg = lock(&ctx.tail_reg);
            let from = ctx.wal.end_lsn();
            ctx.tail_pos[slot].store(from, SeqCst);
            ctx.wal.tail(from)
        }
    };
    let mut rng = Rng::new(p.seed ^ (0x7A11 + slot as u64));
    let start = tail.position();
    let (mut next, mut count, mut hash) = (start, 0u64, 0u64);
    let mut progress = Instant::now();
    let give_up = ctx.work_end + Duration::from_secs(40);
    let mut clean = true;
    for _ in 0..20_000_000u64 {
        let end = ctx.final_end.load(SeqCst);
        if end != u64::MAX && next >= end {
            break;
        }
        if Instant::now() >= give_up {
            ctx.fails.push(format!(
                "{what}: at LSN {next} at the deadline; the log ends at {}",
                ctx.wal.end_lsn()
            ));
            clean = false;
            break;
        }
        let polled = rng.below(3) == 0;
        let r = if polled {
            tail.poll()
        } else {
            tail.next_timeout(Duration::from_millis(20))
        };
        match r {
            Ok(Some((lsn, e))) => {
                let b = e.as_borrowed();
                let len = frame_len(&b) as u64;
                let bad = if lsn != next {
                    Some(format!(
                        "delivered the entry at LSN {lsn}, but the next one is at {next} (a gap \
                         or a repeat)"
                    ))
                } else if tail.position() != lsn + len {
                    Some(format!(
                        "after delivering the entry at LSN {lsn} ({len} bytes) its position is {}",
                        tail.position()
                    ))
                } else {
                    check_entry(&b)
                        .err()
                        .map(|m| format!("the entry at LSN {lsn}: {m}"))
                };
                if let Some(m) = bad {
                    ctx.fails.push(format!("{what}: {m}"));
                    clean = false;
                    break;
                }
                hash = hash.wrapping_add(at(lsn, fingerprint(&b)));
                count += 1;
                next = lsn + len;
                ctx.tail_pos[slot].store(next, SeqCst);
                ctx.tailed.fetch_add(1, SeqCst);
                progress = Instant::now();
            }
            Ok(None) => {
                if polled {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let end = ctx.wal.end_lsn();
                if end > next && progress.elapsed() > Duration::from_secs(10) {
                    ctx.fails.push(format!(
                        "{what} is stuck: no entry for 10 s at LSN {next} while the log ends at \
                         {end}"
                    ));
                    clean = false;
                    break;
                }
            }
            Err(e) => {
                ctx.fails.push(format!(
                    "{what} ({}) at LSN {next} returned an error: {e}",
                    if polled { "poll" } else { "next_timeout" }
                ));
                clean = false;
                break;
            }
        }
    }
    // Stop holding retention back.
    ctx.tail_pos[slot].store(u64::MAX, SeqCst);
    if clean {
        ctx.keep_range(RangeRec {
            what: format!("{what} (everything from its start to the end)"),
            start,
            end: next,
            count,
            hash,
        });
    }
}

/// Runs the workload, then checks everything against the model; Some names
/// what failed.
fn run_stress(p: Stress) -> Option<String> {
    let t0 = Instant::now();
    let title = format!("{} (seed {:#x})", p.name, p.seed);
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default()
        .segment_size(p.segment_size)
        .sync_mode(p.sync_mode);
    let wal = Arc::new(Wal::open(dir.path(), config.clone()).unwrap());
    let fails = Arc::new(Fails::default());
    let work = work_time();
    let tail0 = p.tails.then(|| wal.tail(0));
    let ctx = Arc::new(Ctx {
        wal,
        dir: dir.path().to_path_buf(),
        config: config.clone(),
        fails: Arc::clone(&fails),
        work_end: t0 + work,
        appenders_left: AtomicUsize::new(p.appenders),
        final_end: AtomicU64::new(u64::MAX),
        tail_pos: [
            AtomicU64::new(if p.tails { 0 } else { u64::MAX }),
            AtomicU64::new(u64::MAX),
        ],
        tail_reg: Mutex::new(()),
        models: Mutex::new(Vec::new()),
        ranges: Mutex::new(Vec::new()),
        replays: Mutex::new(Vec::new()),
        actions: AtomicU64::new(0),
        snapshots: AtomicU64::new(0),
        reader_opens: AtomicU64::new(0),
        replay_calls: AtomicU64::new(0),
        tailed: AtomicU64::new(0),
        checkpoints: AtomicU64::new(0),
        truncated: AtomicU64::new(0),
        truncate_skipped: AtomicU64::new(0),
        p: p.clone(),
    });
    let mut writers = Vec::new();
    let mut others = Vec::new();
    for t in 0..p.appenders {
        let c = Arc::clone(&ctx);
        writers.push(spawn(format!("{}-append-{t}", p.name), move || {
            appender(&c, t)
        }));
    }
    if let Some(period) = p.retention {
        let c = Arc::clone(&ctx);
        writers.push(spawn(format!("{}-retention", p.name), move || {
            retention(&c, period)
        }));
    }
    for s in 0..p.snapshotters {
        let c = Arc::clone(&ctx);
        others.push(spawn(format!("{}-snapshot-{s}", p.name), move || {
            snapshotter(&c, s)
        }));
    }
    if p.readers {
        let c = Arc::clone(&ctx);
        others.push(spawn(format!("{}-reader", p.name), move || reader(&c)));
    }
    for n in 0..p.replayers {
        let c = Arc::clone(&ctx);
        others.push(spawn(format!("{}-replay-{n}", p.name), move || {
            replayer(&c, n)
        }));
    }
    if let Some(t) = tail0 {
        let c = Arc::clone(&ctx);
        others.push(spawn(format!("{}-tail-0", p.name), move || {
            tailer(&c, 0, Some(t), Duration::ZERO)
        }));
        let c = Arc::clone(&ctx);
        others.push(spawn(format!("{}-tail-1", p.name), move || {
            tailer(&c, 1, None, work / 3)
        }));
    }
    let watchdog = t0 + work + Duration::from_secs(50);
    let stuck = join_all(writers, watchdog, &fails)
        .and_then(|()| {
            ctx.final_end.store(ctx.wal.end_lsn(), SeqCst);
            join_all(others, watchdog, &fails)
        })
        .err();
    if let Some(stuck) = stuck {
        fails.push(stuck);
        return fails.report(&title);
    }
    let ctx = match Arc::try_unwrap(ctx) {
        Ok(c) => c,
        Err(_) => panic!("{title}: the context is still shared after every thread ended"),
    };
    let summary = format!(
        "{title}: {} actions, {} checkpoints, {} segment(s) truncated ({} cuts skipped for a \
         lagging tail), {} snapshots, {} reader opens, {} replays, {} entries tailed",
        ctx.actions.load(SeqCst),
        ctx.checkpoints.load(SeqCst),
        ctx.truncated.load(SeqCst),
        ctx.truncate_skipped.load(SeqCst),
        ctx.snapshots.load(SeqCst),
        ctx.reader_opens.load(SeqCst),
        ctx.replay_calls.load(SeqCst),
        ctx.tailed.load(SeqCst),
    );
    let wal = match Arc::try_unwrap(ctx.wal) {
        Ok(w) => w,
        Err(_) => panic!("{title}: the log is still shared after every thread ended"),
    };
    let models = std::mem::take(&mut *lock(&ctx.models));
    let ranges = std::mem::take(&mut *lock(&ctx.ranges));
    let replays = std::mem::take(&mut *lock(&ctx.replays));
    final_checks(
        &p,
        &title,
        wal,
        dir.path(),
        &config,
        models,
        &ranges,
        &replays,
        &fails,
    );
    eprintln!("{summary}; done in {:.1?}", t0.elapsed());
    fails.report(&title)
}

/// The checks once every thread has stopped: what each reader saw, then the
/// quiet log, a reader of it, and a reopen.
#[allow(clippy::too_many_arguments)]
fn final_checks(
    p: &Stress,
    title: &str,
    wal: Wal,
    dir: &Path,
    config: &Config,
    models: Vec<Model>,
    ranges: &[RangeRec],
    replays: &[ReplayRec],
    fails: &Fails,
) {
    let (start, end) = (wal.start_lsn(), wal.end_lsn());
    let truth = Truth::new(models, end, fails, title);
    for r in ranges {
        truth.check_range(r, fails);
    }
    for r in replays {
        truth.check_replay(r, fails);
    }
    let stats = wal.stats();
    eprintln!(
        "{title}: {} entries, {} committed txns, LSN {start}..{end} ({:.1} MB kept), {} \
         segment(s) left; {} ranges and {} replays checked",
        truth.recs.len(),
        truth.txns.len(),
        (end - start) as f64 / 1e6,
        stats.segments,
        ranges.len(),
        replays.len()
    );

    // The live log, quiet.
    let snap = wal.snapshot();
    if let Some((rec, _)) = scan(&snap, &format!("{title}: the final snapshot"), fails) {
        if rec.start != start || rec.end != end {
            fails.push(format!(
                "{title}: the final snapshot covers [{}, {}), the log [{start}, {end})",
                rec.start, rec.end
            ));
        }
        truth.check_range(&rec, fails);
    }
    drop(snap);
    let want = truth.committed(start, end, None);
    let mut rc = ReplayCheck::new(format!("{title}: the final wal.replay"), None);
    match wal.replay(|t| rc.on_txn(t)) {
        Ok(_) => {
            if rc.flush(fails) {
                rc.expect(&want, fails);
            }
        }
        Err(e) => fails.push(format!("{}: failed: {e}", rc.what)),
    }
    for run in truth.all_runs() {
        let mut rc = ReplayCheck::new(
            format!("{title}: the final wal.replay_run(run {run})"),
            Some(run),
        );
        match wal.replay_run(run_id(run), |t| rc.on_txn(t)) {
            Ok(_) => {
                if rc.flush(fails) {
                    rc.expect(&truth.committed(start, end, Some(run)), fails);
                }
            }
            Err(e) => fails.push(format!("{}: failed: {e}", rc.what)),
        }
    }
    let want_runs = truth.runs_from(start);
    let live_runs = run_set(&wal.runs());

    // A reader of the quiet log.
    let strict = config
        .clone()
        .recovery_mode(RecoveryMode::AbsoluteConsistency);
    match WalReader::open(dir, &strict) {
        Err(e) => fails.push(format!(
            "{title}: WalReader::open of the quiet log failed: {e}"
        )),
        Ok(r) => {
            if let Some(problem) = &r.recovery_report().problem {
                fails.push(format!(
                    "{title}: WalReader::open of the quiet log found a problem: {problem}"
                ));
            }
            let snap = r.snapshot();
            let what = format!("{title}: the reader of the quiet log");
            if let Some((rec, _)) = scan(snap, &what, fails) {
                if rec.start != start || rec.end != end {
                    fails.push(format!(
                        "{what} covers [{}, {}), the log [{start}, {end})",
                        rec.start, rec.end
                    ));
                }
                truth.check_range(&rec, fails);
            }
            if let Some(rc) = replay_snapshot(snap, format!("{what}: replay"), fails) {
                rc.expect(&want, fails);
            }
            if p.check_runs {
                compare_runs(
                    title,
                    &want_runs,
                    &[
                        ("wal.runs()", live_runs.clone()),
                        ("WalReader::open(..).runs()", run_set(&r.runs())),
                    ],
                    fails,
                );
            }
        }
    }

    // Close and reopen.
    if let Err(e) = wal.close() {
        fails.push(format!("{title}: close failed: {e}"));
        return;
    }
    match open_wal(dir, &strict) {
        Err(e) => fails.push(format!(
            "{title}: reopening the log (AbsoluteConsistency) failed: {e}"
        )),
        Ok(w) => {
            if let Some(problem) = &w.recovery_report().problem {
                fails.push(format!(
                    "{title}: reopening the log found a problem: {problem}"
                ));
            }
            if (w.start_lsn(), w.end_lsn()) != (start, end) {
                fails.push(format!(
                    "{title}: the reopened log covers [{}, {}), before closing [{start}, {end})",
                    w.start_lsn(),
                    w.end_lsn()
                ));
            }
            let what = format!("{title}: the reopened log");
            if let Some((rec, _)) = scan(&w.snapshot(), &what, fails) {
                truth.check_range(&rec, fails);
            }
            let mut rc = ReplayCheck::new(format!("{what}: replay"), None);
            match w.replay(|t| rc.on_txn(t)) {
                Ok(_) => {
                    if rc.flush(fails) {
                        rc.expect(&want, fails);
                    }
                }
                Err(e) => fails.push(format!("{}: failed: {e}", rc.what)),
            }
            if p.check_runs {
                compare_runs(
                    title,
                    &want_runs,
                    &[
                        ("wal.runs() before closing", live_runs),
                        ("Wal::open(..).runs() after reopening", run_set(&w.runs())),
                    ],
                    fails,
                );
            }
            if let Err(e) = w.close() {
                fails.push(format!("{title}: closing the reopened log failed: {e}"));
            }
        }
    }
}

fn run_set(runs: &[RunId]) -> BTreeSet<u8> {
    runs.iter().map(|r| run_index(r).unwrap_or(255)).collect()
}

/// Checks every named set of runs is `want` (the runs with an entry in the
/// log, by the model).
fn compare_runs(title: &str, want: &BTreeSet<u8>, got: &[(&str, BTreeSet<u8>)], fails: &Fails) {
    for (name, set) in got {
        if set != want {
            let extra: Vec<_> = set.difference(want).take(20).collect();
            let missing: Vec<_> = want.difference(set).take(20).collect();
            fails.push(format!(
                "{title}: {name} lists {} run(s), but {} run(s) have an entry in the log: it \
                 lists runs with no entry left {extra:?} and misses runs {missing:?} (test run \
                 indices, at most 20 of each)",
                set.len(),
                want.len()
            ));
        }
    }
}

// Scenario 1: appenders with everything else running at once, at several
// segment sizes and sync modes.

#[test]
fn stress_8k_segments_batched() {
    finish([run_stress(Stress::new(
        "stress-8k-batched",
        0x8000_0001,
        8 << 10,
    ))]);
}

#[test]
fn stress_16k_segments_async() {
    let mut p = Stress::new("stress-16k-async", 0x1600_0002, 16 << 10);
    p.sync_mode = SyncMode::Async { interval_ms: 10 };
    p.appenders = 3;
    finish([run_stress(p)]);
}

#[test]
fn stress_64k_segments_strict() {
    let mut p = Stress::new("stress-64k-strict", 0x6400_0003, 64 << 10);
    p.sync_mode = SyncMode::Strict;
    finish([run_stress(p)]);
}

#[test]
fn stress_default_64m_segments() {
    let mut p = Stress::new(
        "stress-64m-default",
        0x6400_0004,
        Config::default().segment_size,
    );
    p.max_actions = 2500;
    finish([run_stress(p)]);
}

// Scenario 2: transactions under retention.

/// Builds a log in which a transaction's BeginTxn sits in one segment and
/// its write in the next, with a checkpoint after the write, then cuts at
/// the checkpoint (which removes the BeginTxn's segment, unless the log
/// refuses to cut inside an open transaction) and checks every replay path.
fn split_txn_case(kind: u8, fails: &Fails) {
    let name = format!("split {} transaction", kind_name(kind));
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default()
        .segment_size(8 << 10)
        .sync_mode(SyncMode::Async { interval_ms: 1000 });
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    // Frames fill [4096, 8192) of each segment: 4096 bytes.
    let room = (8 << 10) - 4096;
    let (x, filler_run) = (7u8, 8u8);
    let rid = run_id(x);
    let mut model = Model::default();
    let put = |model: &mut Model, e: &WalEntry| {
        let lsn = wal.append(e).map(|p| p.lsn).unwrap();
        model.note(lsn, &e.as_borrowed());
        lsn
    };
    // A filler of ~600 bytes first, so the BeginTxn is far enough into the
    // segment that a write of `room - 300` bytes cannot follow it there.
    let (fk, fv) = Key {
        run: filler_run,
        txn: 1,
        op: 0,
        nops: 1,
        kind: STANDALONE,
        vlen: 560,
    }
    .write();
    put(
        &mut model,
        &WalEntry::Write {
            run_id: run_id(filler_run),
            key: fk,
            value: fv,
            version: 1,
        },
    );
    let mut key = Key {
        run: x,
        txn: 2,
        op: 0,
        nops: 1,
        kind,
        vlen: 0,
    };
    for _ in 0..3 {
        let (k, _) = key.write();
        let base = frame_len(&BorrowedEntry::Write {
            run_id: rid,
            key: &k,
            value: &[],
            version: 0,
        });
        key.vlen = (room - 300 - base) as u32;
    }
    let (k, v) = key.write();
    let write = WalEntry::Write {
        run_id: rid,
        key: k.clone(),
        value: v.clone(),
        version: 0,
    };
    let (begin, write_lsn, cp) = if kind == COMMITTED {
        let pos = wal
            .append_txn(
                rid,
                2,
                &[Op::Write {
                    key: &k,
                    value: &v,
                    version: 0,
                }],
            )
            .unwrap();
        let b = BorrowedEntry::BeginTxn {
            txn_id: 2,
            run_id: rid,
            timestamp: 0,
        };
        model.note(pos.begin, &b);
        let w = pos.begin + frame_len(&b) as u64;
        model.note(w, &write.as_borrowed());
        model.note(
            pos.commit,
            &BorrowedEntry::CommitTxn {
                txn_id: 2,
                run_id: rid,
            },
        );
        let cp = wal
            .checkpoint(Uuid::from_u128(1), 1, &[])
            .map(|p| p.lsn)
            .unwrap();
        (pos.begin, w, cp)
    } else {
        let begin = put(
            &mut model,
            &WalEntry::BeginTxn {
                txn_id: 2,
                run_id: rid,
                timestamp: 2,
            },
        );
        let w = put(&mut model, &write);
        let cp = wal
            .checkpoint(Uuid::from_u128(1), 1, &[])
            .map(|p| p.lsn)
            .unwrap();
        let end = match kind {
            ABORTED => Some(WalEntry::AbortTxn {
                txn_id: 2,
                run_id: rid,
            }),
            COMMITTED_BY_ENTRY => Some(WalEntry::CommitTxn {
                txn_id: 2,
                run_id: rid,
            }),
            _ => None,
        };
        if let Some(e) = end {
            put(&mut model, &e);
        }
        (begin, w, cp)
    };
    let removed = match wal.purge_to_checkpoint(cp) {
        Ok(n) => n,
        Err(e) => {
            fails.push(format!("{name}: purge_to_checkpoint({cp}) failed: {e}"));
            return;
        }
    };
    let start = wal.start_lsn();
    let setting = format!(
        "{name} (BeginTxn at LSN {begin}, its write at {write_lsn}, checkpoint at {cp}; \
         purge_to_checkpoint removed {removed} segment(s), the log now starts at {start}{})",
        if start > begin && start <= write_lsn {
            ": the BeginTxn is gone, the write is not"
        } else {
            ""
        }
    );
    eprintln!("{setting}");
    let judge = |what: &str, result: durability::Result<ReplayCheck>| match result {
        Ok(mut rc) => {
            rc.flush(fails);
        }
        Err(e) => fails.push(format!("{setting}: {what} failed: {e}")),
    };
    let replay_all = |what: &str, f: &dyn Fn(&mut ReplayCheck) -> durability::Result<()>| {
        let mut rc = ReplayCheck::new(format!("{setting}: {what}"), None);
        judge(what, f(&mut rc).map(|()| rc));
    };
    replay_all("wal.replay", &|rc| wal.replay(|t| rc.on_txn(t)).map(drop));
    replay_all("wal.replay_run", &|rc| {
        rc.want_run = Some(x);
        wal.replay_run(rid, |t| rc.on_txn(t)).map(drop)
    });
    replay_all("Snapshot::replay", &|rc| {
        wal.snapshot().replay(|t| rc.on_txn(t)).map(drop)
    });
    wal.close().unwrap();
    match WalReader::open(dir.path(), &config) {
        Ok(r) => {
            replay_all("WalReader::replay", &|rc| {
                r.replay(|t| rc.on_txn(t)).map(drop)
            });
            replay_all("WalReader::replay_run", &|rc| {
                rc.want_run = Some(x);
                r.replay_run(rid, |t| rc.on_txn(t)).map(drop)
            });
        }
        Err(e) => fails.push(format!("{setting}: WalReader::open failed: {e}")),
    }
    match open_wal(dir.path(), &config) {
        Ok(w) => {
            replay_all("replay after reopening", &|rc| {
                w.replay(|t| rc.on_txn(t)).map(drop)
            });
            replay_all("replay_run after reopening", &|rc| {
                rc.want_run = Some(x);
                w.replay_run(rid, |t| rc.on_txn(t)).map(drop)
            });
            w.close().unwrap();
        }
        Err(e) => fails.push(format!("{setting}: reopening failed: {e}")),
    }
}

#[test]
fn replay_never_delivers_uncommitted_writes_after_retention() {
    let fails = Fails::default();
    for kind in [ABORTED, INCOMPLETE, COMMITTED, COMMITTED_BY_ENTRY] {
        split_txn_case(kind, &fails);
    }
    let split = fails.report("transactions split by purge_to_checkpoint (deterministic)");
    // The same under threads: aggressive retention, no tails holding it back.
    let mut p = Stress::new("txn-retention-8k", 0x7E7E_0005, 8 << 10);
    p.retention = Some(Duration::from_millis(5));
    p.tails = false;
    p.readers = false;
    p.replayers = 2;
    finish([split, run_stress(p)]);
}

// Scenario 3: runs() after retention.

/// Run A's only entries are early; run B fills several segments after
/// them; a checkpoint and a cut remove A's segments. Every view must agree
/// that A is gone.
fn runs_after_cut_case(fails: &Fails) {
    let title = "runs after a deterministic cut";
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().segment_size(8 << 10);
    let wal = Wal::open(dir.path(), config.clone()).unwrap();
    let mut model = Model::default();
    let unit = |model: &mut Model, run: u8, txn: u64, vlen: u32| {
        let (k, v) = Key {
            run,
            txn,
            op: 0,
            nops: 1,
            kind: COMMITTED,
            vlen,
        }
        .write();
        let rid = run_id(run);
        let op = Op::Write {
            key: &k,
            value: &v,
            version: txn,
        };
        let pos = wal.append_txn(rid, txn, &[op]).unwrap();
        let b = BorrowedEntry::BeginTxn {
            txn_id: txn,
            run_id: rid,
            timestamp: 0,
        };
        model.note(pos.begin, &b);
        model.note(pos.begin + frame_len(&b) as u64, &op.entry(rid));
        model.note(
            pos.commit,
            &BorrowedEntry::CommitTxn {
                txn_id: txn,
                run_id: rid,
            },
        );
    };
    unit(&mut model, 1, 1, 100);
    for txn in 2..14 {
        unit(&mut model, 2, txn, 2000);
    }
    let cp = wal
        .checkpoint(Uuid::from_u128(9), 9, &[])
        .map(|p| p.lsn)
        .unwrap();
    let removed = wal.purge_to_checkpoint(cp).unwrap();
    let start = wal.start_lsn();
    let end = wal.end_lsn();
    let want: BTreeSet<u8> = model
        .recs
        .iter()
        .filter(|r| r.lsn >= start)
        .filter_map(|r| r.run)
        .collect();
    let title = format!("{title} (removed {removed} segment(s), the log starts at {start})");
    eprintln!("{title}");
    let live = run_set(&wal.runs());
    let reader = WalReader::open(dir.path(), &config).unwrap();
    let read = run_set(&reader.runs());
    drop(reader);
    wal.close().unwrap();
    let w = open_wal(dir.path(), &config).unwrap();
    assert_eq!((w.start_lsn(), w.end_lsn()), (start, end));
    let reopened = run_set(&w.runs());
    w.close().unwrap();
    compare_runs(
        &title,
        &want,
        &[
            ("wal.runs()", live),
            ("WalReader::open(..).runs()", read),
            ("Wal::open(..).runs() after reopening", reopened),
        ],
        fails,
    );
}

#[test]
fn runs_match_reopen_after_retention() {
    let fails = Fails::default();
    runs_after_cut_case(&fails);
    let cut = fails.report("runs() after a deterministic cut");
    let mut p = Stress::new("runs-16k", 0x1600_0006, 16 << 10);
    p.check_runs = true;
    p.entry_txns = false;
    p.retention = Some(Duration::from_millis(10));
    p.tails = false;
    p.snapshotters = 0;
    finish([cut, run_stress(p)]);
}

// Scenario 4: a reader in another process beside a live writer.

const CHILD_DIR: &str = "DURABILITY_CONCURRENCY_CHILD_DIR";
const CHILD_OPENS: &str = "DURABILITY_CONCURRENCY_CHILD_OPENS";
const CHILD_SEGMENT: &str = "DURABILITY_CONCURRENCY_CHILD_SEGMENT";

/// The child side of `a_reader_in_another_process_never_sees_a_problem`:
/// runs only when the parent starts this binary with the environment set.
/// Prints one tab-separated line per open.
#[test]
fn child_reader_process() {
    let (Ok(dir), Ok(opens), Ok(seg)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_OPENS),
        std::env::var(CHILD_SEGMENT),
    ) else {
        return;
    };
    use std::io::Write;
    let opens: u32 = opens.parse().unwrap();
    let seg: u64 = seg.parse().unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0..opens {
        let mode = if i % 2 == 0 {
            RecoveryMode::AbsoluteConsistency
        } else {
            RecoveryMode::PointInTime
        };
        let config = Config::default().segment_size(seg).recovery_mode(mode);
        let line = match WalReader::open(&dir, &config) {
            Ok(r) => {
                let problem = r
                    .recovery_report()
                    .problem
                    .as_ref()
                    .map_or("-".to_string(), |p| p.to_string());
                let fails = Fails::default();
                let scanned = scan(r.snapshot(), "the child's reader", &fails);
                let err = fails.first_message().unwrap_or("-".into());
                let (start, end, count, hash) =
                    scanned.map_or((0, 0, 0, 0), |(s, _)| (s.start, s.end, s.count, s.hash));
                format!(
                    "CHILD\topen\t{i}\tok\t{mode:?}\t{problem}\t{start}\t{end}\t{count}\t{hash}\t{err}"
                )
            }
            Err(e) => format!("CHILD\topen\t{i}\terr\t{mode:?}\t{e}"),
        };
        writeln!(out, "{}", line.replace('\n', " ")).unwrap();
        out.flush().unwrap();
        // Spread the opens over the parent's appends.
        std::thread::sleep(Duration::from_millis(15));
    }
    writeln!(out, "CHILD\tdone").unwrap();
    out.flush().unwrap();
}

/// Kills and reaps the child on every path.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_reader_in_another_process_never_sees_a_problem() {
    finish([
        child_reader_case(64 << 10, 0xC41D_0007),
        child_reader_case(Config::default().segment_size, 0xC41D_0008),
    ]);
}

/// The parent appends 2 KB values to a log of `segment_size` segments while
/// a child process opens it read-only again and again.
fn child_reader_case(segment_size: u64, seed: u64) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    const OPENS: u32 = 40;
    let title = format!(
        "a reader in another process, {} KiB segments (seed {seed:#x})",
        segment_size >> 10
    );
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default().segment_size(segment_size);
    let wal = Wal::open(dir.path(), config).unwrap();
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut txn = 0u64;
    let mut append = |model: &mut Model, rng: &mut Rng| {
        txn += 1;
        let nops = 1 + rng.below(2) as u32;
        let kv: Vec<_> = (0..nops)
            .map(|op| {
                Key {
                    run: (txn % 3) as u8,
                    txn,
                    op,
                    nops,
                    kind: COMMITTED,
                    vlen: 2048,
                }
                .write()
            })
            .collect();
        let ops: Vec<Op<'_>> = kv
            .iter()
            .map(|(key, value)| Op::Write {
                key,
                value,
                version: txn,
            })
            .collect();
        let rid = run_id((txn % 3) as u8);
        let pos = wal.append_txn(rid, txn, &ops).unwrap();
        let b = BorrowedEntry::BeginTxn {
            txn_id: txn,
            run_id: rid,
            timestamp: 0,
        };
        model.note(pos.begin, &b);
        let mut lsn = pos.begin + frame_len(&b) as u64;
        for op in &ops {
            model.note(lsn, &op.entry(rid));
            lsn += frame_len(&op.entry(rid)) as u64;
        }
        model.note(
            pos.commit,
            &BorrowedEntry::CommitTxn {
                txn_id: txn,
                run_id: rid,
            },
        );
    };
    for _ in 0..100 {
        append(&mut model, &mut rng);
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reader_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_OPENS, OPENS.to_string())
        .env(CHILD_SEGMENT, segment_size.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(Some(child));
    let c = guard.0.as_mut().unwrap();
    let stdout = c.stdout.take().unwrap();
    let mut stderr = c.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Append 2 KB values while the child opens the log again and again.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut appended = 0u64;
    let status = loop {
        if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        if appended < 20_000 {
            append(&mut model, &mut rng);
            appended += 1;
            std::thread::sleep(Duration::from_micros(150));
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let Some(status) = status else {
        drop(guard); // kills it
        return Some(format!(
            "{title}: the child reader was still running after 40 s (killed)"
        ));
    };
    guard.0 = None;
    let lines = with_watchdog(Duration::from_secs(10), move || out_thread.join())
        .expect("the child's stdout")
        .expect("the child's stdout reader");
    let stderr = err_thread.join().unwrap_or_default();
    let end = wal.end_lsn();
    wal.close().unwrap();
    let truth = Truth::new(vec![model], end, &Fails::default(), "the parent's model");

    let fails = Fails::default();
    if status.code() != Some(0) {
        let tail: String = stderr
            .chars()
            .rev()
            .take(1500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        fails.push(format!(
            "the child reader did not exit normally: {status} (code {:?}, signal {:?}); its \
             stderr ends with: {tail}",
            status.code(),
            status.signal()
        ));
    }
    let mut opens = 0;
    for line in &lines {
        let Some(i) = line.find("CHILD\t") else {
            continue;
        };
        let f: Vec<&str> = line[i..].split('\t').collect();
        if f.get(1) != Some(&"open") {
            continue;
        }
        opens += 1;
        if f.get(3) != Some(&"ok") {
            fails.push(format!(
                "the child's WalReader::open #{} ({}) failed beside the live writer: {}",
                f[2],
                f.get(4).unwrap_or(&"?"),
                f.get(5..).map(|r| r.join(" ")).unwrap_or_default()
            ));
            continue;
        }
        if f.len() != 11 {
            fails.push(format!("a malformed line from the child: {line:?}"));
            continue;
        }
        if f[5] != "-" {
            fails.push(format!(
                "the child's WalReader::open #{} ({}) reported a problem, but the log is \
                 healthy: {}",
                f[2], f[4], f[5]
            ));
        }
        if f[10] != "-" {
            fails.push(format!(
                "the child's WalReader::open #{} ({}): {}",
                f[2], f[4], f[10]
            ));
            continue;
        }
        let num = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
        let rec = RangeRec {
            what: format!("the child's WalReader::open #{} ({})", f[2], f[4]),
            start: num(f[6]),
            end: num(f[7]),
            count: num(f[8]),
            hash: num(f[9]),
        };
        truth.check_range(&rec, &fails);
    }
    if opens != OPENS {
        fails.push(format!(
            "the child reported {opens} opens of {OPENS} (it died or stopped early)"
        ));
    }
    if !lines.iter().any(|l| l.contains("CHILD\tdone")) {
        fails.push("the child never finished its loop");
    }
    eprintln!(
        "{title}: {opens} opens, exit {status}; the parent appended {appended} txns meanwhile \
         (log end {end})"
    );
    fails.report(&title)
}

// Scenario 5: tails and Duration::MAX, tails and close.

fn one_write(n: u64) -> WalEntry {
    let (key, value) = Key {
        run: 1,
        txn: n,
        op: 0,
        nops: 1,
        kind: STANDALONE,
        vlen: 64,
    }
    .write();
    WalEntry::Write {
        run_id: run_id(1),
        key,
        value,
        version: n,
    }
}

#[test]
fn a_waiting_tail_returns_promptly_when_the_log_is_closed() {
    let fails = Fails::default();
    for by_drop in [false, true] {
        let how = if by_drop {
            "dropping the last Arc<Wal>"
        } else {
            "Wal::close()"
        };
        let dir = tempfile::tempdir().unwrap();
        let wal =
            Arc::new(Wal::open(dir.path(), Config::default().segment_size(64 << 10)).unwrap());
        wal.append(&one_write(1)).unwrap();
        let mut tail = wal.tail(wal.end_lsn());
        let (started_tx, started_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let h = std::thread::spawn(move || {
            let _ = started_tx.send(());
            let r = tail.next_timeout(Duration::from_secs(30));
            let returned = Instant::now();
            let desc = match &r {
                Ok(None) => "Ok(None)".to_string(),
                Ok(Some((lsn, e))) => format!("Ok(Some(a {} at LSN {lsn}))", e.kind()),
                Err(e) => format!("Err({e})"),
            };
            let ok = matches!(r, Ok(None) | Err(Error::Closed));
            let _ = done_tx.send((returned, desc, ok));
        });
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // Let it block in the wait.
        std::thread::sleep(Duration::from_millis(300));
        let closing = Instant::now();
        if by_drop {
            drop(wal);
        } else {
            match Arc::try_unwrap(wal) {
                Ok(w) => w.close().unwrap(),
                Err(_) => panic!("the test holds the only Arc<Wal>"),
            }
        }
        let close_took = closing.elapsed();
        match done_rx.recv_timeout(Duration::from_secs(5)) {
            Ok((returned, desc, ok)) => {
                let after = returned.saturating_duration_since(closing);
                eprintln!("closed by {how}: next_timeout(30 s) returned {desc} {after:?} after");
                if after > Duration::from_secs(2) {
                    fails.push(format!(
                        "closed by {how}: Tail::next_timeout(30 s) returned {after:?} after the \
                         close began (the close took {close_took:?}): it must return promptly"
                    ));
                }
                if !ok {
                    fails.push(format!(
                        "closed by {how}: Tail::next_timeout(30 s) returned {desc}; expected \
                         Err(Closed) or Ok(None)"
                    ));
                }
                let _ = h.join();
            }
            Err(_) => fails.push(format!(
                "closed by {how}: Tail::next_timeout(30 s) was still waiting 5 s after the log \
                 was closed (the close took {close_took:?}): closing must wake waiting tails"
            )),
        }
    }
    finish([fails.report("a tail waiting while the log closes")]);
}

#[test]
fn tail_next_timeout_duration_max_returns_an_available_entry() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Config::default().segment_size(64 << 10)).unwrap();
    let e = one_write(1);
    let lsn = wal.append(&e).map(|p| p.lsn).unwrap();
    let mut tail = wal.tail(lsn);
    let r = with_watchdog(Duration::from_secs(10), move || {
        tail.next_timeout(Duration::MAX)
    });
    match r {
        Ok(Ok(Some((l, got)))) => {
            assert_eq!(l, lsn, "next_timeout(MAX) delivered the wrong entry");
            assert_eq!(got, e, "next_timeout(MAX) delivered a different entry");
        }
        Ok(other) => panic!(
            "Tail::next_timeout(Duration::MAX) with an entry available at LSN {lsn} returned \
             {other:?}"
        ),
        Err(m) => {
            panic!("Tail::next_timeout(Duration::MAX) with an entry available at LSN {lsn}: {m}")
        }
    }
    wal.close().unwrap();
}

#[test]
fn tail_next_timeout_duration_max_waits_for_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Config::default().segment_size(64 << 10)).unwrap());
    wal.append(&one_write(1)).unwrap();
    let mut tail = wal.tail(wal.end_lsn());
    let e = one_write(2);
    let writer = {
        let wal = Arc::clone(&wal);
        let e = e.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            wal.append(&e).map(|p| p.lsn).unwrap()
        })
    };
    let r = with_watchdog(Duration::from_secs(10), move || {
        tail.next_timeout(Duration::MAX)
    });
    let lsn = writer.join().expect("the appending thread");
    match r {
        Ok(Ok(Some((l, got)))) => {
            assert_eq!(l, lsn, "next_timeout(MAX) delivered the wrong entry");
            assert_eq!(got, e, "next_timeout(MAX) delivered a different entry");
        }
        Ok(other) => panic!(
            "Tail::next_timeout(Duration::MAX), with the next entry appended 200 ms later at \
             LSN {lsn}, returned {other:?}"
        ),
        Err(m) => panic!(
            "Tail::next_timeout(Duration::MAX), with the next entry appended 200 ms later at \
             LSN {lsn}: {m}"
        ),
    }
}

// Scenario 6: snapshots taken while the log rotates.

#[test]
fn snapshot_read_at_last_entry_never_fails_during_rotation() {
    let seed = 0x5_0A95_0008u64;
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), Config::default().segment_size(8 << 10)).unwrap());
    // Every entry's [lsn, end), pushed before it is appended (one appender,
    // so its LSN is the end of the previous one).
    let entries: Arc<Mutex<Vec<(Lsn, Lsn)>>> = Arc::new(Mutex::new(Vec::new()));
    let fails = Arc::new(Fails::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let deadline = t0 + work_time().max(Duration::from_secs(3));
    let appender = {
        let (wal, entries, fails, stop) = (
            Arc::clone(&wal),
            Arc::clone(&entries),
            Arc::clone(&fails),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut next: Lsn = 0;
            let rid = run_id(3);
            for n in 1..=500_000u64 {
                if stop.load(SeqCst) || Instant::now() >= deadline {
                    break;
                }
                let key = |op, nops, kind, vlen| Key {
                    run: 3,
                    txn: n,
                    op,
                    nops,
                    kind,
                    vlen,
                };
                if rng.below(4) == 0 {
                    let kv: Vec<_> = (0..2)
                        .map(|op| key(op, 2, COMMITTED, rng.below(1500) as u32).write())
                        .collect();
                    let ops: Vec<Op<'_>> = kv
                        .iter()
                        .map(|(key, value)| Op::Write {
                            key,
                            value,
                            version: n,
                        })
                        .collect();
                    let mut lens = vec![frame_len(&BorrowedEntry::BeginTxn {
                        txn_id: n,
                        run_id: rid,
                        timestamp: 0,
                    })];
                    lens.extend(ops.iter().map(|op| frame_len(&op.entry(rid))));
                    lens.push(frame_len(&BorrowedEntry::CommitTxn {
                        txn_id: n,
                        run_id: rid,
                    }));
                    let begin = next;
                    {
                        let mut v = lock(&entries);
                        for len in lens {
                            v.push((next, next + len as u64));
                            next += len as u64;
                        }
                    }
                    match wal.append_txn(rid, n, &ops) {
                        Ok(pos) if pos.begin == begin && pos.end == next => {}
                        Ok(pos) => {
                            fails.push(format!(
                                "append_txn returned {pos:?}, expected begin {begin}, end {next}"
                            ));
                            break;
                        }
                        Err(e) => {
                            fails.push(format!("append_txn failed: {e}"));
                            break;
                        }
                    }
                } else {
                    let (k, v) = key(0, 1, STANDALONE, rng.below(3000) as u32).write();
                    let e = WalEntry::Write {
                        run_id: rid,
                        key: k,
                        value: v,
                        version: n,
                    };
                    let len = frame_len(&e.as_borrowed()) as u64;
                    lock(&entries).push((next, next + len));
                    match wal.append(&e).map(|p| p.lsn) {
                        Ok(lsn) if lsn == next => next += len,
                        Ok(lsn) => {
                            fails.push(format!("append returned LSN {lsn}, expected {next}"));
                            break;
                        }
                        Err(e) => {
                            fails.push(format!("append failed: {e}"));
                            break;
                        }
                    }
                }
            }
        })
    };
    // Two threads take snapshots (this one and another), to meet more
    // rotations.
    let other = {
        let (wal, entries, fails, stop) = (
            Arc::clone(&wal),
            Arc::clone(&entries),
            Arc::clone(&fails),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || snapshot_last_entries(&wal, &entries, &fails, &stop, deadline))
    };
    let (mut taken, mut checked, mut failed) =
        snapshot_last_entries(&wal, &entries, &fails, &stop, deadline);
    stop.store(true, SeqCst);
    match with_watchdog(Duration::from_secs(30), move || other.join()) {
        Ok(Ok((t, c, f))) => {
            taken += t;
            checked += c;
            failed += f;
        }
        Ok(Err(p)) => fails.push(format!(
            "the second snapshot thread panicked: {}",
            panic_text(&*p)
        )),
        Err(m) => fails.push(format!("the second snapshot thread: {m}")),
    }
    if let Err(m) = join_all(
        vec![("appender".into(), appender)],
        Instant::now() + Duration::from_secs(30),
        &fails,
    ) {
        fails.push(m);
    }
    let segments = wal.stats().segments;
    eprintln!(
        "snapshots during rotation: {taken} snapshots, {checked} of them not empty, {failed} \
         failed read_at, log end {}, {} segments, {:.1?}",
        wal.end_lsn(),
        segments,
        t0.elapsed()
    );
    if failed > 0 {
        fails.push(format!(
            "{failed} of {checked} snapshots could not read their own last entry"
        ));
    }
    finish([fails.report(&format!(
        "snapshots during rotation with 8 KiB segments (seed {seed:#x})"
    ))]);
}

/// Takes snapshots until `deadline` (or `stop`) and reads the last entry of
/// each, found in `entries` (every entry's `[lsn, end)`, pushed before it is
/// appended). Returns the snapshots taken, those not empty, and the failed.
fn snapshot_last_entries(
    wal: &Wal,
    entries: &Mutex<Vec<(Lsn, Lsn)>>,
    fails: &Fails,
    stop: &AtomicBool,
    deadline: Instant,
) -> (u64, u64, u64) {
    let (mut taken, mut checked, mut failed) = (0u64, 0u64, 0u64);
    for i in 1..=10_000_000u64 {
        if Instant::now() >= deadline || stop.load(SeqCst) || checked >= 2_000_000 {
            break;
        }
        let snap = wal.snapshot();
        taken += 1;
        let (start, end) = (snap.start_lsn(), snap.end_lsn());
        if end == start {
            continue;
        }
        checked += 1;
        let last = {
            let v = lock(entries);
            let j = v.partition_point(|&(_, e)| e < end);
            v.get(j).filter(|&&(_, e)| e == end).map(|&(l, _)| l)
        };
        let Some(last) = last else {
            failed += 1;
            fails.push(format!(
                "snapshot #{i} [{start}, {end}): its end is not the end of an appended entry"
            ));
            continue;
        };
        match snap.read_at(last) {
            Ok(e) if e.lsn == last && last + e.len as u64 == end => {}
            Ok(e) => {
                failed += 1;
                fails.push(format!(
                    "snapshot #{i} [{start}, {end}): read_at({last}) of its last entry returned \
                     the entry at LSN {} of {} bytes",
                    e.lsn, e.len
                ));
            }
            Err(e) => {
                failed += 1;
                fails.push(format!(
                    "snapshot #{i} [{start}, {end}) ({}): read_at({last}) of its last entry \
                     failed: {e}",
                    seg_summary(&snap)
                ));
            }
        }
    }
    (taken, checked, failed)
}
