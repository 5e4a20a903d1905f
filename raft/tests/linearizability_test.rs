//! `walnode` under faults, checked the way a user relies on it: three node
//! processes behind proxies that cut links ([`Partitions`]), concurrent
//! clients writing and reading a few keys, and a seeded nemesis that
//! isolates the leader, isolates a follower, bridges the cluster, pauses a
//! node (SIGSTOP) past an election and SIGKILLs nodes. Every operation is
//! recorded with its invocation and completion time; the history must be
//! linearizable ([`history::check`]), which also means no acknowledged
//! write was lost (the final reads see each key's last write). Afterwards
//! the healed nodes converge to equal states.
//!
//! Reads go both to the leader (the client follows it) and to a node
//! picked at random: a node that is not the leader, or a leader that
//! cannot confirm it still leads, must refuse rather than answer stale.
//!
//! Seeded: `WALNODE_FAULT_SEEDS=1,2,3` runs those seeds (default one seed),
//! `WALNODE_FAULT_SECS` sets each run's fault phase (default 20 s).
//! Every process the test starts, it stops.

#[path = "../../tests/common/rng.rs"]
mod rng;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durability::RunId;
use durability_raft::faults::{Loss, Partitions};
use durability_raft::history::{self, Action, Operation};
use durability_raft::node::{HttpClient, ProcCluster, ReadReply};
use durability_raft::types::{NodeId, RunTxn};
use parking_lot::Mutex;
use rng::Rng;

const EXE: &str = env!("CARGO_BIN_EXE_walnode");
const KEYS: u64 = 6;
const CLIENTS: u64 = 4;
const OP_TIMEOUT: Duration = Duration::from_millis(1500);

fn key_of(k: u64) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

fn value_of(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix('v'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a value no client wrote: {bytes:?}"))
}

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// What the clients share.
struct Shared {
    run: RunId,
    nodes: Vec<NodeId>,
    /// The next value (and transaction id) to write.
    next: AtomicU64,
    rec: Recorder,
    stop: AtomicBool,
}

/// One client: writes (unique values, each its own transaction id, so a
/// retry is recognised) and reads, recording each.
async fn client_loop(id: u64, seed: u64, client: HttpClient, shared: Arc<Shared>) {
    let Shared {
        run,
        ref nodes,
        ref next,
        ref rec,
        ref stop,
    } = *shared;
    let mut rng = Rng::new(seed * 1000 + id);
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(KEYS);
        let invoked = rec.now();
        let (action, completed) = match rng.below(3) {
            0 => {
                let v = next.fetch_add(1, Ordering::Relaxed);
                let txn = RunTxn::put(run, v, key_of(key), format!("v{v}"));
                match client.write(&txn, OP_TIMEOUT).await {
                    Ok(_) => (Action::Write(v), Some(rec.now())),
                    // It may have applied, or may still apply.
                    Err(_) => (Action::Write(v), None),
                }
            }
            1 => match client.read(run, &key_of(key), OP_TIMEOUT).await {
                Ok(v) => (Action::Read(v.map(|b| value_of(&b))), Some(rec.now())),
                Err(_) => continue,
            },
            _ => {
                let node = nodes[rng.below(nodes.len() as u64) as usize];
                match client.read_at(node, run, &key_of(key)).await {
                    Ok(ReadReply::Value { value }) => {
                        (Action::Read(value.map(|b| value_of(&b))), Some(rec.now()))
                    }
                    _ => {
                        // Refused or unreachable: nothing was read.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
            }
        };
        rec.ops.lock().push(Operation {
            client: id,
            key,
            action,
            invoked,
            completed,
        });
    }
}

/// The leader a quorum confirms, if any node names one now.
async fn leader(procs: &ProcCluster) -> Option<NodeId> {
    let client = procs.client();
    for id in procs.running() {
        if let Some(s) = client.status(id).await {
            if s.quorum == Some(true) {
                return Some(id);
            }
        }
    }
    None
}

async fn ms(rng: &mut Rng, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.range(lo, hi))).await;
}

