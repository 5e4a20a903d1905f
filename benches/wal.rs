//! Criterion benchmarks: our log side by side with peer logs from the
//! package registry, the user's original design (`baseline.rs`) and the
//! machine's own limits (`limits.rs`), all in one run.
//!
//! Groups (ids are `group/function[/parameter]`):
//!
//! * `codec`: encode and decode of one W1 entry.
//! * `w1_append_100B`, `w1_append_4KiB`: one Write per append (16-byte key,
//!   100-byte or 4 KiB value), nothing synced inside the loop.
//! * `w2_commit`: BeginTxn + 4 Writes (100-byte values) + CommitTxn,
//!   durable when the call returns; parameter = threads (1 or 8).
//! * `w3_replay`: a full validated scan of a ~256 MiB log of W1 entries,
//!   full replay, and replay of 1 run of 100.
//! * `w4_recovery`: opening (recovering) that log.
//! * `limits`: pwrite+fdatasync, msync of a page, CRC-32C and memcpy.
//! * `paired`: the ratios the performance targets are stated in, each
//!   measured with both sides alternating inside every sample (see
//!   `paired.rs`): W1 against the original design, W2 with 8 threads
//!   against okaywal, W2 with 1 thread against raw `pwrite`+`fdatasync`.
//!
//! Every system gets the same entries: peers get the bytes our log writes
//! as each entry's payload (see `peers.rs`), the baseline the equivalent
//! serde entry. Logs live in a temporary directory under
//! `$DURABILITY_BENCH_DIR`, or else under cargo's target tmp directory
//! (the same filesystem as the target directory); it is removed at exit.
//!
//! Every append benchmark is bounded: the log it appends to is replaced by
//! a fresh one (outside the timed part) once it would pass
//! [`APPEND_BUDGET`] bytes, so disk use stays below that per system, and
//! the total written is bounded by the measurement time.
//!
//! Under `cargo bench -- --test` (each benchmark run once) the replay log
//! is 16 MiB instead of 256 MiB and the CPU-limit buffers are smaller, so
//! the whole binary runs in seconds.

mod baseline;
mod limits;
mod paired;
mod peers;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use durability::format::frame::{self, Decoder};
use durability::{BorrowedEntry, Config, Op, RunId, SyncMode, Wal, WalReader};

use baseline::{Baseline, BaselineEntry};
use peers::{CommitLogPeer, OkayWalPeer, WalrusPeer};

/// The most bytes one append benchmark lets its log grow to before it
/// starts a fresh one.
const APPEND_BUDGET: u64 = 1 << 30;

/// W1 and W2 key: 16 bytes.
const KEY: [u8; 16] = *b"agent/step/00001";

/// Our configuration for appends without syncing in the loop: a background
/// sync every 100 ms (Async), default (16 MiB) segments.
fn async_config() -> Config {
    Config::default().sync_mode(SyncMode::Async { interval_ms: 100 })
}

fn strict_config() -> Config {
    Config::default().sync_mode(SyncMode::Strict)
}

/// The payload our log writes for `entry` (its rkyv archive): the bytes
/// every peer is given for the same entry.
fn payload_of(entry: &BorrowedEntry<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::encode_to_vec(entry, 0, &mut buf).expect("encode");
    buf[frame::HEADER_LEN..buf.len() - 4].to_vec()
}

/// The baseline's equivalent of a Write.
fn baseline_write(run: RunId, key: &[u8], value: &[u8], version: u64) -> BaselineEntry {
    BaselineEntry::Write {
        run_id: *run.as_bytes(),
        key: key.to_vec(),
        value: value.to_vec(),
        version,
    }
}

/// Shared state of one bench process.
struct Env {
    /// Root of everything the benchmarks write; removed at exit.
    root: tempfile::TempDir,
    /// `--test`: every benchmark runs once; keep fixtures small.
    test_mode: bool,
}

impl Env {
    fn path(&self) -> &Path {
        self.root.path()
    }

    fn dir(&self, name: &str) -> PathBuf {
        let p = self.root.path().join(name);
        std::fs::create_dir_all(&p).expect("create bench dir");
        p
    }
}

/// A log an append benchmark appends to, replaced by a fresh one in a new
/// directory once it would grow past its budget.
struct Rotating<T> {
    base: PathBuf,
    prefix: String,
    open: Box<dyn FnMut(&Path) -> T>,
    cur: Option<(PathBuf, T)>,
    made: usize,
    written: u64,
    budget: u64,
}

