//! `walnode`: one replicated agent-run store node (openraft on the
//! durability log), its demo and its benchmark.
//!
//! ```text
//! walnode run --id 1 --dir /var/lib/walnode/1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//! walnode init   --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//! walnode status --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//! walnode add-learner --peers ... --id 4 --addr 127.0.0.1:7004
//! walnode promote --peers ... --id 4
//! walnode remove  --peers ... --id 3
//! walnode demo      # three node processes; kill the leader; nothing acknowledged is lost
//! walnode bench     # replicated commits/s and latency, beside a single node's Strict rate
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use durability::RunId;
use durability_raft::node::{self, demo_txn, HttpClient, ProcCluster};
use durability_raft::types::NodeId;

#[derive(Parser)]
#[command(
    name = "walnode",
    version,
    about = "A replicated agent-run store node on the durability log",
    after_help = "Logs go to standard error; WALNODE_LOG sets what is logged \
                  (RUST_LOG syntax, e.g. WALNODE_LOG=debug; default: warnings, and the node's own info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node: Raft RPCs and the client API over HTTP.
    Run {
        /// This node's id (a key of --peers).
        #[arg(long)]
        id: NodeId,
        /// Its directory (the log in `log/`, snapshots in `sm/`).
        #[arg(long)]
        dir: PathBuf,
        /// Every member: ID=HOST:PORT, comma-separated (this node's own
        /// address is where it listens, unless --listen says otherwise).
        #[arg(long)]
        peers: String,
        /// Listen here instead of at this node's address in --peers (e.g.
        /// 0.0.0.0:7001).
        #[arg(long)]
        listen: Option<String>,
        /// A file whose first line is the cluster's token, the shared
        /// secret every request must carry (16 to 1,024 visible ASCII
        /// characters). Without it, WALNODE_TOKEN holds the token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Accept requests without a token: only on a network where
        /// everyone who can connect may write and replace the cluster.
        #[arg(long, conflicts_with = "token_file")]
        no_auth: bool,
        /// Serve HTTPS with this certificate chain (PEM), valid for the
        /// host of this node's address; with --tls-key and --tls-ca.
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// This node's private key (PEM).
        #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
        tls_key: Option<PathBuf>,
        /// The certificate authority (PEM) that signed every node's
        /// certificate: peers are trusted through it alone.
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
    },
    /// Initialise a new cluster: every node of the list must be running
    /// with this same list (and the same token) and part of no cluster.
    Init(ClusterArgs),
    /// Each node's view: members, leader, term, log, commit and apply
    /// indexes, and how far it lags the leader.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Print the nodes' answers as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a learner (a node that receives the log but does not vote);
    /// returns once it has caught up. Start it first with `walnode run`.
    AddLearner {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The new node's id.
        #[arg(long)]
        id: NodeId,
        /// Its address, HOST:PORT.
        #[arg(long)]
        addr: String,
    },
    /// Make learners voters.
    Promote {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Their ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<NodeId>,
    },
    /// Remove members (voters or learners) from the cluster.
    Remove {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Their ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        id: Vec<NodeId>,
    },
    /// Make exactly these members the voters; voters not listed leave.
    ChangeMembership {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The voters' ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<NodeId>,
    },
    /// Start three nodes, write from several clients, SIGKILL the leader,
    /// restart it, and check every acknowledged write is on all three.
    Demo {
        /// Where the nodes keep their directories (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Writes per client per phase.
        #[arg(long, default_value_t = 100)]
        writes: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: u64,
    },
    /// Replicated commits/s and p50/p99 latency over loopback with three
    /// node processes, beside a single node's Strict commit rate.
    Bench {
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: u64,
        /// Writes in all.
        #[arg(long, default_value_t = 4000)]
        writes: u64,
    },
}