/// The seeded nemesis: one fault at a time, each healed before the next.
async fn nemesis(seed: u64, secs: u64, procs: &mut ProcCluster, net: &Partitions) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut done = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let all: Vec<NodeId> = procs.peers().keys().copied().collect();
    while Instant::now() < end {
        ms(&mut rng, 300, 900).await;
        let target = match leader(procs).await {
            Some(l) if rng.chance(70) => l,
            _ => all[rng.below(all.len() as u64) as usize],
        };
        let loss = if rng.chance(50) {
            Loss::Drop
        } else {
            Loss::Refuse
        };
        match rng.below(5) {
            0 => {
                net.isolate(&[target], loss);
                done.push(format!("isolate {target} ({loss:?})"));
                ms(&mut rng, 1000, 3000).await;
                net.heal();
            }
            1 => {
                let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != target).collect();
                net.separate(others[0], others[1], loss);
                done.push(format!("bridge through {target} ({loss:?})"));
                ms(&mut rng, 1000, 3000).await;
                net.heal();
            }
            2 => {
                procs.pause(target);
                done.push(format!("pause {target}"));
                ms(&mut rng, 900, 2500).await;
                procs.resume(target);
            }
            3 => {
                procs.kill(target);
                done.push(format!("kill {target}"));
                ms(&mut rng, 200, 1500).await;
                procs.start(target).expect("restart a node");
            }
            _ => {
                // Isolate one node's answers only: it hears, but is not heard.
                for &o in all.iter().filter(|&&o| o != target) {
                    net.cut(target, o, loss);
                }
                done.push(format!("mute {target} ({loss:?})"));
                ms(&mut rng, 1000, 2500).await;
                net.heal();
            }
        }
    }
    done
}

/// Three nodes under `base`, each behind a proxy that can cut its links,
/// initialised; and their leader.
async fn start_behind_proxies(base: &std::path::Path) -> (ProcCluster, Partitions, NodeId) {
    let mut procs = ProcCluster::new(EXE, base, 3).unwrap();
    let net = Partitions::install(&mut procs).await.unwrap();
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    procs.client().init(1).await.unwrap();
    let leader = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    (procs, net, leader)
}

async fn one_run(seed: u64, secs: u64) {
    let base = tempfile::tempdir().unwrap();
    let (mut procs, net, _) = start_behind_proxies(base.path()).await;

    let run = RunId::from_bytes([0x5e; 16]);
    let nodes: Vec<NodeId> = procs.peers().keys().copied().collect();
    let shared = Arc::new(Shared {
        run,
        nodes: nodes.clone(),
        next: AtomicU64::new(1),
        rec: Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        },
        stop: AtomicBool::new(false),
    });
    let rec = &shared.rec;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        clients.spawn(client_loop(c, seed, procs.client(), Arc::clone(&shared)));
    }
    let faults = nemesis(seed, secs, &mut procs, &net).await;
    // Heal everything; let the clients run on a healthy cluster a moment.
    net.heal();
    for id in nodes.iter().copied() {
        procs.resume(id);
        if !procs.running().contains(&id) {
            procs.start(id).unwrap();
        }
    }
    let leader_id = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    shared.stop.store(true, Ordering::Relaxed);
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    // Final reads of every key, through the leader.
    let client = procs.client();
    for k in 0..KEYS {
        let invoked = rec.now();
        let v = client
            .read(run, &key_of(k), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: final read of k{k}: {e}"));
        rec.ops.lock().push(Operation {
            client: CLIENTS,
            key: k,
            action: Action::Read(v.map(|b| value_of(&b))),
            invoked,
            completed: Some(rec.now()),
        });
    }
    let ops = rec.ops.lock().clone();
    let writes = ops
        .iter()
        .filter(|o| matches!(o.action, Action::Write(_)))
        .count();
    let acked = ops
        .iter()
        .filter(|o| matches!(o.action, Action::Write(_)) && o.completed.is_some())
        .count();
    eprintln!(
        "seed {seed}: {} operations ({writes} writes, {acked} acknowledged), faults: {faults:?}",
        ops.len()
    );
    assert!(
        acked >= 20,
        "seed {seed}: too few writes acknowledged to test anything: {acked}"
    );
    if let Err(v) = history::check(&ops) {
        panic!("seed {seed}: faults {faults:?}\n{v}");
    }
    // The healed nodes converge: every node applies what the leader has.
    let index = client
        .status(leader_id)
        .await
        .and_then(|s| s.last_applied)
        .unwrap();
    procs
        .wait_applied(index, Duration::from_secs(30))
        .await
        .unwrap();
    let mut digests = Vec::new();
    for id in procs.running() {
        let s = client.status(id).await.unwrap();
        if s.last_applied == Some(index) {
            digests.push((id, s.digest));
        }
    }
    assert!(
        digests.windows(2).all(|w| w[0].1 == w[1].1),
        "seed {seed}: the state machines differ: {digests:?}"
    );
    drop(net);
    drop(procs);
}