impl<T> Rotating<T> {
    /// Logs `base/{prefix}-{n}`, opened by `open` in that (new) directory.
    fn new(base: &Path, prefix: &str, budget: u64, open: impl FnMut(&Path) -> T + 'static) -> Self {
        Rotating {
            base: base.to_path_buf(),
            prefix: prefix.to_string(),
            open: Box::new(open),
            cur: None,
            made: 0,
            written: 0,
            budget,
        }
    }

    /// The log to append `upcoming` more bytes to.
    fn get(&mut self, upcoming: u64) -> &mut T {
        if self.cur.is_some() && self.written + upcoming > self.budget {
            self.retire();
        }
        if self.cur.is_none() {
            let dir = self.base.join(format!("{}-{}", self.prefix, self.made));
            self.made += 1;
            std::fs::create_dir_all(&dir).expect("create log dir");
            let log = (self.open)(&dir);
            self.cur = Some((dir, log));
            self.written = 0;
        }
        self.written += upcoming;
        &mut self.cur.as_mut().expect("just opened").1
    }

    fn retire(&mut self) {
        if let Some((dir, log)) = self.cur.take() {
            drop(log);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl<T> Drop for Rotating<T> {
    fn drop(&mut self) {
        self.retire();
    }
}

/// Writes back every dirty page of the machine (`sync(2)`), so that a
/// benchmark does not pay for the writeback of what an earlier one (or a
/// fixture) left in the page cache: a durable commit waits behind such a
/// backlog, which made W2 right after W1 an order of magnitude slower than
/// the same commits on a quiet page cache. Called before every sample, not
/// timed.
pub fn quiesce() {
    rustix::fs::sync();
}

/// Runs `per_thread(thread, n)` on `threads` threads, splitting `iters`
/// between them, and returns the wall time from a common start (after every
/// thread is spawned and waiting) until the last one finishes. One thread:
/// runs inline.
fn run_parallel(threads: usize, iters: u64, per_thread: impl Fn(usize, u64) + Sync) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        per_thread(0, iters);
        return start.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for t in 0..threads {
            let n = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
            let (barrier, per_thread) = (&barrier, &per_thread);
            s.spawn(move || {
                barrier.wait();
                per_thread(t, n);
            });
        }
        barrier.wait();
        Instant::now()
    });
    start.elapsed()
}

// ---------------------------------------------------------------- codec

fn codec(c: &mut Criterion) {
    let run = RunId::from_bytes([7; 16]);
    let key = [1u8; 16];
    let value = [2u8; 100];
    let entry = BorrowedEntry::Write {
        run_id: run,
        key: &key,
        value: &value,
        version: 1,
    };
    let mut buf = vec![0u8; frame::frame_len(&entry)];
    let mut g = c.benchmark_group("codec");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_w1", |b| {
        b.iter(|| frame::encode_into(black_box(&entry), 0, &mut buf).unwrap())
    });
    frame::encode_into(&entry, 0, &mut buf).unwrap();
    let dec = Decoder::default();
    g.bench_function("decode_w1", |b| {
        b.iter(|| dec.decode(black_box(&buf), 0, 0).unwrap().unwrap().len)
    });
    g.finish();
}

// ------------------------------------------------------------ W1 append