/// How an operator command reaches the cluster.
#[derive(clap::Args)]
struct ClusterArgs {
    /// The nodes to ask: ID=HOST:PORT, comma-separated (for `init`, every
    /// member, exactly as the nodes were started with).
    #[arg(long)]
    peers: String,
    /// A file whose first line is the cluster's token (default:
    /// WALNODE_TOKEN; none if neither is set).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// How long to keep trying, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Speak HTTPS to the nodes, trusting this certificate authority (PEM).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
}

impl ClusterArgs {
    fn client(&self) -> Result<(HttpClient, node::Peers)> {
        let peers = node::parse_peers(&self.peers).map_err(|e| anyhow!("bad --peers: {e}"))?;
        let token = match &self.token_file {
            Some(path) => Some(node::Token::from_file(path).map_err(|e| anyhow!(e))?),
            None => match std::env::var(node::TOKEN_ENV) {
                Ok(t) => {
                    Some(node::Token::new(&t).map_err(|e| anyhow!("{}: {e}", node::TOKEN_ENV))?)
                }
                Err(_) => None,
            },
        };
        let mut client = HttpClient::new(peers.clone()).with_token(token);
        if let Some(ca) = &self.tls_ca {
            client = client.with_tls(ca).map_err(|e| anyhow!(e))?;
        }
        Ok((client, peers))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// Logs to standard error through `tracing`, openraft's events included:
/// `WALNODE_LOG` sets the filter (`RUST_LOG` syntax, e.g. `debug` or
/// `openraft=debug,info`); by default warnings, and this crate's info.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WALNODE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,durability_raft=info,walnode=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("walnode: error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run {
                id,
                dir,
                peers,
                listen,
                token_file,
                no_auth,
                tls_cert,
                tls_key,
                tls_ca,
            } => {
                let token = token_of(token_file, no_auth)?;
                let opts = node::NodeOptions {
                    id,
                    dir,
                    peers: node::parse_peers(&peers).map_err(|e| anyhow!("bad --peers: {e}"))?,
                    listen,
                    token,
                    tls: match (tls_cert, tls_key, tls_ca) {
                        (Some(cert), Some(key), Some(ca)) => Some(node::TlsFiles { cert, key, ca }),
                        _ => None,
                    },
                };
                run(opts).await
            }
            Command::Init(c) => init(c).await,
            Command::Status { cluster, json } => status(cluster, json).await,
            Command::AddLearner { cluster, id, addr } => {
                membership(cluster, node::MembershipChange::AddLearner { id, addr }).await
            }
            Command::Promote { cluster, id } => {
                membership(cluster, node::MembershipChange::Promote { ids: id }).await
            }
            Command::Remove { cluster, id } => {
                membership(cluster, node::MembershipChange::Remove { ids: id }).await
            }
            Command::ChangeMembership { cluster, voters } => {
                membership(cluster, node::MembershipChange::Voters { ids: voters }).await
            }
            Command::Demo {
                dir,
                writes,
                clients,
            } => demo(dir, writes, clients).await,
            Command::Bench { clients, writes } => bench(clients, writes).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walnode: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The token `run` requires: from `--token-file`, else `WALNODE_TOKEN`;
/// none only with `--no-auth`.
fn token_of(file: Option<PathBuf>, no_auth: bool) -> Result<Option<node::Token>> {
    if no_auth {
        return Ok(None);
    }
    if let Some(path) = file {
        return node::Token::from_file(&path)
            .map(Some)
            .map_err(|e| anyhow!(e));
    }
    match std::env::var(node::TOKEN_ENV) {
        Ok(t) => node::Token::new(&t)
            .map(Some)
            .map_err(|e| anyhow!("{}: {e}", node::TOKEN_ENV)),
        Err(_) => bail!(
            "no token: give --token-file FILE or set {} (the cluster's shared secret), \
             or --no-auth on a trusted network",
            node::TOKEN_ENV
        ),
    }
}

async fn run(opts: node::NodeOptions) -> Result<()> {
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    node::serve(opts, shutdown).await?;
    Ok(())
}

async fn init(c: ClusterArgs) -> Result<()> {
    let (client, peers) = c.client()?;
    let first = *peers
        .keys()
        .next()
        .expect("a parsed peer list is not empty");
    client
        .init(first)
        .await
        .map_err(|e| anyhow!("init through node {first}: {e}"))?;
    println!("initialised: voters {}", node::peer_list(&peers));
    Ok(())
}

async fn membership(c: ClusterArgs, change: node::MembershipChange) -> Result<()> {
    let (client, _) = c.client()?;
    let index = client
        .change_membership(&change, c.timeout())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!("done: the membership changed at log index {index}");
    Ok(())
}

async fn status(c: ClusterArgs, json: bool) -> Result<()> {
    let (client, peers) = c.client()?;
    // Every node of the list, and every member any of them knows of.
    let mut addrs = peers.clone();
    let mut answers = std::collections::BTreeMap::new();
    let mut asked = std::collections::BTreeSet::new();
    while let Some((&id, _)) = addrs.iter().find(|(id, _)| !asked.contains(*id)) {
        asked.insert(id);
        let mut one = HttpClient::new(addrs.clone()).with_token(client.token().cloned());
        if let Some(ca) = &c.tls_ca {
            one = one.with_tls(ca).map_err(|e| anyhow!(e))?;
        }
        if let Some(s) = one.status(id).await {
            for m in &s.members {
                addrs.entry(m.id).or_insert_with(|| m.addr.clone());
            }
            answers.insert(id, s);
        }
    }
    if answers.is_empty() {
        bail!("no node answers (check --peers and the token)");
    }
    if json {
        let all: Vec<_> = answers.values().collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let leader = answers
        .values()
        .find(|s| s.quorum == Some(true))
        .map(|s| s.id);
    let leader_last = leader.and_then(|l| answers[&l].last_log_index);
    let members: std::collections::BTreeMap<NodeId, bool> = leader
        .or_else(|| answers.keys().next().copied())
        .map(|l| {
            answers[&l]
                .members
                .iter()
                .map(|m| (m.id, m.voter))
                .collect()
        })
        .unwrap_or_default();
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "{:<5} {:<22} {:<8} {:<10} {:>5} {:>6} {:>9} {:>9} {:>9} {:>6}",
        "node",
        "address",
        "member",
        "state",
        "term",
        "leader",
        "last log",
        "committed",
        "applied",
        "lag"
    );
    for (id, addr) in &addrs {
        let member = match members.get(id) {
            Some(true) => "voter",
            Some(false) => "learner",
            None => "-",
        };
        match answers.get(id) {
            Some(s) => {
                let state = if s.quorum == Some(false) {
                    "Leader?".to_string()
                } else {
                    s.state.clone()
                };
                let lag = match (leader_last, s.last_applied) {
                    (Some(l), a) => (l.saturating_sub(a.unwrap_or(0))).to_string(),
                    _ => "-".into(),
                };
                println!(
                    "{:<5} {:<22} {:<8} {:<10} {:>5} {:>6} {:>9} {:>9} {:>9} {:>6}",
                    id,
                    addr,
                    member,
                    state,
                    s.term,
                    opt(s.leader),
                    opt(s.last_log_index),
                    opt(s.committed),
                    opt(s.last_applied),
                    lag
                );
            }
            None => println!("{id:<5} {addr:<22} {member:<8} {:<10}", "down"),
        }
    }
    match leader {
        Some(l) => println!("leader: node {l} (a quorum confirms it)"),
        None => println!("leader: none confirmed by a quorum"),
    }
    if answers.values().any(|s| s.quorum == Some(false)) {
        println!("Leader?: a node that still calls itself leader but could not reach a quorum");
    }
    Ok(())
}

/// The key and value `demo_txn(run, n)` puts.
fn put_of(run: RunId, n: u64) -> (Vec<u8>, Vec<u8>) {
    match demo_txn(run, n).ops.into_iter().next() {
        Some(durability_raft::types::TxnOp::Put { key, value }) => (key, value),
        _ => unreachable!("demo_txn is one put"),
    }
}

/// Starts three node processes under `base`, initialises the cluster and
/// waits for its leader.
async fn start_three(base: &std::path::Path) -> Result<(ProcCluster, NodeId)> {
    let exe = std::env::current_exe().context("find walnode's own binary")?;
    let mut procs = ProcCluster::new(exe, base, 3).context("pick ports")?;
    for id in 1..=3 {
        procs
            .start(id)
            .with_context(|| format!("start node {id}"))?;
    }
    procs
        .wait_up(Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!(e))?;
    procs
        .client()
        .init(1)
        .await
        .map_err(|e| anyhow!("initialise: {e}"))?;
    let leader = procs
        .wait_leader(Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!(e))?;
    Ok((procs, leader))
}

/// Acknowledged writes: (run, n).
type Acked = Vec<(RunId, u64)>;

async fn write_phase(client: &HttpClient, runs: &[RunId], from: u64, n: u64) -> Result<Acked> {
    let mut tasks = tokio::task::JoinSet::new();
    for &run in runs {
        let client = client.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for i in from..from + n {
                client
                    .write(&demo_txn(run, i), Duration::from_secs(20))
                    .await
                    .map_err(|e| anyhow!("write {i} of run {run}: {e}"))?;
                acked.push((run, i));
            }
            Ok::<_, anyhow::Error>(acked)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.context("a client task")??);
    }
    Ok(all)
}

