//! Writes the seed corpora of the fuzz targets:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds [OUT_DIR]
//! ```
//!
//! `OUT_DIR` defaults to `fuzz/corpus`; each target gets `OUT_DIR/<target>/`.
//! The committed corpora started from this output, were fuzzed, and were then
//! minimised with `cargo +nightly fuzz cmin <target>`.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use durability::format::frame::{encode_to_vec, ROOT_LEN};
use durability::{RunId, WalEntry};
use durability_fuzz::model::{ModelInput, ModelOp};
use durability_fuzz::recover::{self, Mutation, RecoverInput};
use durability_fuzz::{build_frame, FuzzEntry, RoundtripInput};
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

/// One entry of every kind, with empty and non-empty variable-length fields.
fn sample_entries() -> Vec<(&'static str, WalEntry)> {
    vec![
        (
            "begin",
            WalEntry::BeginTxn {
                txn_id: 7,
                run_id: run(1),
                timestamp: 1_700_000_000_000_000,
            },
        ),
        (
            "write",
            WalEntry::Write {
                run_id: run(1),
                key: b"user:42".to_vec(),
                value: b"{\"name\":\"ada\"}".to_vec(),
                version: 3,
            },
        ),
        (
            "write_empty",
            WalEntry::Write {
                run_id: run(2),
                key: Vec::new(),
                value: Vec::new(),
                version: 0,
            },
        ),
        (
            "delete",
            WalEntry::Delete {
                run_id: run(1),
                key: b"user:42".to_vec(),
                version: 4,
            },
        ),
        (
            "commit",
            WalEntry::CommitTxn {
                txn_id: 7,
                run_id: run(1),
            },
        ),
        (
            "abort",
            WalEntry::AbortTxn {
                txn_id: u64::MAX,
                run_id: run(3),
            },
        ),
        (
            "checkpoint_empty",
            WalEntry::Checkpoint {
                snapshot_id: Uuid::from_bytes([9; 16]),
                version: 10,
                active_runs: Vec::new(),
            },
        ),
        (
            "checkpoint",
            WalEntry::Checkpoint {
                snapshot_id: Uuid::from_bytes([9; 16]),
                version: 11,
                active_runs: vec![run(1), run(2), run(3)],
            },
        ),
    ]
}

fn encode(entry: &WalEntry, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_to_vec(&entry.as_borrowed(), seed, &mut out).unwrap();
    out
}

/// Splits a frame into its tag and payload.
fn tag_payload(frame: &[u8]) -> (u8, Vec<u8>) {
    (frame[4], frame[5..frame.len() - 4].to_vec())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

/// A small xorshift generator: the search below is deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn kind_index(e: &FuzzEntry) -> usize {
    match e {
        FuzzEntry::BeginTxn { .. } => 0,
        FuzzEntry::Write { .. } => 1,
        FuzzEntry::Delete { .. } => 2,
        FuzzEntry::CommitTxn { .. } => 3,
        FuzzEntry::AbortTxn { .. } => 4,
        FuzzEntry::Checkpoint { .. } => 5,
        FuzzEntry::Truncate { .. } => 6,
        FuzzEntry::Raft { .. } => 7,
    }
}

fn has_data(e: &FuzzEntry) -> bool {
    match e {
        FuzzEntry::Write { key, value, .. } => !key.is_empty() && !value.is_empty(),
        FuzzEntry::Delete { key, .. } => !key.is_empty(),
        FuzzEntry::Checkpoint { active_runs, .. } => !active_runs.is_empty(),
        _ => true,
    }
}