/// W1: one Write per append, nothing synced inside the loop. okaywal: n/a
/// (it fsyncs every commit; it is in W2).
fn w1_append(c: &mut Criterion, env: &Env, value_len: usize) {
    let name = if value_len == 100 {
        "w1_append_100B".to_string()
    } else {
        format!("w1_append_{}KiB", value_len >> 10)
    };
    let run = RunId::from_bytes([7; 16]);
    let value = vec![0x5Au8; value_len];
    let entry = BorrowedEntry::Write {
        run_id: run,
        key: &KEY,
        value: &value,
        version: 1,
    };
    let frame_len = frame::frame_len(&entry) as u64;
    let payload = payload_of(&entry);
    let base_entry = baseline_write(run, &KEY, &value, 1);

    let mut g = c.benchmark_group(&name);
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    {
        let mut logs = Rotating::new(
            env.path(),
            &format!("{name}-durability"),
            APPEND_BUDGET,
            |d| Wal::open(d, async_config()).expect("open wal"),
        );
        g.bench_function("durability_async", |b| {
            quiesce();
            b.iter_custom(|iters| {
                let wal = logs.get(iters * frame_len);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(wal.append_entry(black_box(entry)).unwrap());
                }
                start.elapsed()
            })
        });
    }
    {
        let mut logs = Rotating::new(
            env.path(),
            &format!("{name}-baseline"),
            APPEND_BUDGET,
            |d| Baseline::create(&d.join("wal.log"), false).expect("create baseline"),
        );
        g.bench_function("baseline_bufwriter", |b| {
            quiesce();
            b.iter_custom(|iters| {
                let log = logs.get(iters * (base_entry.value_len() as u64 + 69));
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append(black_box(&base_entry)).unwrap());
                }
                start.elapsed()
            })
        });
    }
    {
        let mut logs = Rotating::new(
            env.path(),
            &format!("{name}-commitlog"),
            APPEND_BUDGET,
            |d| CommitLogPeer::open(d).expect("open commitlog"),
        );
        let per = payload.len() as u64 + 20;
        g.bench_function("commitlog_nosync", |b| {
            quiesce();
            b.iter_custom(|iters| {
                let log = logs.get(iters * per);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append(black_box(&payload)).unwrap());
                }
                start.elapsed()
            })
        });
    }
    {
        // walrus puts instance `key` in `$WALRUS_DATA_DIR/key`, which is
        // the directory the rotation made.
        let root = env.path().to_path_buf();
        let mut logs = Rotating::new(
            env.path(),
            &format!("{name}-walrus"),
            APPEND_BUDGET,
            move |d| {
                let key = d.file_name().expect("dir name").to_str().expect("utf-8");
                peers::walrus_open(&root, key, walrus_rust::FsyncSchedule::NoFsync)
                    .expect("open walrus")
            },
        );
        let per = payload.len() as u64 + 64;
        g.bench_function("walrus_nofsync", |b| {
            quiesce();
            b.iter_custom(|iters| {
                let log = logs.get(iters * per);
                let start = Instant::now();
                for _ in 0..iters {
                    log.append("w1", black_box(&payload)).unwrap();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

// ------------------------------------------------------- W2 durable commit

/// W2's four keys: [`KEY`] with its last byte `0`..`3`.
fn w2_keys() -> Vec<[u8; 16]> {
    (0..4u8)
        .map(|i| {
            let mut k = KEY;
            k[15] = b'0' + i;
            k
        })
        .collect()
}

/// W2's four Writes of `value`, one per key.
fn w2_ops<'a>(keys: &'a [[u8; 16]], value: &'a [u8]) -> Vec<Op<'a>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| Op::Write {
            key: k,
            value,
            version: i as u64,
        })
        .collect()
}

/// W2's runs: one per thread.
fn w2_runs() -> Vec<RunId> {
    (0..8u8).map(|t| RunId::from_bytes([t + 1; 16])).collect()
}

/// Each run's transaction (BeginTxn, `ops`, CommitTxn) as the payload bytes
/// our log writes for its six entries: what the peers are given.
fn w2_payloads(runs: &[RunId], ops: &[Op<'_>]) -> Vec<Vec<Vec<u8>>> {
    runs.iter()
        .map(|&run| {
            let mut v = vec![BorrowedEntry::BeginTxn {
                txn_id: 1,
                run_id: run,
                timestamp: 1_700_000_000_000_000,
            }];
            v.extend(ops.iter().map(|op| op.entry(run)));
            v.push(BorrowedEntry::CommitTxn {
                txn_id: 1,
                run_id: run,
            });
            v.iter().map(payload_of).collect()
        })
        .collect()
}

/// W2: a transaction (BeginTxn + 4 Writes of 100-byte values + CommitTxn),
/// durable when the call returns, from 1 and from 8 threads, each thread
/// committing its own run's transactions. commitlog: n/a (it cannot sync).
fn w2_commit(c: &mut Criterion, env: &Env) {
    let value = [0x5Au8; 100];
    let keys = w2_keys();
    let ops = w2_ops(&keys, &value);
    let runs = w2_runs();
    // The same six entries as bytes for the peers (thread t's run), and as
    // serde entries for the baseline.
    let payloads = w2_payloads(&runs, &ops);
    let base_txns: Vec<Vec<BaselineEntry>> = runs
        .iter()
        .map(|&r| {
            let run_id = *r.as_bytes();
            let mut v = vec![BaselineEntry::BeginTxn {
                txn_id: 1,
                run_id,
                timestamp: 1_700_000_000_000_000,
            }];
            v.extend(
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| baseline_write(r, k, &value, i as u64)),
            );
            v.push(BaselineEntry::CommitTxn { txn_id: 1, run_id });
            v
        })
        .collect();

    let mut g = c.benchmark_group("w2_commit");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    for threads in [1usize, 8] {
        {
            let wal = Arc::new(
                Wal::open(
                    env.dir(&format!("w2-durability-{threads}")),
                    strict_config(),
                )
                .expect("open wal"),
            );
            let txn_ids: Vec<std::sync::atomic::AtomicU64> =
                (0..threads).map(|_| Default::default()).collect();
            g.bench_function(BenchmarkId::new("durability_strict", threads), |b| {
                quiesce();
                b.iter_custom(|iters| {
                    run_parallel(threads, iters, |t, n| {
                        for _ in 0..n {
                            let id = txn_ids[t].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            black_box(wal.append_txn(runs[t], id, &ops).unwrap());
                        }
                    })
                })
            });
        }
        {
            // okaywal: one entry of six chunks per transaction; its commit
            // fsyncs (group commit across threads).
            let log = OkayWalPeer::open(&env.dir(&format!("w2-okaywal-{threads}")))
                .expect("open okaywal");
            let chunks: Vec<Vec<&[u8]>> = payloads
                .iter()
                .map(|p| p.iter().map(Vec::as_slice).collect())
                .collect();
            g.bench_function(BenchmarkId::new("okaywal_commit", threads), |b| {
                quiesce();
                b.iter_custom(|iters| {
                    run_parallel(threads, iters, |t, n| {
                        for _ in 0..n {
                            log.commit(&chunks[t]).unwrap();
                        }
                    })
                })
            });
            log.close().expect("close okaywal");
        }
        {
            // walrus: the six entries as one atomic batch, fsynced once
            // (`batch_append_for_topic`; with SyncEach a single append
            // fsyncs too, so six appends would be six fsyncs). One topic
            // per thread: walrus refuses a second concurrent batch on a
            // topic (WouldBlock).
            let log = peers::walrus_open(
                env.path(),
                &format!("w2-walrus-{threads}"),
                walrus_rust::FsyncSchedule::SyncEach,
            )
            .expect("open walrus");
            let topics: Vec<String> = (0..threads).map(|t| format!("run{t}")).collect();
            let batches: Vec<Vec<&[u8]>> = payloads
                .iter()
                .map(|p| p.iter().map(Vec::as_slice).collect())
                .collect();
            g.bench_function(BenchmarkId::new("walrus_sync_each", threads), |b| {
                quiesce();
                b.iter_custom(|iters| {
                    run_parallel(threads, iters, |t, n| {
                        for _ in 0..n {
                            log.append_batch(&topics[t], &batches[t]).unwrap();
                        }
                    })
                })
            });
        }
        {
            // The original design: a transaction is six appends and Strict
            // fsyncs after every append, as it was specified (no group
            // commit: threads share the one file behind a mutex).
            let dir = env.dir(&format!("w2-baseline-{threads}"));
            let log =
                Mutex::new(Baseline::create(&dir.join("wal.log"), true).expect("create baseline"));
            g.bench_function(
                BenchmarkId::new("baseline_fsync_per_append", threads),
                |b| {
                    quiesce();
                    b.iter_custom(|iters| {
                        run_parallel(threads, iters, |t, n| {
                            for _ in 0..n {
                                for e in &base_txns[t] {
                                    log.lock().unwrap().append(e).unwrap();
                                }
                            }
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

// ------------------------------------------------------------ paired

/// The ratios the targets are stated in, each side measured alternately
/// within every sample ([`paired::Samples`]).
fn paired_ratios(c: &mut Criterion, env: &Env) {
    let mut g = paired::group(c);
    g.throughput(Throughput::Elements(1));

    // W1: one 100-byte Write per append, ours (Async) vs the original
    // design (BufWriter + bincode), each into its own rotating log.
    {
        let run = RunId::from_bytes([7; 16]);
        let value = [0x5Au8; 100];
        let entry = BorrowedEntry::Write {
            run_id: run,
            key: &KEY,
            value: &value,
            version: 1,
        };
        let frame_len = frame::frame_len(&entry) as u64;
        let base_entry = baseline_write(run, &KEY, &value, 1);
        let mut ours = Rotating::new(env.path(), "paired-w1-ours", APPEND_BUDGET, |d| {
            Wal::open(d, async_config()).expect("open wal")
        });
        let mut base = Rotating::new(env.path(), "paired-w1-base", APPEND_BUDGET, |d| {
            Baseline::create(&d.join("wal.log"), false).expect("create baseline")
        });
        let samples = paired::Samples::default();
        g.bench_function("w1_append_100B_vs_original", |b| {
            quiesce();
            b.iter_custom(|iters| {
                samples.sample(
                    iters,
                    |n| {
                        let wal = ours.get(n * frame_len);
                        let start = Instant::now();
                        for _ in 0..n {
                            black_box(wal.append_entry(black_box(entry)).unwrap());
                        }
                        start.elapsed()
                    },
                    |n| {
                        let log = base.get(n * (base_entry.value_len() as u64 + 69));
                        let start = Instant::now();
                        for _ in 0..n {
                            black_box(log.append(black_box(&base_entry)).unwrap());
                        }
                        start.elapsed()
                    },
                )
            })
        });
        samples.report("w1_append_100B_vs_original", "original design");
    }

    // W2: the w2_commit transaction, durable on return.
    let value = [0x5Au8; 100];
    let keys = w2_keys();
    let ops = w2_ops(&keys, &value);
    let runs = w2_runs();
    let chunks = w2_payloads(&runs, &ops);
    let chunk_refs: Vec<Vec<&[u8]>> = chunks
        .iter()
        .map(|c| c.iter().map(Vec::as_slice).collect())
        .collect();
    {
        let threads = 8;
        let wal = Wal::open(env.dir("paired-w2-ours"), strict_config()).expect("open wal");
        let okay = OkayWalPeer::open(&env.dir("paired-w2-okaywal")).expect("open okaywal");
        let ids: Vec<std::sync::atomic::AtomicU64> =
            (0..threads).map(|_| Default::default()).collect();
        let samples = paired::Samples::default();
        g.bench_function("w2_commit_8_threads_vs_okaywal", |b| {
            quiesce();
            b.iter_custom(|iters| {
                samples.sample(
                    iters,
                    |n| {
                        run_parallel(threads, n, |t, k| {
                            for _ in 0..k {
                                let id = ids[t].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                black_box(wal.append_txn(runs[t], id, &ops).unwrap());
                            }
                        })
                    },
                    |n| {
                        run_parallel(threads, n, |t, k| {
                            for _ in 0..k {
                                okay.commit(&chunk_refs[t]).unwrap();
                            }
                        })
                    },
                )
            })
        });
        samples.report("w2_commit_8_threads_vs_okaywal", "okaywal");
        okay.close().expect("close okaywal");
    }
    {
        let wal = Wal::open(env.dir("paired-w2-1-ours"), strict_config()).expect("open wal");
        let mut raw = limits::SyncTarget::new(env.path().join("paired-raw.dat"), false);
        let page = [0xA5u8; 4096];
        let mut id = 0u64;
        let samples = paired::Samples::default();
        g.bench_function("w2_commit_1_thread_vs_raw_fdatasync", |b| {
            quiesce();
            b.iter_custom(|iters| {
                samples.sample(
                    iters,
                    |n| {
                        let start = Instant::now();
                        for _ in 0..n {
                            id += 1;
                            black_box(wal.append_txn(runs[0], id, &ops).unwrap());
                        }
                        start.elapsed()
                    },
                    |n| {
                        raw.prepare(n);
                        let start = Instant::now();
                        for _ in 0..n {
                            raw.write_sync(&page);
                        }
                        start.elapsed()
                    },
                )
            })
        });
        samples.report(
            "w2_commit_1_thread_vs_raw_fdatasync",
            "pwrite 4 KiB + fdatasync (fallocated file)",
        );
    }
    g.finish();
}

// ------------------------------------------------- W3 replay, W4 recovery

/// Runs of the replay log, and how they are laid out: 100 runs, each
/// writing batches of [`BATCH`] consecutive W1 Writes (one agent step's
/// writes), the runs taking turns batch by batch, as concurrent runs
/// interleave in a shared log. So one run's entries are 1% of the log, in
/// stretches of 64 entries (~10 KiB), which is what the run index lets
/// run-scoped replay jump between.
const RUNS: usize = 100;
const BATCH: usize = 64;
/// The run replayed alone.
const REPLAY_RUN: usize = 37;

fn fixture_run(i: usize) -> RunId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    b[8..].copy_from_slice(b"fixture!");
    RunId::from_bytes(b)
}

/// Bytes of every replay-log frame (16-byte key, 100-byte value).
const FIXTURE_FRAME: u64 = 166;

/// Entries in the replay log: ~256 MiB of frames (16 MiB under --test), a
/// whole number of rounds of the 100 runs' batches.
fn fixture_entries(test_mode: bool) -> usize {
    let target: u64 = if test_mode { 16 << 20 } else { 256 << 20 };
    let round = (RUNS * BATCH) as u64;
    ((target / FIXTURE_FRAME / round).max(1) * round) as usize
}

/// Throughput of reading the whole replay log (known without building it).
fn full_throughput(test_mode: bool) -> Throughput {
    let entries = fixture_entries(test_mode) as u64;
    Throughput::ElementsAndBytes {
        elements: entries,
        bytes: entries * FIXTURE_FRAME,
    }
}

/// Throughput of reading one run of the replay log.
fn run_throughput(test_mode: bool) -> Throughput {
    let entries = (fixture_entries(test_mode) / RUNS) as u64;
    Throughput::ElementsAndBytes {
        elements: entries,
        bytes: entries * FIXTURE_FRAME,
    }
}

/// The i-th entry of the replay log: its run, key and value.
fn fixture_entry(i: usize, value: &mut [u8; 100]) -> (RunId, [u8; 16]) {
    let run = fixture_run((i / BATCH) % RUNS);
    let mut key = KEY;
    key[8..].copy_from_slice(&(i as u64).to_le_bytes());
    value[..8].copy_from_slice(&(i as u64).to_le_bytes());
    (run, key)
}

/// The W3/W4 logs, one per system, built on first use with the same
/// entries.
struct Fixtures {
    entries: usize,
    ours_dir: PathBuf,
    /// Our log, still open from writing it (W3 reads through it; W4 closes
    /// it and reopens).
    ours: Option<Wal>,
    /// Bytes of our log (the sum of its frames).
    ours_bytes: u64,
    /// Entries of run REPLAY_RUN.
    run_entries: u64,
    commitlog: Option<CommitLogPeer>,
    commitlog_built: bool,
    commitlog_dir: PathBuf,
    walrus_built: bool,
    walrus_dir: PathBuf,
    baseline: Option<PathBuf>,
}

const WALRUS_W3_KEY: &str = "w3-walrus";

impl Fixtures {
    fn new(env: &Env) -> Fixtures {
        let entries = fixture_entries(env.test_mode);
        let ours_dir = env.path().join("w3-durability");
        let wal = Wal::open(&ours_dir, async_config()).expect("open fixture");
        let mut value = [0x5Au8; 100];
        let mut run_entries = 0;
        for i in 0..entries {
            let (run, key) = fixture_entry(i, &mut value);
            let e = BorrowedEntry::Write {
                run_id: run,
                key: &key,
                value: &value,
                version: i as u64,
            };
            assert_eq!(frame::frame_len(&e) as u64, FIXTURE_FRAME);
            wal.append_entry(e).expect("append fixture");
            if run == fixture_run(REPLAY_RUN) {
                run_entries += 1;
            }
        }
        wal.sync().expect("sync fixture");
        let ours_bytes = wal.size();
        assert_eq!(ours_bytes, entries as u64 * FIXTURE_FRAME);
        assert_eq!(run_entries, (entries / RUNS) as u64);
        Fixtures {
            entries,
            ours_dir,
            ours: Some(wal),
            ours_bytes,
            run_entries,
            commitlog: None,
            commitlog_built: false,
            commitlog_dir: env.path().join("w3-commitlog"),
            walrus_built: false,
            walrus_dir: env.path().join(WALRUS_W3_KEY),
            baseline: None,
        }
    }

    /// Feeds every entry's payload bytes to `f`.
    fn for_each_payload(&self, mut f: impl FnMut(&[u8])) {
        let mut value = [0x5Au8; 100];
        let mut buf = Vec::with_capacity(256);
        for i in 0..self.entries {
            let (run, key) = fixture_entry(i, &mut value);
            let e = BorrowedEntry::Write {
                run_id: run,
                key: &key,
                value: &value,
                version: i as u64,
            };
            buf.clear();
            frame::encode_to_vec(&e, 0, &mut buf).expect("encode");
            f(&buf[frame::HEADER_LEN..buf.len() - 4]);
        }
    }

    /// The commitlog log, built on first use and kept open until W4.
    fn commitlog(&mut self) -> &mut CommitLogPeer {
        if !self.commitlog_built {
            let mut log = CommitLogPeer::open(&self.commitlog_dir).expect("open commitlog");
            self.for_each_payload(|p| {
                log.append(p).expect("append commitlog");
            });
            self.commitlog = Some(log);
            self.commitlog_built = true;
        }
        if self.commitlog.is_none() {
            self.commitlog = Some(CommitLogPeer::open(&self.commitlog_dir).expect("reopen"));
        }
        self.commitlog.as_mut().expect("built")
    }

    fn walrus(&mut self, root: &Path) -> &Path {
        if !self.walrus_built {
            let log = peers::walrus_open(root, WALRUS_W3_KEY, walrus_rust::FsyncSchedule::NoFsync)
                .expect("open walrus");
            self.for_each_payload(|p| log.append("w3", p).expect("append walrus"));
            drop(log);
            self.walrus_built = true;
        }
        &self.walrus_dir
    }

    fn baseline(&mut self, root: &Path) -> &Path {
        if self.baseline.is_none() {
            let path = root.join("w3-baseline.log");
            let mut log = Baseline::create(&path, false).expect("create baseline");
            let mut value = [0x5Au8; 100];
            for i in 0..self.entries {
                let (run, key) = fixture_entry(i, &mut value);
                log.append(&baseline_write(run, &key, &value, i as u64))
                    .expect("append baseline");
            }
            log.close().expect("close baseline");
            self.baseline = Some(path);
        }
        self.baseline.as_deref().expect("built")
    }
}

/// W3: a full validated scan and replays of the ~256 MiB log. Throughput
/// counts entries and, for every system, the bytes of *our* log of those
/// entries (the peers' own files are larger: commitlog adds 20 bytes of
/// header per entry to our 9, walrus 64), so GB/s compares like with like.
/// Run-scoped replay: n/a for the peers (no run index; a peer would read
/// everything).
fn w3_replay(c: &mut Criterion, env: &Env, fx: &mut Option<Fixtures>) {
    let mut g = c.benchmark_group("w3_replay");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(full_throughput(env.test_mode));

    g.bench_function("durability_iter", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let wal = f.ours.as_ref().expect("open");
        quiesce();
        b.iter(|| {
            let snap = wal.snapshot();
            let mut n = 0u64;
            let mut v = 0usize;
            for e in snap.iter() {
                let e = e.unwrap();
                n += 1;
                v += e.entry.value().map_or(0, <[u8]>::len);
            }
            black_box((n, v))
        })
    });
    g.bench_function("durability_replay", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let wal = f.ours.as_ref().expect("open");
        quiesce();
        b.iter(|| {
            let mut ops = 0usize;
            let stats = wal.replay(|txn| ops += txn.ops.len()).unwrap();
            black_box((stats, ops))
        })
    });
    g.throughput(run_throughput(env.test_mode));
    g.bench_function("durability_replay_run_1_of_100", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let wal = f.ours.as_ref().expect("open");
        let run = fixture_run(REPLAY_RUN);
        let expect = f.run_entries;
        quiesce();
        b.iter(|| {
            let mut ops = 0u64;
            let stats = wal
                .replay_run(run, |txn| ops += txn.ops.len() as u64)
                .unwrap();
            assert_eq!(ops, expect);
            black_box(stats)
        })
    });
    g.throughput(full_throughput(env.test_mode));
    g.bench_function("commitlog_read", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let entries = f.entries as u64;
        let log = f.commitlog();
        quiesce();
        b.iter(|| {
            let (n, bytes) = log.read_all().unwrap();
            assert_eq!(n, entries);
            black_box(bytes)
        })
    });
    g.bench_function("walrus_read", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let entries = f.entries as u64;
        let dir = f.walrus(env.path()).to_path_buf();
        // Reading consumes, so every read is by a new instance (opened
        // outside the timed part) that starts from the beginning.
        quiesce();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                WalrusPeer::forget_read_position(&dir);
                let log = peers::walrus_open(
                    env.path(),
                    WALRUS_W3_KEY,
                    walrus_rust::FsyncSchedule::NoFsync,
                )
                .unwrap();
                let start = Instant::now();
                let (n, bytes) = log.read_all("w3").unwrap();
                total += start.elapsed();
                assert_eq!(n, entries);
                black_box(bytes);
            }
            total
        })
    });
    g.bench_function("baseline_read", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let entries = f.entries as u64;
        let path = f.baseline(env.path()).to_path_buf();
        quiesce();
        b.iter(|| {
            let stats = baseline::read_all(&path, |e| {
                black_box(e);
            })
            .unwrap();
            assert_eq!(stats.entries, entries);
            black_box(stats)
        })
    });
    g.finish();
}

/// W4: opening the W3 log, a fresh handle every time (closing it is not
/// timed). For the baseline, recovery is the full read that finds the
/// valid end. okaywal: n/a (no such log).
fn w4_recovery(c: &mut Criterion, env: &Env, fx: &mut Option<Fixtures>) {
    let mut g = c.benchmark_group("w4_recovery");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(full_throughput(env.test_mode));

    g.bench_function("durability_wal_open", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        if let Some(wal) = f.ours.take() {
            wal.close().expect("close fixture");
        }
        let entries = f.entries as u64;
        quiesce();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let wal = Wal::open(&f.ours_dir, async_config()).unwrap();
                total += start.elapsed();
                assert_eq!(wal.size(), f.ours_bytes);
                drop(wal);
            }
            let _ = entries;
            total
        })
    });
    g.bench_function("durability_walreader_open", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        if let Some(wal) = f.ours.take() {
            wal.close().expect("close fixture");
        }
        let config = async_config();
        quiesce();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let r = WalReader::open(&f.ours_dir, &config).unwrap();
                total += start.elapsed();
                assert_eq!(r.snapshot().len_bytes(), f.ours_bytes);
                drop(r);
            }
            total
        })
    });
    g.bench_function("commitlog_open", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        // Build it if W3 did not, and close the instance that wrote it.
        f.commitlog();
        f.commitlog = None;
        let dir = f.commitlog_dir.clone();
        let next = f.entries as u64;
        quiesce();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = peers::commitlog_reopen(&dir).unwrap();
                total += start.elapsed();
                assert_eq!(log.next_offset(), next);
                drop(log);
            }
            total
        })
    });
    g.bench_function("walrus_open", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        f.walrus(env.path());
        quiesce();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = peers::walrus_open(
                    env.path(),
                    WALRUS_W3_KEY,
                    walrus_rust::FsyncSchedule::NoFsync,
                )
                .unwrap();
                total += start.elapsed();
                drop(log);
            }
            total
        })
    });
    g.bench_function("baseline_open_scan", |b| {
        let f = fx.get_or_insert_with(|| Fixtures::new(env));
        let entries = f.entries as u64;
        let path = f.baseline(env.path()).to_path_buf();
        quiesce();
        b.iter(|| {
            let stats = baseline::read_all(&path, |e| {
                black_box(e);
            })
            .unwrap();
            assert_eq!(stats.entries, entries);
            black_box(stats.end)
        })
    });
    g.finish();
}

