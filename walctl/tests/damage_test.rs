//! A damaged log, as an operator meets it: `verify` reports every problem
//! (past the first, up to `--max-problems`), `replay` of a run past the
//! damage points to `salvage`, a default `Wal::open` moves later segments
//! aside as `*.discarded-*`, `verify` lists them, and `salvage` copies every
//! committed transaction whose frames are intact into a new log, without
//! changing a byte of the source.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use assert_cmd::Command;
use durability::{Config, Op, RunId, Wal, WalReader};
use serde_json::Value;

const SEG: u64 = 64 << 10;
/// Transactions in the log: about six segments of 64 KiB.
const N: u64 = 800;

fn cfg() -> Config {
    Config::default().segment_size(SEG)
}

fn run_a() -> RunId {
    RunId::from_bytes([0xA1; 16])
}

fn run_b() -> RunId {
    RunId::from_bytes([0xB2; 16])
}

/// The run of transaction `i`: A for the first half, B for the second (so
/// B has no entry before damage in segment 1).
fn run_of(i: u64) -> RunId {
    if i < N / 2 {
        run_a()
    } else {
        run_b()
    }
}

/// One entry of the model: (LSN, segment, file offset, frame length, run,
/// txn id).
type Frame = (u64, u64, usize, usize, Option<RunId>, Option<u64>);

/// Writes N committed transactions (a deterministic value each) and
/// returns every entry's place, from the library's own view.
fn build(dir: &Path) -> Vec<Frame> {
    let wal = Wal::open(dir, cfg()).unwrap();
    for i in 0..N {
        let key = format!("key/{:03}", i % 50);
        let mut value = format!("txn {i} ").into_bytes();
        value.resize(300, b'a' + (i % 26) as u8);
        wal.append_txn(
            run_of(i),
            i,
            &[Op::Write {
                key: key.as_bytes(),
                value: &value,
                version: i,
            }],
        )
        .unwrap();
    }
    wal.close().unwrap();
    let r = WalReader::open(dir, cfg()).unwrap();
    let snap = r.snapshot();
    snap.iter()
        .map(|e| {
            let e = e.unwrap();
            (
                e.lsn,
                e.segment,
                e.offset,
                e.len,
                e.entry.run_id(),
                // A Write's version is its transaction's id in this log.
                e.entry.txn_id().or(e.entry.version()),
            )
        })
        .collect()
}

/// Flips 4 payload bytes of the Write frame of the first transaction whose
/// Write lies past the middle of segment `seq`; returns that txn id.
fn flip_in(dir: &Path, frames: &[Frame], seq: u64) -> u64 {
    let &(_, _, off, _, _, txn) = frames
        .iter()
        .find(|f| f.1 == seq && f.2 > (SEG / 2) as usize && f.3 > 300)
        .unwrap_or_else(|| {
            let segs: BTreeSet<u64> = frames.iter().map(|f| f.1).collect();
            let lens: BTreeSet<usize> = frames.iter().map(|f| f.3).collect();
            panic!("no Write frame in the second half of segment {seq}: segments {segs:?}, frame lengths {lens:?}")
        });
    let path = dir.join(format!("{seq:020}.wal"));
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes[off + 40..off + 44] {
        *b ^= 0xFF;
    }
    fs::write(&path, &bytes).unwrap();
    txn.unwrap()
}

/// Every entry of `dir` by name, with a regular file's bytes.
fn files(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = e.path().is_file().then(|| fs::read(e.path()).unwrap());
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn walctl(args: &[&str]) -> Out {
    let out = Command::cargo_bin("walctl")
        .unwrap()
        .args(args)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let o = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !o.stderr.contains("panicked"),
        "walctl {args:?} panicked: {}",
        o.stderr
    );
    o
}

/// Runs walctl and checks that no byte (and no file) of `dir` changed.
fn read_only(dir: &Path, args: &[&str]) -> Out {
    let before = files(dir);
    let o = walctl(args);
    assert!(before == files(dir), "walctl {args:?} changed {dir:?}");
    o
}

