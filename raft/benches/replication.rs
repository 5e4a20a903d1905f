//! Replicated writes of a three-node in-process cluster (the in-memory
//! router), on our log (`LogStore`, Strict mode: every acknowledged entry
//! synced on a majority) beside the same cluster on `MemLogStore` (no
//! durability: the upper bound), in the same run.
//!
//! * Criterion group `replicated_write`: each iteration writes `inflight`
//!   transactions concurrently through the leader and waits until all are
//!   committed and applied; throughput is committed writes/s.
//! * Then a latency pass: single writes, one at a time, alternating between
//!   the two clusters in rounds; it prints p50 and p99 commit latency and
//!   the fraction of the in-memory figures our log keeps, and writes them
//!   to `target/criterion/replication_latency.json`.
//!
//! `cargo bench -p durability-raft --bench replication`

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use durability::{Config, SyncMode};
use durability_raft::cluster::{Client, Cluster, ClusterOptions, OpenLogError};
use durability_raft::log_store::LogStore;
use durability_raft::mem_log::MemLogStore;
use durability_raft::scenarios::{seeded_run, txn};
use durability_raft::types::{NodeId, TypeConfig};
use openraft::storage::RaftLogStorage;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// A running cluster and what the bench needs of it.
struct Bench {
    name: &'static str,
    client: Client,
    run: durability::RunId,
    next: AtomicU64,
    shutdown: Box<dyn FnOnce(&Runtime)>,
    _dir: tempfile::TempDir,
}

fn start<LS, F>(rt: &Runtime, name: &'static str, durable: bool, open_log: F, seed: u64) -> Bench
where
    LS: RaftLogStorage<TypeConfig>,
    F: Fn(&Path, NodeId) -> Result<LS, OpenLogError> + Send + Sync + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = rt
        .block_on(Cluster::start(
            ClusterOptions::new(durable),
            dir.path(),
            open_log,
        ))
        .expect("cluster start");
    let client = cluster.client();
    Bench {
        name,
        client,
        run: seeded_run(0xbe, seed),
        next: AtomicU64::new(0),
        shutdown: Box::new(move |rt: &Runtime| {
            rt.block_on(cluster.shutdown_all())
                .expect("cluster shutdown");
        }),
        _dir: dir,
    }
}

async fn write_n(b: &Bench, n: u64) {
    let first = b.next.fetch_add(n, Ordering::Relaxed);
    let mut writes = JoinSet::new();
    for i in first..first + n {
        let client = b.client.clone();
        let run = b.run;
        writes.spawn(async move { client.write(txn(run, i)).await });
    }
    while let Some(res) = writes.join_next().await {
        res.expect("write task").expect("write");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn replication(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let benches = [
        start(
            &rt,
            "mem_log",
            false,
            |_dir, _id| Ok(MemLogStore::<TypeConfig>::new()),
            0,
        ),
        start(
            &rt,
            "durability_log",
            true,
            |dir, _id| {
                let config = Config::default()
                    .segment_size(16 << 20)
                    .sync_mode(SyncMode::Strict);
                Ok(LogStore::<TypeConfig>::open(dir, config)?)
            },
            1,
        ),
    ];

    let mut group = c.benchmark_group("replicated_write");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for inflight in [1u64, 64] {
        group.throughput(Throughput::Elements(inflight));
        for b in &benches {
            group.bench_with_input(
                BenchmarkId::new(b.name, inflight),
                &inflight,
                |bench, &n| bench.to_async(&rt).iter(|| write_n(b, n)),
            );
        }
    }
    group.finish();

    // The latency pass, alternating between the clusters so both see the
    // same machine. Short under `cargo bench -- --test`.
    let quick = std::env::args().any(|a| a == "--test");
    let (rounds, per_round) = if quick { (1, 20) } else { (5, 400) };
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); benches.len()];
    for _ in 0..rounds {
        for (b, l) in benches.iter().zip(&mut lat) {
            rt.block_on(async {
                for _ in 0..per_round {
                    let t = Instant::now();
                    write_n(b, 1).await;
                    l.push(t.elapsed());
                }
            });
        }
    }
    let mut rows = Vec::new();
    for (b, l) in benches.iter().zip(&mut lat) {
        l.sort_unstable();
        rows.push((b.name, percentile(l, 0.5), percentile(l, 0.99), l.len()));
    }
    println!("\nreplicated commit latency, one write at a time (3 nodes, in-process router):");
    for (name, p50, p99, n) in &rows {
        println!("  {name:<16} p50 {p50:>10.1?}  p99 {p99:>10.1?}  ({n} writes)");
    }
    let (m50, m99) = (rows[0].1.as_secs_f64(), rows[0].2.as_secs_f64());
    let (d50, d99) = (rows[1].1.as_secs_f64(), rows[1].2.as_secs_f64());
    println!(
        "  durability_log keeps {:.0}% of mem_log's p50 rate and {:.0}% of its p99",
        100.0 * m50 / d50,
        100.0 * m99 / d99
    );
    let json = format!(
        "{{\"mem_log\":{{\"p50_us\":{:.1},\"p99_us\":{:.1}}},\"durability_log\":{{\"p50_us\":{:.1},\"p99_us\":{:.1}}},\"writes_each\":{}}}\n",
        m50 * 1e6,
        m99 * 1e6,
        d50 * 1e6,
        d99 * 1e6,
        rows[0].3
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("replication_latency.json"), json);
    }
    for b in benches {
        (b.shutdown)(&rt);
    }
}

criterion_group!(benches, replication);
criterion_main!(benches);