/// Every acknowledged write is on every node, and the nodes' states agree.
async fn check_all(procs: &ProcCluster, acked: &Acked) -> Result<()> {
    let client = procs.client();
    let leader = procs
        .wait_leader(Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!(e))?;
    let index = client
        .status(leader)
        .await
        .and_then(|s| s.last_applied)
        .ok_or_else(|| anyhow!("the leader reports nothing applied"))?;
    procs
        .wait_applied(index, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!(e))?;
    for id in procs.running() {
        for &(run, i) in acked {
            let (key, value) = put_of(run, i);
            let got = client
                .read_local(id, run, &key)
                .await
                .map_err(|e| anyhow!(e))?;
            if got.as_deref() != Some(&value[..]) {
                bail!("node {id} lost acknowledged write {i} of run {run}: {got:?}");
            }
        }
    }
    let mut digests = Vec::new();
    for id in procs.running() {
        let s = client
            .status(id)
            .await
            .ok_or_else(|| anyhow!("node {id} is down"))?;
        digests.push((id, s.digest));
    }
    if digests.windows(2).any(|w| w[0].1 != w[1].1) {
        bail!("the state machines differ: {digests:?}");
    }
    Ok(())
}

async fn demo(dir: Option<PathBuf>, writes: u64, clients: u64) -> Result<()> {
    let started = Instant::now();
    let tmp;
    let base = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let say = |msg: String| println!("[{:>5.1}s] {msg}", started.elapsed().as_secs_f64());
    let (mut procs, leader) = start_three(&base).await?;
    say(format!("started 3 node processes: {}", procs.peer_arg()));
    let client = procs.client();
    say(format!("cluster initialised; node {leader} leads"));

    let runs: Vec<RunId> = (0..clients).map(|_| RunId::new()).collect();
    let t = Instant::now();
    let mut acked = write_phase(&client, &runs, 0, writes).await?;
    say(format!(
        "{} clients wrote {} transactions ({:.0}/s), all acknowledged",
        clients,
        acked.len(),
        acked.len() as f64 / t.elapsed().as_secs_f64()
    ));

    procs.kill(leader);
    say(format!("SIGKILLed the leader, node {leader}"));
    let t = Instant::now();
    let new = procs
        .wait_leader(Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!(e))?;
    say(format!(
        "node {new} leads after {:.2}s",
        t.elapsed().as_secs_f64()
    ));
    let more = write_phase(&client, &runs, writes, writes).await?;
    say(format!(
        "writes continued: {} more acknowledged with node {leader} down",
        more.len()
    ));
    acked.extend(more);

    procs
        .start(leader)
        .with_context(|| format!("restart node {leader}"))?;
    let t = Instant::now();
    procs
        .wait_up(Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!(e))?;
    let target = client
        .status(new)
        .await
        .and_then(|s| s.last_applied)
        .unwrap_or(0);
    procs
        .wait_applied(target, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow!(e))?;
    let s = client.status(leader).await;
    say(format!(
        "node {leader} restarted from its directory and caught up to index {} in {:.2}s",
        s.and_then(|s| s.last_applied).unwrap_or(0),
        t.elapsed().as_secs_f64()
    ));

    check_all(&procs, &acked).await?;
    let replayed = client
        .replay(leader, runs[0])
        .await
        .map_err(|e| anyhow!(e))?;
    say(format!(
        "node {leader}'s own log replays run {} as {} transactions{}",
        runs[0],
        replayed.txns.len(),
        match replayed.purged_through {
            Some(i) if replayed.purged => {
                format!(" (from the purge point: entries up to index {i} are in its snapshot)")
            }
            _ => String::new(),
        }
    ));
    let digest = client.status(1).await.map(|s| s.digest);
    println!();
    println!("summary");
    println!("  acknowledged transactions   {}", acked.len());
    println!(
        "  on all three nodes          {} (every one read back from each)",
        acked.len()
    );
    println!("  state machines              equal: {digest:?}");
    println!("  leader killed               node {leader}; node {new} took over");
    println!(
        "  took                        {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(procs);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len().saturating_sub(1))]
}

async fn bench(clients: u64, writes: u64) -> Result<()> {
    let tmp = tempfile::tempdir().context("a temporary directory")?;
    let (procs, _leader) = start_three(tmp.path()).await?;
    let client = procs.client();
    // Warm up (connections, the first segment).
    let run = RunId::new();
    for i in 0..50 {
        client
            .write(&demo_txn(run, i), Duration::from_secs(10))
            .await
            .map_err(|e| anyhow!(e))?;
    }
    let next = Arc::new(AtomicU64::new(100));
    let per = writes / clients.max(1);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, next) = (client.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for _ in 0..per {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let s = Instant::now();
                client
                    .write(&demo_txn(run, i), Duration::from_secs(10))
                    .await?;
                lat.push(s.elapsed());
            }
            Ok::<_, String>(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r.context("a client task")?.map_err(|e| anyhow!(e))?);
    }
    let elapsed = t.elapsed();
    drop(procs);
    lat.sort_unstable();
    let rate = lat.len() as f64 / elapsed.as_secs_f64();

    // A single node's Strict commits, same machine, same transaction,
    // same number of concurrent writers (threads).
    let single = single_node_strict(clients, per.min(500))?;
    println!(
        "walnode bench: 3 node processes over loopback HTTP, {clients} clients, {} writes",
        lat.len()
    );
    println!("  replicated commits/s      {rate:>10.0}");
    println!(
        "  p50 commit latency        {:>10.2?}",
        percentile(&lat, 0.5)
    );
    println!(
        "  p99 commit latency        {:>10.2?}",
        percentile(&lat, 0.99)
    );
    println!(
        "  single-node Strict/s      {single:>10.0}  (append_txn, {clients} threads, same run)"
    );
    println!("  replicated / single       {:>10.2}", rate / single);
    Ok(())
}

fn single_node_strict(threads: u64, per: u64) -> Result<f64> {
    use durability::{Config, Op, SyncMode, Wal};
    let tmp = tempfile::tempdir()?;
    let wal = Arc::new(Wal::open(
        tmp.path(),
        Config::default()
            .segment_size(16 << 20)
            .sync_mode(SyncMode::Strict),
    )?);
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || -> durability::Result<()> {
                let run = RunId::new();
                for i in 0..per {
                    let (key, value) = put_of(run, i);
                    wal.append_txn(
                        run,
                        k * per + i,
                        &[Op::Write {
                            key: &key,
                            value: &value,
                            version: i,
                        }],
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow!("a writer thread panicked"))??;
    }
    Ok((threads * per) as f64 / t.elapsed().as_secs_f64())
}