fn p(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

#[test]
fn verify_reports_every_problem_past_the_first_up_to_max_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let frames = build(dir);
    let last_seq = frames.last().unwrap().1;
    assert!(last_seq >= 4, "the log spans several segments");
    flip_in(dir, &frames, 1);
    flip_in(dir, &frames, 3);

    let o = read_only(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let v = json(&o.stdout);
    assert_eq!(v["verdict"], "DAMAGED");
    let problems = v["problems"].as_array().unwrap();
    let in_seg = |seq: u64| {
        problems
            .iter()
            .filter(|p| p["segment"] == format!("{seq:020}.wal").as_str())
            .count()
    };
    assert_eq!(in_seg(1), 1, "{v}");
    assert_eq!(in_seg(3), 1, "the damage past the first problem too: {v}");
    assert_eq!(problems.len(), 2, "{v}");
    assert!(v["bytes_unreadable"].as_u64().unwrap() > 0, "{v}");
    assert!(v["bytes_checked"].as_u64().unwrap() > 4 * (SEG / 2), "{v}");
    assert_eq!(v["problems_omitted"], false);

    let o = read_only(dir, &["verify", p(dir), "--max-problems", "1", "--json"]);
    assert_eq!(o.code, 1);
    let v = json(&o.stdout);
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems_omitted"], true);

    let o = read_only(dir, &["verify", p(dir)]);
    assert_eq!(o.code, 1);
    assert!(o.stdout.contains("DAMAGED: 2 problems"), "{}", o.stdout);
    assert!(
        o.stdout.contains("00000000000000000003.wal"),
        "{}",
        o.stdout
    );
}

#[test]
fn salvage_recovers_every_intact_transaction_past_mid_log_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("log");
    let frames = build(&src);
    let bad = flip_in(&src, &frames, 1);
    let expected: BTreeSet<u64> = (0..N).filter(|&i| i != bad).collect();
    assert!(
        frames.iter().all(|f| f.4 != Some(run_b()) || f.1 >= 2),
        "run B lies wholly past the damage"
    );

    // Before any repair: run B is past the damage, and replay says so.
    let b = run_b().to_string();
    let o = read_only(&src, &["replay", p(&src), "--run", &b]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("walctl salvage"), "{}", o.stderr);
    assert!(
        !o.stderr.contains("has no entries in this log"),
        "{}",
        o.stderr
    );

    // A default open keeps the prefix and moves the rest aside.
    let wal = Wal::open(&src, cfg()).unwrap();
    let kept = wal.recovery_report().committed_txns;
    wal.close().unwrap();
    assert!(kept < N / 2, "kept {kept}");
    let discarded = files(&src)
        .keys()
        .filter(|n| n.contains(".discarded-"))
        .count();
    assert!(discarded >= 4, "{:?}", files(&src).keys());

    // verify: the log itself is clean now; the discarded files are listed.
    let o = read_only(&src, &["verify", p(&src), "--json"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    let v = json(&o.stdout);
    assert_eq!(v["discarded"].as_array().unwrap().len(), discarded, "{v}");

    // salvage: read-only on the source, a new log with every intact txn.
    let dest = tmp.path().join("salvaged");
    let o = read_only(&src, &["salvage", p(&src), p(&dest)]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains(&format!("wrote     {} committed", expected.len())),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("unreadable"), "{}", o.stdout);

    let mut got = BTreeSet::new();
    for run in [run_a(), run_b()] {
        let o = read_only(
            &dest,
            &["replay", p(&dest), "--run", &run.to_string(), "--json"],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        for line in o.stdout.lines() {
            let t = json(line);
            let id = t["txn_id"].as_u64().unwrap();
            assert_eq!(run_of(id), run);
            let value = t["ops"][0]["value"].as_str().unwrap();
            let text = String::from_utf8(
                (0..value.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap())
                    .collect(),
            )
            .unwrap();
            assert!(text.starts_with(&format!("txn {id} ")), "{text}");
            assert!(got.insert(id), "txn {id} twice");
        }
    }
    assert_eq!(got, expected);
    let o = read_only(&dest, &["verify", p(&dest)]);
    assert_eq!(o.code, 0, "{}", o.stdout);

    // DEST must be new; SRC as DEST is refused.
    let o = read_only(&src, &["salvage", p(&src), p(&dest)]);
    assert_eq!(o.code, 2, "{}", o.stdout);
    assert!(o.stderr.contains("not empty"), "{}", o.stderr);
    let o = read_only(&src, &["salvage", p(&src), p(&src)]);
    assert_eq!(o.code, 2);
}

/// A tiny deterministic generator (xorshift), so the hostile files are the
/// same on every run.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn inspect_reads_hostile_segment_files_without_panicking_or_writing() {
    use durability::recovery::inspect::{inspect, segment_files};
    use durability::Decoder;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let frames = build(dir);
    let last = frames.last().unwrap().1;
    // Garbage after the log, a file cut inside its header page, a
    // discarded file of noise, a segment whose header is noise but whose
    // frames are real, and a directory named like a segment.
    fs::write(
        dir.join(format!("{:020}.wal", last + 1)),
        noise(7, SEG as usize),
    )
    .unwrap();
    fs::write(dir.join(format!("{:020}.wal", last + 2)), noise(8, 100)).unwrap();
    fs::write(
        dir.join("00000000000000000009.wal.discarded-1"),
        noise(9, 3 * 4096 + 17),
    )
    .unwrap();
    let seg2 = dir.join("00000000000000000002.wal");
    let mut bytes = fs::read(&seg2).unwrap();
    bytes[..128].copy_from_slice(&noise(10, 128));
    fs::write(&seg2, &bytes).unwrap();
    fs::create_dir(dir.join(format!("{:020}.wal", last + 3))).unwrap();

    let before = files(dir);
    let listed = segment_files(dir).unwrap();
    assert!(listed.iter().any(|f| f.discarded));
    assert!(listed.iter().all(|f| f.path.is_file()));
    let mut seen = 0u64;
    let found = inspect(dir, Decoder::default(), 1000, |_, _| seen += 1).unwrap();
    assert_eq!(found.len(), listed.len());
    assert_eq!(seen, found.iter().map(|s| s.frames).sum::<u64>());
    let by_name = |n: String| found.iter().find(|s| s.file.name == n).unwrap();
    // The header of segment 2 is noise: its frames are still checked, from
    // where segment 1's end, and every one of them validates.
    let s2 = by_name("00000000000000000002.wal".into());
    assert!(s2.header_problem.is_some());
    assert!(s2.first_lsn_assumed);
    assert_eq!(s2.frames, frames.iter().filter(|f| f.1 == 2).count() as u64);
    assert!(s2.unreadable.is_empty(), "{:?}", s2.unreadable);
    let noisy = by_name(format!("{:020}.wal", last + 1));
    assert!(noisy.unreadable_bytes() > 0);
    let cut = by_name(format!("{:020}.wal", last + 2));
    assert!(cut.header_problem.as_deref().unwrap().contains("shorter"));
    assert!(before == files(dir), "inspect changed the directory");

    // verify lists every one of them, and exits 1.
    let o = read_only(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
}
