//! The `walctl` binary, run for real: every subcommand on a known log built
//! with the library, `--json` parsed back, exit codes 0/1/2/3 on clean,
//! damaged, invalid and torn-tail inputs, the log byte-identical after every
//! inspection command, inspection while another writer appends, `bench
//! --json`, and `demo` completing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use assert_cmd::Command;
use durability::{BorrowedEntry, Config, Op, RunId, SyncMode, Wal, WalReader};
use serde_json::Value;

const SEG: u64 = 64 << 10;

fn cfg() -> Config {
    Config::default().segment_size(SEG)
}

fn run_id(b: u8) -> RunId {
    RunId::from_bytes([b; 16])
}

/// The runs of the known log.
const A: u8 = 0xA1;
const B: u8 = 0xB2;
const C: u8 = 0xC3;

/// What the known log holds, from the library's own view of it.
struct Known {
    entries: u64,
    end_lsn: u64,
    /// (lsn, segment seq, file offset, frame length) of every entry.
    frames: Vec<(u64, u64, usize, usize)>,
}

fn value(tag: &str, j: usize) -> Vec<u8> {
    let mut v = format!("{{\"key\":{j},\"from\":\"{tag}\",\"pad\":\"").into_bytes();
    v.resize(300, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// Builds the known log in `dir`:
/// - run A: 150 txns, each writing key/{i%20}; keys 0..15 get a value shared
///   with run B, keys 15..20 an A-only value;
/// - run B: the same 150 txns with B-only values for keys 15..20, then one
///   txn deleting key/00 and writing only-b;
/// - run C: one committed txn, one aborted txn, and a checkpoint.
///
/// A and B then differ in 7 keys: key/00 (B deleted it), key/15..key/19,
/// and only-b (absent in A).
fn build_log(dir: &Path) -> Known {
    let wal = Wal::open(dir, cfg()).unwrap();
    for i in 0..150u64 {
        let j = (i % 20) as usize;
        let key = format!("key/{j:02}");
        let va = value(if j < 15 { "same" } else { "a" }, j);
        let vb = value(if j < 15 { "same" } else { "b" }, j);
        wal.append_txn(
            run_id(A),
            i,
            &[Op::Write {
                key: key.as_bytes(),
                value: &va,
                version: i,
            }],
        )
        .unwrap();
        wal.append_txn(
            run_id(B),
            i,
            &[Op::Write {
                key: key.as_bytes(),
                value: &vb,
                version: i,
            }],
        )
        .unwrap();
    }
    wal.append_txn(
        run_id(B),
        150,
        &[
            Op::Delete {
                key: b"key/00",
                version: 150,
            },
            Op::Write {
                key: b"only-b",
                value: b"hello",
                version: 151,
            },
        ],
    )
    .unwrap();
    wal.append_txn(
        run_id(C),
        1,
        &[Op::Write {
            key: b"c",
            value: b"committed",
            version: 1,
        }],
    )
    .unwrap();
    wal.append_entry(BorrowedEntry::BeginTxn {
        txn_id: 2,
        run_id: run_id(C),
        timestamp: 1,
    })
    .unwrap();
    wal.append_entry(BorrowedEntry::Write {
        run_id: run_id(C),
        key: b"c",
        value: b"aborted",
        version: 2,
    })
    .unwrap();
    wal.append_entry(BorrowedEntry::AbortTxn {
        txn_id: 2,
        run_id: run_id(C),
    })
    .unwrap();
    wal.checkpoint(uuid::Uuid::from_bytes([7; 16]), 99, &[run_id(C)])
        .unwrap();
    wal.close().unwrap();

    let r = WalReader::open(dir, cfg()).unwrap();
    assert!(r.recovery_report().problem.is_none());
    assert!(r.recovery_report().segments >= 3, "spans several segments");
    let frames = r
        .snapshot()
        .iter()
        .map(|e| {
            let e = e.unwrap();
            let len = durability::format::frame::frame_len(&e.entry.as_borrowed());
            (e.lsn, e.segment, e.offset, len)
        })
        .collect::<Vec<_>>();
    Known {
        entries: r.recovery_report().entries,
        end_lsn: r.recovery_report().end_lsn,
        frames,
    }
}

/// Every file in `dir`, by name, with its bytes.
fn snapshot_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
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
        !o.stderr.contains("panicked") && !o.stderr.contains("RUST_BACKTRACE"),
        "walctl {args:?} panicked: {}",
        o.stderr
    );
    o
}