fn bench_root() -> tempfile::TempDir {
    let base = std::env::var_os("DURABILITY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("create bench base dir");
    tempfile::Builder::new()
        .prefix("wal-bench-")
        .tempdir_in(&base)
        .expect("create bench dir")
}

fn main() {
    let root = bench_root();
    // walrus reads both when an instance is made; set them while this is
    // the only thread (see peers.rs).
    std::env::set_var("WALRUS_QUIET", "1");
    std::env::set_var("WALRUS_DATA_DIR", root.path());
    // Criterion runs every benchmark once, as a test, under `--test` and
    // also whenever `--bench` is missing (`cargo test --benches`).
    let args: Vec<String> = std::env::args().collect();
    let test_mode = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let env = Env { root, test_mode };
    let mut c = Criterion::default().configure_from_args();
    codec(&mut c);
    w1_append(&mut c, &env, 100);
    w1_append(&mut c, &env, 4096);
    w2_commit(&mut c, &env);
    paired_ratios(&mut c, &env);
    let mut fixtures = None;
    w3_replay(&mut c, &env, &mut fixtures);
    w4_recovery(&mut c, &env, &mut fixtures);
    drop(fixtures);
    let big = if env.test_mode { 16 << 20 } else { 256 << 20 };
    limits::limits(&mut c, env.path(), big);
    c.final_summary();
}