fn seeds() -> Vec<u64> {
    std::env::var("WALNODE_FAULT_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_under_partitions_pauses_and_kills_is_linearizable() {
    let secs = std::env::var("WALNODE_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in seeds() {
        one_run(seed, secs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_the_token_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let mut procs = ProcCluster::new(EXE, base.path(), 1).unwrap();
    procs.start(1).unwrap();
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    let addr = procs.peers()[&1].clone();
    let http = durability_raft::node::http_client();
    for (path, post) in [
        ("/api/status", false),
        ("/api/init", true),
        ("/api/write", true),
        ("/raft/vote", true),
    ] {
        let url = format!("http://{addr}{path}");
        let req = if post {
            http.post(&url)
        } else {
            http.get(&url)
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} without a token");
        let req = if post {
            http.post(&url)
        } else {
            http.get(&url)
        };
        let resp = req
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} with a wrong token");
    }
    // A client with the wrong token is told so; with the right one it works.
    let wrong = HttpClient::new(procs.peers().clone())
        .with_token(Some(durability_raft::node::Token::random()));
    let e = wrong.init(1).await.unwrap_err();
    assert!(e.contains("token"), "{e}");
    assert!(wrong.status(1).await.is_none());
    procs.client().init(1).await.unwrap();
    let s = procs.client().status(1).await.unwrap();
    assert_eq!(s.id, 1);
    drop(procs);
}

/// What a follower's return from a partition costs. openraft 0.9 has no
/// pre-vote: an isolated follower's elections would raise its term, and
/// when it returned the leader would learn of that term and step down
/// (about 1.2 s without writes). A node campaigns only while it reaches a
/// quorum, so the isolated follower's term rises at most once (one
/// election timeout may expire before its guard notices the cut), and
/// writes resume. The longest gap between acknowledged writes of a
/// closed-loop writer is printed: the figure DESIGN.md §10 quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_a_follower_returns_from_a_partition() {
    let base = tempfile::tempdir().unwrap();
    let (procs, net, leader) = start_behind_proxies(base.path()).await;
    let client = procs.client();
    let term_before = client.status(leader).await.unwrap().term;
    let follower = procs.running().into_iter().find(|&i| i != leader).unwrap();
    let run = RunId::from_bytes([0x77; 16]);
    let mut n = 0;
    let mut write = || {
        n += 1;
        RunTxn::put(run, n, "k", format!("v{n}"))
    };
    net.isolate(&[follower], Loss::Refuse);
    // Long enough for several of its election timeouts (400-800 ms).
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        client
            .write(&write(), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let isolated_term = client.status(follower).await.unwrap().term;
    assert!(
        isolated_term <= term_before + 1,
        "the isolated follower campaigned: term {term_before} -> {isolated_term}"
    );
    net.heal();
    let healed = Instant::now();
    let mut last = Instant::now();
    let mut gap = Duration::ZERO;
    while healed.elapsed() < Duration::from_secs(4) {
        client
            .write(&write(), Duration::from_secs(30))
            .await
            .unwrap();
        gap = gap.max(last.elapsed());
        last = Instant::now();
    }
    let after = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    let term_after = client.status(after).await.unwrap().term;
    eprintln!(
        "follower {follower} isolated 3 s: its term {term_before} -> {isolated_term}, \
         the cluster's after the heal {term_after}, \
         longest gap between acknowledged writes after the heal: {gap:?}"
    );
    assert!(term_after >= term_before);
    drop(net);
    drop(procs);
}