/// Runs an inspection command and checks it changed no byte of the log.
fn inspect(dir: &Path, args: &[&str]) -> Out {
    let before = snapshot_files(dir);
    let out = walctl(args);
    let after = snapshot_files(dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "walctl {args:?} created or removed files"
    );
    assert!(before == after, "walctl {args:?} changed the log's bytes");
    out
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(json).collect()
}

fn p(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex_decode(v.as_str().unwrap())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn verify_stats_dump_replay_diff_on_a_known_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let k = build_log(dir);
    let (a, b, c) = (
        run_id(A).to_string(),
        run_id(B).to_string(),
        run_id(C).to_string(),
    );

    // verify
    let o = inspect(dir, &["verify", p(dir)]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("OK"), "{}", o.stdout);
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 0);
    let v = json(&o.stdout);
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], k.entries);
    assert_eq!(v["end_lsn"], k.end_lsn);
    assert_eq!(v["committed_txns"], 302);
    assert_eq!(v["aborted_txns"], 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    // stats
    let o = inspect(dir, &["stats", p(dir)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("runs       3"), "{}", o.stdout);
    assert!(o.stdout.contains(&a), "{}", o.stdout);
    let o = inspect(dir, &["stats", p(dir), "--json"]);
    assert_eq!(o.code, 0);
    let s = json(&o.stdout);
    assert!(s["segments"].as_u64().unwrap() >= 3);
    assert_eq!(s["entries"], k.entries);
    assert_eq!(s["bytes"], k.end_lsn);
    assert_eq!(s["runs"], 3);
    assert_eq!(s["committed_txns"], 302);
    assert_eq!(s["aborted_txns"], 1);
    assert_eq!(s["incomplete_txns"], 0);
    assert_eq!(s["first_lsn"], 0);
    assert_eq!(s["last_lsn"], k.frames.last().unwrap().0);
    let t = &s["entries_by_type"];
    assert_eq!(t["BeginTxn"], 150 + 151 + 2);
    assert_eq!(t["CommitTxn"], 302);
    assert_eq!(t["AbortTxn"], 1);
    assert_eq!(t["Delete"], 1);
    assert_eq!(t["Write"], 150 + 151 + 2);
    assert_eq!(t["Checkpoint"], 1);
    assert!(s["time_span_s"].as_f64().unwrap() >= 0.0);
    assert!(s["problem"].is_null());

    // dump: every entry, in log order, with the documented fields.
    let o = inspect(dir, &["dump", p(dir), "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len() as u64, k.entries);
    for (l, f) in lines.iter().zip(&k.frames) {
        for key in [
            "lsn", "segment", "offset", "type", "run_id", "txn_id", "version", "key", "value",
        ] {
            assert!(l.get(key).is_some(), "missing {key} in {l}");
        }
        assert_eq!(l["lsn"], f.0);
        assert_eq!(l["segment"], format!("{:020}.wal", f.1));
        assert_eq!(l["offset"], f.2);
    }
    assert_eq!(lines[0]["type"], "BeginTxn");
    assert_eq!(lines[0]["run_id"], a.as_str());
    assert_eq!(lines[0]["txn_id"], 0);
    assert!(lines[0]["key"].is_null() && lines[0]["value"].is_null());
    assert_eq!(lines[1]["type"], "Write");
    assert_eq!(unhex(&lines[1]["key"]), b"key/00");
    assert_eq!(unhex(&lines[1]["value"]), value("same", 0));
    assert!(lines[1]["txn_id"].is_null());
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "Checkpoint");
    assert!(last["run_id"].is_null());
    assert_eq!(last["version"], 99);

    // dump, text: one line per entry.
    let o = inspect(dir, &["dump", p(dir)]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.lines().count() as u64, k.entries);
    assert!(o.stdout.lines().next().unwrap().contains("BeginTxn"));
    assert!(o.stdout.contains("\"key/00\""));

    // dump --run, --from
    let o = inspect(dir, &["dump", p(dir), "--run", &a, "--json"]);
    assert_eq!(o.code, 0);
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 450);
    assert!(lines.iter().all(|l| l["run_id"] == a.as_str()));
    let from = k.frames[10].0;
    let o = inspect(
        dir,
        &["dump", p(dir), "--from", &from.to_string(), "--json"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len() as u64, k.entries - 10);
    assert_eq!(lines[0]["lsn"], from);
    let o = inspect(dir, &["dump", p(dir), "--from", &k.end_lsn.to_string()]);
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout, "");

    // replay
    let o = inspect(dir, &["replay", p(dir), "--run", &a, "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let txns = json_lines(&o.stdout);
    assert_eq!(txns.len(), 150);
    for (i, t) in txns.iter().enumerate() {
        assert_eq!(t["txn_id"], i as u64);
        assert_eq!(t["run_id"], a.as_str());
        let ops = t["ops"].as_array().unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(
            unhex(&ops[0]["key"]),
            format!("key/{:02}", i % 20).as_bytes()
        );
    }
    let o = inspect(dir, &["replay", p(dir), "--run", &c]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("\"committed\""), "{}", o.stdout);
    assert!(!o.stdout.contains("\"aborted\""), "{}", o.stdout);
    assert!(
        o.stdout.contains("1 committed transactions") && o.stdout.contains("1 aborted"),
        "{}",
        o.stdout
    );

    // diff
    let o = inspect(dir, &["diff", p(dir), "--run", &a, "--run", &b, "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let d = json(&o.stdout);
    assert_eq!(d["differences"], 7);
    let diffs = d["diffs"].as_array().unwrap();
    let keys: Vec<Vec<u8>> = diffs.iter().map(|x| unhex(&x["key"])).collect();
    let mut want: Vec<Vec<u8>> = vec![b"key/00".to_vec(), b"only-b".to_vec()];
    want.extend((15..20).map(|j| format!("key/{j:02}").into_bytes()));
    want.sort();
    assert_eq!(keys, want);
    let k0 = &diffs[0];
    assert_eq!(k0["a"]["state"], "value");
    assert_eq!(unhex(&k0["a"]["value"]), value("same", 0));
    assert_eq!(k0["b"]["state"], "deleted");
    assert!(k0["b"]["value"].is_null());
    let only_b = diffs
        .iter()
        .find(|x| unhex(&x["key"]) == b"only-b")
        .unwrap();
    assert_eq!(only_b["a"]["state"], "absent");
    assert_eq!(unhex(&only_b["b"]["value"]), b"hello");
    let o = inspect(dir, &["diff", p(dir), "--run", &a, "--run", &b]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("7 keys differ"), "{}", o.stdout);
    assert!(o.stdout.contains("(deleted)") && o.stdout.contains("(absent)"));
}

/// The file and offset of the last frame's end, and the path of its segment.
fn tail_of(dir: &Path, k: &Known) -> (PathBuf, usize) {
    let &(_, seq, off, len) = k.frames.last().unwrap();
    (dir.join(format!("{seq:020}.wal")), off + len)
}

#[test]
fn a_flipped_byte_mid_log_is_corruption_exit_1_and_dump_prints_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let k = build_log(dir);
    // A frame in the middle of the first segment's frames.
    let &(lsn, seq, off, _) = k.frames.iter().find(|f| f.1 == 0 && f.2 > 30_000).unwrap();
    let seg = dir.join(format!("{seq:020}.wal"));
    let mut bytes = fs::read(&seg).unwrap();
    bytes[off + 20] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    let prefix = k.frames.iter().filter(|f| f.0 < lsn).count();

    let o = inspect(dir, &["verify", p(dir)]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("mid-log corruption"), "{}", o.stdout);
    assert!(
        o.stdout.contains("00000000000000000000.wal"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(&format!("offset {off}")), "{}", o.stdout);
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 1);
    let v = json(&o.stdout);
    assert_eq!(v["ok"], false);
    let pr = &v["problems"][0];
    assert_eq!(pr["class"], "MidLogCorruption");
    assert_eq!(pr["segment"], "00000000000000000000.wal");
    assert_eq!(pr["offset"], off);
    assert_eq!(pr["lsn"], lsn);

    let o = inspect(dir, &["dump", p(dir), "--json"]);
    assert_eq!(o.code, 1);
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), prefix, "the valid prefix, nothing after");
    let last_err = o.stderr.lines().last().unwrap();
    assert!(
        last_err.contains("stopped")
            && last_err.contains("00000000000000000000.wal")
            && last_err.contains(&format!("offset {off}")),
        "{}",
        o.stderr
    );
    let o = inspect(dir, &["dump", p(dir)]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stdout.lines().count(), prefix);

    // The others work on the valid prefix, say what they found, and exit 1
    // with the verdict last on stderr.
    let o = inspect(dir, &["stats", p(dir), "--json"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(json(&o.stdout)["problem"]["class"], "MidLogCorruption");
    assert!(
        o.stderr.lines().last().unwrap().contains("DAMAGED"),
        "{}",
        o.stderr
    );
    let a = run_id(A).to_string();
    let o = inspect(dir, &["replay", p(dir), "--run", &a]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("stops early"), "{}", o.stderr);
    assert!(
        o.stderr.lines().last().unwrap().contains("DAMAGED"),
        "{}",
        o.stderr
    );
    let o = inspect(
        dir,
        &["diff", p(dir), "--run", &a, "--run", &run_id(B).to_string()],
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.lines().last().unwrap().contains("DAMAGED"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_torn_or_garbage_tail_is_exit_3_torn_tail_with_every_entry_dumped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let k = build_log(dir);
    let (seg, end) = tail_of(dir, &k);
    let mut bytes = fs::read(&seg).unwrap();
    assert!(end + 100 < bytes.len(), "room after the last frame");
    // A frame header promising more bytes than were written.
    bytes[end..end + 4].copy_from_slice(&200u32.to_le_bytes());
    bytes[end + 4] = 2;
    bytes[end + 5..end + 60].fill(0xEE);
    fs::write(&seg, &bytes).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();

    let o = inspect(dir, &["verify", p(dir)]);
    assert_eq!(o.code, 3, "{}", o.stdout);
    assert!(o.stdout.contains("torn tail"), "{}", o.stdout);
    assert!(o.stdout.contains("TORN TAIL"), "{}", o.stdout);
    assert!(!o.stdout.contains("DAMAGED"), "{}", o.stdout);
    assert!(o.stdout.contains(&name), "{}", o.stdout);
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 3);
    let v = json(&o.stdout);
    assert_eq!(v["verdict"], "TORN TAIL");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["problems"][0]["class"], "TornTail");
    assert_eq!(v["problems"][0]["segment"], name.as_str());
    assert_eq!(v["problems"][0]["offset"], end);
    assert_eq!(v["entries"], k.entries);

    let o = inspect(dir, &["dump", p(dir), "--json"]);
    assert_eq!(o.code, 3, "a torn tail alone: {}", o.stderr);
    assert_eq!(json_lines(&o.stdout).len() as u64, k.entries);
    let last_err = o.stderr.lines().last().unwrap();
    assert!(
        last_err.contains("torn tail") && last_err.contains(&name),
        "{last_err}"
    );

    // Garbage instead: the same verdict.
    let mut bytes = fs::read(&seg).unwrap();
    let stop = (end + 5000).min(bytes.len());
    bytes[end..stop].fill(0x5A);
    fs::write(&seg, &bytes).unwrap();
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 3);
    assert_eq!(json(&o.stdout)["problems"][0]["class"], "TornTail");
    for cmd in ["stats", "replay", "diff"] {
        let a = run_id(A).to_string();
        let b = run_id(B).to_string();
        let args: Vec<&str> = match cmd {
            "stats" => vec![cmd, p(dir)],
            "replay" => vec![cmd, p(dir), "--run", &a],
            _ => vec![cmd, p(dir), "--run", &a, "--run", &b],
        };
        let o = inspect(dir, &args);
        assert_eq!(o.code, 3, "{cmd}: {}", o.stderr);
        assert!(
            o.stderr.lines().last().unwrap().contains("TORN TAIL"),
            "{cmd}: {}",
            o.stderr
        );
    }

    // Truncated in the middle of the last frame: a segment shorter than its
    // header page cannot be mapped, so cut a frame in half instead.
    let &(_, seq, off, len) = k.frames.last().unwrap();
    let seg = dir.join(format!("{seq:020}.wal"));
    let mut bytes = fs::read(&seg).unwrap();
    bytes[off + len / 2..].fill(0);
    fs::write(&seg, &bytes).unwrap();
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 3, "{}", o.stdout);
    assert_eq!(json(&o.stdout)["entries"], k.entries - 1);
}

#[test]
fn an_unreadable_first_segment_is_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build_log(dir);
    let seg = dir.join("00000000000000000000.wal");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[..64].fill(0x33);
    fs::write(&seg, &bytes).unwrap();
    let o = inspect(dir, &["verify", p(dir), "--json"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    let v = json(&o.stdout);
    assert_eq!(v["problems"][0]["segment"], "00000000000000000000.wal");
    let o = inspect(dir, &["dump", p(dir)]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("00000000000000000000.wal"),
        "{}",
        o.stderr
    );
    let o = inspect(dir, &["stats", p(dir)]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
}

#[test]
fn invalid_inputs_are_a_one_line_error_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    build_log(&log);
    let missing = tmp.path().join("missing");
    let file = tmp.path().join("file");
    fs::write(&file, b"not a log").unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let a = run_id(A).to_string();
    let b = run_id(B).to_string();

    let cases: Vec<(Vec<String>, &str)> = {
        let mut v = Vec::new();
        for (dir, why) in [
            (&missing, "no such directory"),
            (&file, "not a directory"),
            (&empty, "not a log"),
        ] {
            let d = dir.to_str().unwrap().to_string();
            for args in [
                vec!["verify".to_string(), d.clone()],
                vec!["dump".into(), d.clone()],
                vec!["stats".into(), d.clone(), "--json".into()],
                vec!["replay".into(), d.clone(), "--run".into(), a.clone()],
                vec![
                    "diff".into(),
                    d.clone(),
                    "--run".into(),
                    a.clone(),
                    "--run".into(),
                    b.clone(),
                ],
            ] {
                v.push((args, why));
            }
        }
        let l = log.to_str().unwrap().to_string();
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        v.push((s(&["replay", &l, "--run", "not-a-uuid"]), "invalid run id"));
        v.push((s(&["dump", &l, "--run", "1234"]), "invalid run id"));
        v.push((
            s(&["diff", &l, "--run", &a, "--run", "zz"]),
            "invalid run id",
        ));
        v.push((s(&["diff", &l, "--run", &a]), "exactly two runs"));
        v.push((s(&["dump", &l, "--from", "abc"]), "invalid LSN"));
        v.push((s(&["dump", &l, "--from", "-5"]), "invalid LSN"));
        v.push((s(&["dump", &l, "--from", "1"]), "invalid LSN"));
        v.push((s(&["dump", &l, "--from", "99999999999"]), "invalid LSN"));
        v
    };
    for (args, why) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = log.exists().then(|| snapshot_files(&log));
        let o = walctl(&args);
        assert_eq!(o.code, 2, "walctl {args:?}: {}{}", o.stdout, o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "walctl {args:?}: {}", o.stderr);
        assert!(o.stderr.contains(why), "walctl {args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "walctl {args:?}: {}", o.stdout);
        assert_eq!(before, log.exists().then(|| snapshot_files(&log)));
    }
    assert!(
        fs::read_dir(&empty).unwrap().next().is_none(),
        "nothing created"
    );
    assert!(!missing.exists(), "nothing created");

    // clap's own usage errors: exit 2 as well.
    for args in [
        &["frobnicate"][..],
        &["verify"],
        &["replay", log.to_str().unwrap()],
        &["bench", "--mode", "fast"],
        &["bench", "--threads", "0"],
        &[],
    ] {
        let o = walctl(args);
        assert_eq!(o.code, 2, "walctl {args:?}: {}", o.stderr);
    }
    assert_eq!(walctl(&["--help"]).code, 0);
}

#[test]
fn inspection_works_while_another_writer_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    build_log(&dir);
    let wal =
        Arc::new(Wal::open(&dir, cfg().sync_mode(SyncMode::Async { interval_ms: 5 })).unwrap());
    // The writer appends until every inspection command has run.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let wal = Arc::clone(&wal);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while i < 200 || !stop.load(Ordering::Relaxed) {
                wal.append_txn(
                    run_id(0xD4),
                    i,
                    &[Op::Write {
                        key: b"live",
                        value: &[b'v'; 200],
                        version: i,
                    }],
                )
                .unwrap();
                i += 1;
            }
            i
        })
    };
    while wal.stats().appends < 100 {
        std::thread::yield_now();
    }
    for args in [
        vec!["verify", p(&dir), "--json"],
        vec!["stats", p(&dir), "--json"],
        vec!["dump", p(&dir), "--json"],
        vec!["verify", p(&dir)],
    ] {
        let o = walctl(&args);
        assert!(o.code == 0 || o.code == 1, "walctl {args:?}: {}", o.stderr);
        if o.code == 1 {
            // Only a frame caught half-written at the very end.
            assert!(
                o.stdout.contains("TornTail")
                    || o.stderr.contains("torn tail")
                    || o.stdout.contains("torn tail"),
                "walctl {args:?}: {}{}",
                o.stdout,
                o.stderr
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let appended = writer.join().unwrap();
    drop(wal);
    let o = walctl(&["verify", p(&dir), "--json"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(json(&o.stdout)["committed_txns"], 302 + appended);
}

#[test]
fn bench_json_has_exactly_the_documented_keys() {
    let o = walctl(&["bench", "--txns", "2000", "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = json(&o.stdout);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "mode",
        "threads",
        "txns",
        "entries",
        "bytes",
        "append_entries_per_s",
        "commits_per_s",
        "commit_p50_us",
        "commit_p99_us",
        "replay_bytes_per_s",
        "replay_entries_per_s",
        "recovery_s",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(v["mode"], "async");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["txns"], 2000);
    assert_eq!(v["entries"], 2000 * 6);
    assert!(v["bytes"].as_u64().unwrap() > 2000 * 6 * 50);
    for k in [
        "append_entries_per_s",
        "commits_per_s",
        "replay_bytes_per_s",
        "recovery_s",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    assert!(v["commit_p99_us"].as_f64().unwrap() >= v["commit_p50_us"].as_f64().unwrap());

    // With --dir the log stays, and is a valid log.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench-log");
    let o = walctl(&[
        "bench",
        "--dir",
        p(&dir),
        "--mode",
        "strict",
        "--threads",
        "2",
        "--txns",
        "100",
        "--writes-per-txn",
        "2",
        "--segment-size",
        "65536",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("mode strict"), "{}", o.stdout);
    let o = walctl(&["verify", p(&dir), "--json"]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    let v = json(&o.stdout);
    assert_eq!(v["committed_txns"], 100);
    assert_eq!(v["entries"], 400);
    // It refuses a directory that already holds something.
    let o = walctl(&["bench", "--dir", p(&dir), "--txns", "10"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("not empty"), "{}", o.stderr);
}

#[test]
fn demo_completes_and_leaves_a_clean_log() {
    let tmp = tempfile::tempdir().unwrap();
    // The default directory, ./walctl-demo, is recreated on each run.
    let dir = tmp.path().join("walctl-demo");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("00000000000000000007.wal"), b"stale").unwrap();
    let out = Command::cargo_bin("walctl")
        .unwrap()
        .current_dir(tmp.path())
        .args(["demo", "--steps", "40"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for want in [
        "[1/6]",
        "SIGKILL",
        "every acknowledged commit survived",
        "[4/6] replay run",
        "keys differ",
        "OK:",
        "summary:",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(!dir.join("00000000000000000007.wal").exists());
    let o = walctl(&["verify", p(&dir)]);
    assert_eq!(o.code, 0, "{}", o.stdout);

    // It will not delete a directory holding anything but a log.
    let other = tmp.path().join("precious");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), b"keep me").unwrap();
    let o = walctl(&["demo", "--dir", p(&other)]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(other.join("notes.txt").exists());
}

/// A log written by a replication layer: Raft entries carrying runs'
/// transactions, and a truncation. `verify`, `stats`, `dump` and `replay
/// --run` read it; no deleted entry is shown.
#[test]
fn raft_entries_and_truncations_are_inspected_like_any_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = run_id(0x5A);
    let mut cut = 0;
    {
        let wal = Wal::open(dir, cfg().sync_mode(SyncMode::Strict)).unwrap();
        for i in 1..=20u64 {
            let data = format!("[\"leader\",{i}]");
            let key = format!("k{i}");
            let pos = wal
                .append_batch(&[
                    BorrowedEntry::Raft {
                        index: i,
                        term: 1,
                        data: data.as_bytes(),
                    },
                    BorrowedEntry::BeginTxn {
                        txn_id: i,
                        run_id: run,
                        timestamp: 0,
                    },
                    Op::Write {
                        key: key.as_bytes(),
                        value: b"v",
                        version: i,
                    }
                    .entry(run),
                    BorrowedEntry::CommitTxn {
                        txn_id: i,
                        run_id: run,
                    },
                ])
                .unwrap();
            if i == 15 {
                cut = pos.first;
            }
        }
        wal.truncate_from(cut).unwrap();
    }
    let o = inspect(dir, &["verify", p(dir)]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let o = inspect(dir, &["stats", p(dir)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("Truncate 1, Raft 14"), "{}", o.stdout);
    let o = inspect(dir, &["dump", p(dir), "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines = json_lines(&o.stdout);
    let rafts: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "Raft")
        .map(|l| l["raft_index"].as_u64().unwrap())
        .collect();
    assert_eq!(rafts, (1..=14).collect::<Vec<_>>());
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "Truncate");
    assert_eq!(last["from"], cut);
    assert!(lines
        .iter()
        .all(|l| l["lsn"].as_u64().unwrap() < cut || l["type"] == "Truncate"));
    let o = inspect(dir, &["dump", p(dir)]);
    assert!(o.stdout.contains("index 3 term 1"), "{}", o.stdout);
    let o = inspect(
        dir,
        &["replay", p(dir), "--run", &run.to_string(), "--json"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let txns = json_lines(&o.stdout);
    assert_eq!(txns.len(), 14, "{}", o.stdout);
}
