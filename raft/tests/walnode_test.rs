//! `walnode`, run for real: three node processes over loopback HTTP, with
//! seeded kills of the leader, of a follower, and of all three; every
//! acknowledged transaction is on every node afterwards and the state
//! machines are equal. A paused old leader never answers a stale read, and
//! a late retry of a write is not applied twice.
//! Plus the clear errors: a bad peer list, a port in
//! use, a directory another node holds. Every process the test starts, it
//! stops (`ProcCluster` kills its children on drop).

#[path = "../../tests/common/rng.rs"]
mod rng;

use rng::Rng;
use std::process::Command;
use std::time::Duration;

use durability::RunId;
use durability_raft::node::{demo_txn, HttpClient, ProcCluster, ReadReply, ReadRequest, TOKEN_ENV};
use durability_raft::types::{NodeId, RunTxn, TxnOp};

const EXE: &str = env!("CARGO_BIN_EXE_walnode");

async fn write(procs: &ProcCluster, run: RunId, range: std::ops::Range<u64>, acked: &mut Vec<u64>) {
    let client = procs.client();
    for i in range {
        client
            .write(&demo_txn(run, i), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        acked.push(i);
    }
}

async fn check(procs: &ProcCluster, run: RunId, acked: &[u64], what: &str) {
    let client = procs.client();
    let leader = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    let index = client.status(leader).await.unwrap().last_applied.unwrap();
    procs
        .wait_applied(index, Duration::from_secs(30))
        .await
        .unwrap();
    // Each transaction's BeginTxn carries the time its leader accepted it,
    // the same on every node.
    let mut stamped: std::collections::BTreeMap<u64, u64> = Default::default();
    for id in procs.running() {
        for &i in acked {
            let TxnOp::Put { key, value } = &demo_txn(run, i).ops[0] else {
                unreachable!()
            };
            let got = client.read_local(id, run, key).await.unwrap();
            assert_eq!(
                got.as_ref(),
                Some(value),
                "{what}: node {id} lost write {i}"
            );
        }
        let replayed = client.replay(id, run).await.unwrap();
        if !replayed.purged {
            assert!(
                replayed.txns.len() >= acked.len(),
                "{what}: node {id}'s log replays {} txns",
                replayed.txns.len()
            );
        }
        // Never a silent hole: the ids replayed are one stretch, from
        // the purge point if the log was purged.
        for t in &replayed.txns {
            let (Some(txn), Some(at)) = (t.txn_id, t.timestamp) else {
                panic!("{what}: node {id} replays an unstamped transaction: {t:?}");
            };
            let first = *stamped.entry(txn).or_insert(at);
            assert_eq!(first, at, "{what}: node {id} stamps txn {txn} differently");
        }
        let ids: Vec<u64> = replayed.txns.iter().filter_map(|t| t.txn_id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert!(
            sorted.windows(2).all(|w| w[1] == w[0] + 1),
            "{what}: node {id}'s log replays run {run} with a hole: {sorted:?}"
        );
        if let (Some(&last), false) = (sorted.last(), replayed.purged) {
            assert_eq!(sorted[0], 0, "{what}: node {id} replays from {}", sorted[0]);
            assert!(last >= *acked.iter().max().unwrap());
        }
    }
    let mut digests = Vec::new();
    for id in procs.running() {
        digests.push(client.status(id).await.unwrap().digest);
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "{what}: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_killed_at_seeded_moments_lose_nothing_acknowledged() {
    let base = tempfile::tempdir().unwrap();
    let mut procs = ProcCluster::new(EXE, base.path(), 3).unwrap();
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    procs.client().init(1).await.unwrap();
    let run = RunId::from_bytes([0x3a; 16]);
    let mut rng = Rng::new(0x5EED_0013);
    let mut acked = Vec::new();
    let mut next = 0;
    let mut step = |n: u64| {
        let r = next..next + n;
        next += n;
        r
    };

    // 1. The leader, after a seeded number of writes.
    write(&procs, run, step(10 + rng.below(30)), &mut acked).await;
    let leader = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    procs.kill(leader);
    write(&procs, run, step(10 + rng.below(30)), &mut acked).await;
    procs.start(leader).unwrap();
    check(&procs, run, &acked, "after the leader's kill").await;

    // 2. A follower.
    let leader = procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    let follower: NodeId = (1..=3).find(|&i| i != leader).unwrap();
    write(&procs, run, step(5 + rng.below(20)), &mut acked).await;
    procs.kill(follower);
    write(&procs, run, step(5 + rng.below(20)), &mut acked).await;
    procs.start(follower).unwrap();
    check(&procs, run, &acked, "after a follower's kill").await;

    // 3. All three at once, then a restart of all three from their logs.
    write(&procs, run, step(5 + rng.below(20)), &mut acked).await;
    for id in 1..=3 {
        procs.kill(id);
    }
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    check(&procs, run, &acked, "after all three restarted").await;
    write(&procs, run, step(10), &mut acked).await;
    check(&procs, run, &acked, "writes after the full restart").await;
    drop(procs);
}

/// Waits until every node of `ids` names one leader among them; returns it.
async fn wait_leader_among(client: &HttpClient, ids: &[NodeId]) -> NodeId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = Vec::new();
        for &id in ids {
            leaders.push(client.status(id).await.and_then(|s| s.leader));
        }
        if let Some(Some(l)) = leaders.first().copied() {
            if ids.contains(&l) && leaders.iter().all(|x| *x == Some(l)) {
                return l;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader among {ids:?}: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A read answers every write acknowledged before it, from whichever node
/// is asked. The leader is paused (SIGSTOP) past an election timeout; the
/// other two elect a new leader, which acknowledges a newer value of the
/// key; the old leader resumes still believing it leads, with the old
/// value in its state machine. Asked at once, it must not answer that
/// value: it cannot confirm its leadership with a quorum, and once it
/// learns of the new term it is not the leader. (Before reads were
/// linearizable, it answered from its state machine: the old value.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_old_leader_never_answers_a_stale_read() {
    let base = tempfile::tempdir().unwrap();
    let mut procs = ProcCluster::new(EXE, base.path(), 3).unwrap();
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    let client = procs.client();
    client.init(1).await.unwrap();
    let run = RunId::from_bytes([0x4b; 16]);
    let timeout = Duration::from_secs(30);
    client
        .write(&RunTxn::put(run, 1, "k", "old"), timeout)
        .await
        .unwrap();
    let old = procs.wait_leader(timeout).await.unwrap();
    let value = client.read(run, b"k", timeout).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"old"[..]));

    procs.pause(old);
    let others: Vec<NodeId> = (1..=3).filter(|&i| i != old).collect();
    let new = wait_leader_among(&client, &others).await;
    client
        .write(&RunTxn::put(run, 2, "k", "new"), timeout)
        .await
        .unwrap();
    procs.resume(old);
    for attempt in 0..5 {
        match client.read_at(old, run, b"k").await {
            Ok(ReadReply::Value { value }) => assert_eq!(
                value.as_deref(),
                Some(&b"new"[..]),
                "attempt {attempt}: node {old}, the old leader, answered a stale read"
            ),
            Ok(ReadReply::NotLeader { .. } | ReadReply::Failed { .. }) | Err(_) => {}
        }
    }
    let value = client.read(run, b"k", timeout).await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"new"[..]), "leader {new}");
    // The HTTP status says what the answer is: a follower is not the
    // leader (421), a bad run id is a bad request (400).
    let http = durability_raft::node::http_client();
    let follower = others.iter().copied().find(|&i| i != new).unwrap();
    let read = ReadRequest {
        run,
        key: b"k".to_vec(),
    };
    let resp = http
        .post(format!("http://{}/api/read", procs.peers()[&follower]))
        .bearer_auth(procs.token().as_str())
        .json(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 421);
    let resp = http
        .get(format!(
            "http://{}/api/replay/not-a-run",
            procs.peers()[&new]
        ))
        .bearer_auth(procs.token().as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // A late retry of the first write (a client that lost its answer) is
    // not applied again: it would undo the newer one.
    client
        .write(&RunTxn::put(run, 1, "k", "old"), timeout)
        .await
        .unwrap();
    let value = client.read(run, b"k", timeout).await.unwrap();
    assert_eq!(
        value.as_deref(),
        Some(&b"new"[..]),
        "a retry was applied twice"
    );
    drop(procs);
}

fn run_node(args: &[&str]) -> (i32, String) {
    let out = Command::new(EXE)
        .arg("run")
        .args(args)
        .env(TOKEN_ENV, "a-token-of-the-tests-0123")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_inputs_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (peers, says) in [
        ("1=127.0.0.1", "is not HOST:PORT"),
        ("1:127.0.0.1:7001", "is not ID=HOST:PORT"),
        ("x=127.0.0.1:7001", "is not a node id"),
        ("1=127.0.0.1:7001,1=127.0.0.1:7002", "appears twice"),
        ("", "empty"),
        ("2=127.0.0.1:7002", "node 1 is not in the peer list"),
    ] {
        let (code, err) = run_node(&["--id", "1", "--dir", d, "--peers", peers]);
        assert_eq!(code, 2, "{peers}: {err}");
        assert!(err.contains(says), "{peers}: {err}");
        assert_eq!(err.lines().count(), 1, "{peers}: {err}");
    }
    // No token, a short one, an unreadable token file.
    let peers = "1=127.0.0.1:7001";
    let none = Command::new(EXE)
        .args(["run", "--id", "1", "--dir", d, "--peers", peers])
        .env_remove(TOKEN_ENV)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(2), "{err}");
    assert!(err.contains("no token: give --token-file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let short = Command::new(EXE)
        .args(["run", "--id", "1", "--dir", d, "--peers", peers])
        .env(TOKEN_ENV, "short")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{err}");
    assert!(err.contains("16 to 1024 characters"), "{err}");
    let missing = dir.path().join("no-such-token");
    let (code, err) = run_node(&[
        "--id",
        "1",
        "--dir",
        d,
        "--peers",
        peers,
        "--token-file",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot open token file"), "{err}");
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let (code, err) = run_node(&["--id", "1", "--dir", d, "--peers", &format!("1={addr}")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in use"), "{err}");
    drop(busy);
    // A directory another node holds.
    let holder =
        durability::Wal::open(dir.path().join("log"), durability::Config::default()).unwrap();
    let port = durability_raft::node::free_ports(1).unwrap()[0];
    let (code, err) = run_node(&[
        "--id",
        "1",
        "--dir",
        d,
        "--peers",
        &format!("1=127.0.0.1:{port}"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("locked"), "{err}");
    drop(holder);
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn walnode(args: &[&str], token: &str) -> (i32, String, String) {
    let out = Command::new(EXE)
        .args(args)
        .env(TOKEN_ENV, token)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's commands, run as an operator runs them: a wrong peer
/// list is refused at init, a fourth node joins as a learner and is
/// promoted, a voter is removed, and a member restarted at another address
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_initialises_grows_and_shrinks_the_cluster() {
    let base = tempfile::tempdir().unwrap();
    let mut procs = ProcCluster::new(EXE, base.path(), 3).unwrap();
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    let token = procs.token().as_str().to_string();
    let peers = procs.peer_arg();
    let port4 = durability_raft::node::free_ports(1).unwrap()[0];
    let addr4 = format!("127.0.0.1:{port4}");
    let dir4 = base.path().join("node-4");
    let start4 = |peer_list: &str| {
        Child(
            Command::new(EXE)
                .args(["run", "--id", "4", "--peers", peer_list, "--dir"])
                .arg(&dir4)
                .env(TOKEN_ENV, &token)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // Node 4, started with a wrong peer list (nodes 1 and 4), cannot found
    // a cluster of its own.
    let wrong = format!("{}={},4={addr4}", 1, procs.peers()[&1]);
    let node4 = start4(&wrong);
    let mut all = procs.peers().clone();
    all.insert(4, addr4.clone());
    let client4 = HttpClient::new(all).with_token(Some(procs.token().clone()));
    while client4.status(4).await.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = client4.init(4).await.unwrap_err();
    assert!(e.contains("another peer list"), "{e}");
    drop(node4);
    // The right list initialises the three.
    let (code, out, err) = walnode(&["init", "--peers", &peers], &token);
    assert_eq!(code, 0, "{out}{err}");
    procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    let (code, _, err) = walnode(&["init", "--peers", &peers], &token);
    assert_eq!(code, 2, "a second init: {err}");
    assert!(err.contains("already part of a cluster"), "{err}");
    let run = RunId::from_bytes([0x4d; 16]);
    let mut acked = Vec::new();
    write(&procs, run, 0..20, &mut acked).await;

    // Node 4 joins: started alone (uninitialised, it never campaigns),
    // added as a learner, promoted.
    let _node4 = start4(&format!("4={addr4}"));
    while client4.status(4).await.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, out, err) = walnode(
        &[
            "add-learner",
            "--peers",
            &peers,
            "--id",
            "4",
            "--addr",
            &addr4,
        ],
        &token,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = walnode(&["promote", "--peers", &peers, "--id", "4"], &token);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = walnode(&["status", "--peers", &peers], &token);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(" voter ").count(), 4, "{out}");
    assert!(out.contains(&addr4), "{out}");
    assert!(out.contains("(a quorum confirms it)"), "{out}");
    // Node 4 has every acknowledged write.
    let s = client4.status(1).await.unwrap();
    let target = s.last_applied.unwrap();
    while client4.status(4).await.and_then(|s| s.last_applied) < Some(target) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &i in &acked {
        let TxnOp::Put { key, value } = &demo_txn(run, i).ops[0] else {
            unreachable!()
        };
        assert_eq!(
            client4.read_local(4, run, key).await.unwrap().as_ref(),
            Some(value)
        );
    }

    // Node 3 leaves; the cluster of 1, 2, 4 writes on without it.
    let (code, out, err) = walnode(&["remove", "--peers", &peers, "--id", "3"], &token);
    assert_eq!(code, 0, "{out}{err}");
    procs.kill(3);
    let client =
        HttpClient::new(client4_peers(&procs, &addr4)).with_token(Some(procs.token().clone()));
    client
        .write(&demo_txn(run, 100), Duration::from_secs(30))
        .await
        .unwrap();
    let (code, out, err) = walnode(&["status", "--peers", &peers], &token);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(" voter ").count(), 3, "{out}");
    let (code, _, err) = walnode(&["remove", "--peers", &peers, "--id", "9"], &token);
    assert_eq!(code, 2);
    assert!(err.contains("node 9 is not a member"), "{err}");

    // A member restarted at another address is refused: clients would be
    // sent to the old one.
    procs.kill(2);
    let moved = procs.peer_arg().replace(
        &procs.peers()[&2],
        &format!(
            "127.0.0.1:{}",
            durability_raft::node::free_ports(1).unwrap()[0]
        ),
    );
    let (code, _, err) = walnode(
        &[
            "run",
            "--id",
            "2",
            "--dir",
            procs.dir(2).to_str().unwrap(),
            "--peers",
            &moved,
        ],
        &token,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("node 2 is a member at"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(procs);
}

fn client4_peers(procs: &ProcCluster, addr4: &str) -> durability_raft::node::Peers {
    let mut p = procs.peers().clone();
    p.remove(&3);
    p.insert(4, addr4.to_string());
    p
}

/// A CA, and a certificate it signed for 127.0.0.1, written as PEM files
/// in `dir`: (cert, key, ca).
fn tls_files(dir: &std::path::Path, name: &str) -> durability_raft::node::TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let files = durability_raft::node::TlsFiles {
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join(format!("{name}-ca.pem")),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.ca, ca.pem()).unwrap();
    files
}

/// Over TLS: the nodes replicate through HTTPS, clients and the operator's
/// commands trust the cluster's authority, and neither plain HTTP nor a
/// client trusting another authority gets an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_answers_only_its_authoritys_clients() {
    let base = tempfile::tempdir().unwrap();
    let files = tls_files(base.path(), "cluster");
    let mut procs = ProcCluster::new(EXE, base.path(), 3).unwrap();
    procs.use_tls(files.clone());
    for id in 1..=3 {
        procs.start(id).unwrap();
    }
    procs.wait_up(Duration::from_secs(30)).await.unwrap();
    procs.client().init(1).await.unwrap();
    procs.wait_leader(Duration::from_secs(30)).await.unwrap();
    let run = RunId::from_bytes([0x71; 16]);
    let mut acked = Vec::new();
    write(&procs, run, 0..20, &mut acked).await;
    check(&procs, run, &acked, "over TLS").await;
    let (code, out, err) = walnode(
        &[
            "status",
            "--peers",
            &procs.peer_arg(),
            "--tls-ca",
            files.ca.to_str().unwrap(),
        ],
        procs.token().as_str(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches(" voter ").count(), 3, "{out}");
    // Plain HTTP is not served.
    let plain = HttpClient::new(procs.peers().clone()).with_token(Some(procs.token().clone()));
    assert!(plain.status(1).await.is_none());
    // A client that trusts another authority does not trust the nodes.
    let other = tls_files(base.path(), "other");
    let stranger = HttpClient::new(procs.peers().clone())
        .with_token(Some(procs.token().clone()))
        .with_tls(&other.ca)
        .unwrap();
    assert!(stranger.status(1).await.is_none());
    let e = stranger
        .write(&demo_txn(run, 99), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    drop(procs);
    // A missing file is one clear line.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.pem");
    let (code, err) = run_node(&[
        "--id",
        "1",
        "--dir",
        dir.path().to_str().unwrap(),
        "--peers",
        "1=127.0.0.1:7001",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        files.key.to_str().unwrap(),
        "--tls-ca",
        files.ca.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tls: cannot open the certificate"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