fn main() {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let entries = sample_entries();

    // decode_frame: [seed u32 LE][frames...]
    let dir = out.join("decode_frame");
    fs::create_dir_all(&dir).unwrap();
    for (name, entry) in &entries {
        let mut input = 0u32.to_le_bytes().to_vec();
        input.extend(encode(entry, 0));
        write(&dir, name, &input);
    }
    for seed in [0u32, 0xdead_beef] {
        let mut input = seed.to_le_bytes().to_vec();
        for (_, entry) in &entries {
            input.extend(encode(entry, seed));
        }
        input.extend([0; 7]);
        write(&dir, &format!("stream_{seed:08x}"), &input);
    }
    let write_frame = encode(&entries[1].1, 0);
    let with_seed = |frame: &[u8]| {
        let mut input = vec![0; 4];
        input.extend_from_slice(frame);
        input
    };
    let mut bad_crc = write_frame.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    write(&dir, "bad_crc", &with_seed(&bad_crc));
    write(
        &dir,
        "truncated",
        &with_seed(&write_frame[..write_frame.len() - 3]),
    );
    let mut too_large = write_frame.clone();
    too_large[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    write(&dir, "too_large", &with_seed(&too_large));
    let mut too_small = write_frame.clone();
    too_small[..4].copy_from_slice(&5u32.to_le_bytes());
    write(&dir, "too_small", &with_seed(&too_small));
    let (_, payload) = tag_payload(&write_frame);
    for (name, tag) in [("unknown_tag", 7u8), ("tag_mismatch", 3)] {
        let mut frame = Vec::new();
        build_frame(tag, &payload, 0, &mut frame);
        write(&dir, name, &with_seed(&frame));
    }
    let mut tail = with_seed(&encode(&entries[0].1, 0));
    tail.extend([0, 0, 1]);
    write(&dir, "nonzero_short_tail", &tail);
    write(&dir, "short", &[0, 0, 0]);

    // decode_payload: [tag][payload], framed by the target with a valid CRC.
    let dir = out.join("decode_payload");
    fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, tag: u8, payload: &[u8]| {
        let mut input = vec![tag];
        input.extend_from_slice(payload);
        write(&dir, name, &input);
    };
    for (name, entry) in &entries {
        let (tag, payload) = tag_payload(&encode(entry, 0));
        put(name, tag, &payload);
    }
    let (tag, payload) = tag_payload(&encode(&entries[0].1, 0));
    let mut padded = payload.clone();
    *padded.last_mut().unwrap() = 1;
    put("nonzero_root_padding", tag, &padded);
    put("wrong_tag", 2, &payload);
    put("bad_enum_tag", tag, &{
        let mut p = payload.clone();
        let root = p.len() - ROOT_LEN;
        p[root] = 9;
        p
    });
    let (tag, payload) = tag_payload(&encode(&entries[3].1, 0));
    let mut gap = vec![0xaa];
    gap.extend_from_slice(&payload);
    put("gap_before_data", tag, &gap);
    let mut long_key = payload.clone();
    let root = long_key.len() - ROOT_LEN;
    // The key's ArchivedVec (offset i32, len u32) follows the tag and run id.
    long_key[root + 21..root + 25].copy_from_slice(&0xffffu32.to_le_bytes());
    put("key_len_past_end", tag, &long_key);
    put("short_payload", tag, &payload[payload.len() - 20..]);

    // roundtrip: bytes that `RoundtripInput::arbitrary` turns into varied
    // entries, found by a deterministic random search: for each kind, an
    // input holding it with non-empty data, plus one holding every kind.
    let dir = out.join("roundtrip");
    fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut found = [false; 8];
    let mut found_all = false;
    for _ in 0..2_000_000 {
        if found.iter().all(|&f| f) && found_all {
            break;
        }
        let len = 16 + (rng.next() % 240) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let Ok(input) = RoundtripInput::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let mut kinds = [false; 8];
        for e in input.entries.iter().filter(|e| has_data(e)) {
            kinds[kind_index(e)] = true;
        }
        let n = input.entries.len();
        for k in 0..6 {
            if kinds[k] && !found[k] && (2..=4).contains(&n) {
                found[k] = true;
                write(&dir, &format!("kind{k}"), &bytes);
            }
        }
        if !found_all && kinds.iter().all(|&k| k) {
            found_all = true;
            write(&dir, "all_kinds", &bytes);
        }
    }
    write(&dir, "empty", &[]);
    println!(
        "wrote seeds under {} (roundtrip kinds found: {found:?}, all: {found_all})",
        out.display()
    );
    recover_dir_seeds(&out.join("recover_dir"), &mut rng);
    model_seeds(&out.join("model"), &mut rng);
}

fn random_bytes(rng: &mut Rng, min: usize, max: usize) -> Vec<u8> {
    let len = min + (rng.next() as usize) % (max - min);
    (0..len).map(|_| rng.next() as u8).collect()
}

fn mutation_kind(m: &Mutation) -> usize {
    match m {
        Mutation::Flip { .. } => 0,
        Mutation::Zero { .. } => 1,
        Mutation::ZeroSectors { .. } => 2,
        Mutation::Garbage { .. } => 3,
        Mutation::Write { .. } => 4,
        Mutation::Truncate { .. } => 5,
        Mutation::Extend { .. } => 6,
        Mutation::Remove { .. } => 7,
        Mutation::Rename { .. } => 8,
        Mutation::Duplicate { .. } => 9,
        Mutation::BlankHeader { .. } => 10,
        Mutation::Seal { .. } => 11,
        Mutation::Header { .. } => 12,
        Mutation::Forge { .. } => 13,
        Mutation::Raw { .. } => 14,
    }
}

/// `recover_dir`: inputs whose valid log spans at least two segments, one
/// undamaged, and for every kind of mutation one with that kind among at
/// most three mutations.
fn recover_dir_seeds(dir: &Path, rng: &mut Rng) {
    fs::create_dir_all(dir).unwrap();
    let mut found = [false; 15];
    let mut undamaged = 0;
    for _ in 0..2_000_000 {
        if found.iter().all(|&f| f) && undamaged >= 2 {
            break;
        }
        let bytes = random_bytes(rng, 32, 400);
        let Ok(input) = RecoverInput::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let built = recover::build(&input.log);
        let segments = built
            .files
            .iter()
            .filter(|f| f.origin.is_some() && f.bytes.iter().skip(4096).any(|&b| b != 0))
            .count();
        if segments < 2 || built.entries.len() < 20 {
            continue;
        }
        if input.mutations.is_empty() && undamaged < 2 {
            write(dir, &format!("undamaged{undamaged}"), &bytes);
            undamaged += 1;
        }
        if input.mutations.len() > 3 {
            continue;
        }
        for m in input.mutations.iter() {
            let k = mutation_kind(m);
            if !found[k] {
                found[k] = true;
                write(dir, &format!("mutation{k}"), &bytes);
            }
        }
    }
    println!("recover_dir: mutation kinds found {found:?}, undamaged {undamaged}");
}

fn op_kind(op: &ModelOp) -> usize {
    match op {
        ModelOp::Txn { .. } => 0,
        ModelOp::Single { .. } => 1,
        ModelOp::Aborted { .. } => 2,
        ModelOp::Begin { .. } => 3,
        ModelOp::End { .. } => 4,
        ModelOp::Big { .. } => 5,
        ModelOp::Sync => 6,
        ModelOp::Checkpoint { .. } => 7,
        ModelOp::Reopen => 8,
        ModelOp::Crash { .. } => 9,
        ModelOp::PowerCut { .. } => 10,
        ModelOp::Truncate { .. } => 11,
        ModelOp::Purge { .. } => 12,
        ModelOp::Raft { .. } => 13,
    }
}

/// `model`: inputs of 16 to 64 operations that append enough to rotate
/// (several transactions or large writes), for every kind of operation one
/// that holds it after the appends.
fn model_seeds(dir: &Path, rng: &mut Rng) {
    fs::create_dir_all(dir).unwrap();
    let mut found = [false; 14];
    for _ in 0..2_000_000 {
        if found.iter().all(|&f| f) {
            break;
        }
        let bytes = random_bytes(rng, 64, 600);
        let Ok(input) = ModelInput::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let n = input.ops.len();
        if !(16..=64).contains(&n) {
            continue;
        }
        let appends = input
            .ops
            .iter()
            .filter(|o| matches!(o, ModelOp::Txn { .. } | ModelOp::Big { .. }))
            .count();
        if appends < 6 {
            continue;
        }
        // The kind must come after half the ops, when the log has grown.
        for op in &input.ops[n / 2..] {
            let k = op_kind(op);
            if !found[k] {
                found[k] = true;
                write(dir, &format!("op{k}"), &bytes);
            }
        }
    }
    println!("model: op kinds found {found:?}");
}
