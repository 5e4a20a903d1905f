//! One replicated node as a network service: openraft on our log
//! ([`LogStore`], Strict mode) and the agent-run state machine, serving
//! Raft's RPCs and a small client API over HTTP (axum; peers and clients
//! use reqwest with JSON bodies). The `walnode` binary runs it.
//!
//! Routes (all JSON). The client API's HTTP status says what the answer
//! is: 200 served, 421 not the leader (the body names the one to ask), 503
//! not served now (no quorum or no leader), 409 an `init` refused, 400 a
//! bad request, 500 a node's own failure, 401 a request without the
//! cluster's token.
//!
//! Every request, between nodes and from clients, carries the cluster's
//! shared secret as `Authorization: Bearer <token>` ([`Token`]); a node
//! started with a token refuses (401) any request that does not. Node to
//! node requests also name their sender (`X-Walnode-From: <id>`), for the
//! logs.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /raft/append`, `/raft/vote`, `/raft/snapshot` | openraft's request | `Result<response, RaftError>` |
//! | `POST /api/init` | — | initialises the cluster with every peer as a voter |
//! | `POST /api/write` | a [`RunTxn`] | [`WriteReply`]: applied at `index`, or the leader to ask |
//! | `POST /api/read` | [`ReadRequest`] | [`ReadReply`]: the key's value (linearizable: the leader confirms with a quorum that it still leads, and answers once it has applied every entry committed before the read), or the leader to ask |
//! | `POST /api/read/local` | [`ReadRequest`] | this node's state machine's value, or `null`: may be stale (a follower behind, a leader cut off); for checks of one node's state |
//! | `GET /api/replay/{run}` | — | [`RunReplay`]: the run's transactions, replayed from this node's log, and whether the log was purged (then they begin at the purge point; the rest is in the snapshot) |
//! | `POST /api/membership` | a [`MembershipChange`] | [`WriteReply`]: applied at `index`, or the leader to ask |
//! | `GET /api/ping` | — | 200: the node is up (the election guard's probe) |
//! | `GET /api/status` | — | [`Status`] |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use durability::{Config, RunId, SyncMode};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::log_store::LogStore;
use crate::state_machine::{StateDigest, StateMachineStore};
use crate::types::{bytes_json, Node, NodeId, Raft, RunTxn, TxnOp, TypeConfig};

/// The cluster's members: node id → `host:port`.
pub type Peers = BTreeMap<NodeId, String>;

/// Checks that `addr` is `HOST:PORT`: an IP address and port
/// (`127.0.0.1:7001`, `[::1]:7001`), or a host name and port
/// (`localhost:7001`, `node-1.internal:7001`), resolved when used.
fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or("no :PORT")?;
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    let name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || !host.chars().all(name) {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    Ok(())
}

/// Parses `1=127.0.0.1:7001,2=localhost:7002,...`.
pub fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = Peers::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("peer {part:?}: {id:?} is not a node id (a number)"))?;
        let addr = addr.trim();
        check_host_port(addr)
            .map_err(|e| format!("peer {part:?}: {addr:?} is not HOST:PORT ({e})"))?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} appears twice in the peer list"));
        }
    }
    if peers.is_empty() {
        return Err("the peer list is empty".into());
    }
    Ok(peers)
}

/// The Raft timing of a node process.
pub fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "walnode".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        install_snapshot_timeout: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(2000),
        max_in_snapshot_log_to_keep: 500,
        // A chunk travels as JSON (bytes as numbers, up to 4 characters
        // each): 1 MiB of snapshot stays well under `MAX_BODY`.
        snapshot_max_chunk_size: 1 << 20,
        ..Default::default()
    }
}

/// What a write answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum WriteReply {
    /// Committed and applied at this log index.
    Applied {
        /// The entry's index.
        index: u64,
        /// True if the run had already applied a transaction of this id
        /// (a retry of a write that did commit): this entry applied
        /// nothing. Writes are idempotent by `(run, txn_id)`.
        #[serde(default)]
        duplicate: bool,
    },
    /// This node is not the leader; ask that one (if known).
    NotLeader {
        /// The leader's id and address, if this node knows it.
        leader: Option<(NodeId, String)>,
    },
    /// The write failed for another reason.
    Failed {
        /// Why.
        error: String,
    },
}

/// What a linearizable read answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ReadReply {
    /// The key's value (`None`: the run has no such key). It reflects
    /// every write acknowledged before the read was sent.
    Value {
        /// The value.
        #[serde(with = "bytes_json::option")]
        value: Option<Vec<u8>>,
    },
    /// This node is not the leader; ask that one (if known).
    NotLeader {
        /// The leader's id and address, if this node knows it.
        leader: Option<(NodeId, String)>,
    },
    /// This node could not confirm it still leads (no quorum answered),
    /// or the read failed for another reason: nothing is answered.
    Failed {
        /// Why.
        error: String,
    },
}

/// A read of one key of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The run.
    pub run: RunId,
    /// The key.
    #[serde(with = "bytes_json")]
    pub key: Vec<u8>,
}

/// A node's view of itself and the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// The leader it knows of. A leader that could not confirm with a
    /// quorum that it still leads names none.
    pub leader: Option<NodeId>,
    /// For a leader: whether a quorum confirmed, just now, that it still
    /// leads (a leader cut off by a partition cannot). `None` for others.
    #[serde(default)]
    pub quorum: Option<bool>,
    /// Its current term.
    pub term: u64,
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub state: String,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index it knows is committed.
    #[serde(default)]
    pub committed: Option<u64>,
    /// The last index applied to its state machine.
    pub last_applied: Option<u64>,
    /// The cluster's members as this node knows them (empty: not
    /// initialised, or not yet told).
    #[serde(default)]
    pub members: Vec<Member>,
    /// For a leader: the last index each member is known to hold.
    #[serde(default)]
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// The peer list it was started with (`--peers`).
    #[serde(default)]
    pub peers: Peers,
    /// Its state machine's digest.
    pub digest: StateDigest,
    /// Its log's durable end and end (LSNs).
    pub durable_lsn: u64,
    /// The log's end.
    pub end_lsn: u64,
}

/// A member of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: String,
    /// A voter (else a learner: it receives the log but does not vote).
    pub voter: bool,
}

/// A change of the cluster's membership, made by the leader.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MembershipChange {
    /// Add a learner at `addr`; answered once it has caught up.
    AddLearner {
        /// Its id.
        id: NodeId,
        /// Its address.
        addr: String,
    },
    /// Make learners voters.
    Promote {
        /// Their ids.
        ids: Vec<NodeId>,
    },
    /// Remove members (voters or learners) from the cluster.
    Remove {
        /// Their ids.
        ids: Vec<NodeId>,
    },
    /// Make exactly these members the voters (every one a member already);
    /// voters not listed leave the cluster.
    Voters {
        /// Their ids.
        ids: Vec<NodeId>,
    },
}

/// A run replayed from a node's log: where the log's history begins, and
/// the run's transactions from there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunReplay {
    /// True if the log was purged (its entries up to `purged_through` are
    /// only in the state machine's snapshot): the transactions below begin
    /// at the purge point, not at the run's first transaction.
    pub purged: bool,
    /// The last Raft index purged from this node's log, if any.
    pub purged_through: Option<u64>,
    /// The LSN the log's history begins at.
    pub start_lsn: u64,
    /// The run's transactions, in commit order.
    pub txns: Vec<ReplayedTxn>,
}

/// A replayed transaction of a run, from a node's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayedTxn {
    /// The transaction id.
    pub txn_id: Option<u64>,
    /// When the leader accepted it (µs since the Unix epoch; the same on
    /// every node), if stamped.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The ops, in order.
    pub ops: Vec<ReplayedOp>,
}

/// One op of a replayed transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplayedOp {
    /// The key.
    #[serde(with = "bytes_json")]
    pub key: Vec<u8>,
    /// The value it was set to; `None`: it was deleted.
    #[serde(with = "bytes_json::option")]
    pub value: Option<Vec<u8>>,
}

#[derive(Clone)]
struct AppState {
    id: NodeId,
    raft: Raft,
    log: LogStore<TypeConfig>,
    sm: StateMachineStore,
    peers: Arc<Peers>,
    token: Option<Token>,
    /// A client of the peers (`init` asks them), over TLS if this node is.
    peer_client: HttpClient,
}

/// The largest request body a node accepts (a snapshot chunk is the
/// largest: see [`raft_config`]).
pub const MAX_BODY: usize = 16 << 20;

/// The header that names the node an RPC comes from.
pub const FROM_HEADER: &str = "x-walnode-from";

/// The cluster's shared secret: every request carries it as a bearer
/// token. Its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The shortest token accepted.
    pub const MIN_LEN: usize = 16;
    /// The longest token accepted (and read from a file).
    pub const MAX_LEN: usize = 1024;

    /// `s` as a token: 16 to 1,024 visible ASCII characters (it travels
    /// in an HTTP header).
    pub fn new(s: &str) -> Result<Token, String> {
        if s.len() < Self::MIN_LEN || s.len() > Self::MAX_LEN {
            return Err(format!(
                "a token is {} to {} characters; this one has {}",
                Self::MIN_LEN,
                Self::MAX_LEN,
                s.len()
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII characters only (no spaces)".into());
        }
        Ok(Token(s.into()))
    }

    /// The token in the file at `path` (its first line), read with a bound.
    pub fn from_file(path: &Path) -> Result<Token, String> {
        use std::io::Read;
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open token file {}: {e}", path.display()))?;
        let mut text = String::new();
        file.take(Self::MAX_LEN as u64 + 2)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end();
        Token::new(line).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// A random token (two v4 UUIDs: 244 random bits).
    pub fn random() -> Token {
        let s = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Token(s.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that does not depend on
    /// where they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id (a key of `peers`).
    pub id: NodeId,
    /// Its directory (the log in `log/`, snapshots in `sm/`).
    pub dir: PathBuf,
    /// Every member and its address.
    pub peers: Peers,
    /// Where to listen, if not its own address in `peers` (e.g.
    /// `0.0.0.0:7001` behind a name, or a port a proxy forwards to).
    pub listen: Option<String>,
    /// The shared secret every request must carry; `None`: none (only on
    /// a network where everyone who can connect may write).
    pub token: Option<Token>,
    /// Serve and call HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// A node's TLS files, all PEM: its certificate chain (valid for the host
/// of its address: an IP address or a DNS name), its private key, and the
/// certificate authority that signed every node's certificate (peers and
/// clients are trusted through it alone, not the system's roots).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The node's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The cluster's certificate authority.
    pub ca: PathBuf,
}

/// The largest PEM file a node reads.
const MAX_PEM: u64 = 1 << 20;

/// The bytes of the PEM file at `path`, read with a bound.
fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open the {what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(format!(
            "the {what} {} is over {MAX_PEM} bytes: not a PEM file",
            path.display()
        ));
    }
    Ok(bytes)
}

/// An HTTP(S) client for peers or clients: HTTPS trusting only the
/// certificate authority in `ca` (PEM) when given, plain HTTP otherwise.
fn client_for(ca: Option<&Path>) -> Result<(reqwest::Client, &'static str), String> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5));
    let scheme = match ca {
        None => "http",
        Some(ca) => {
            let pem = read_pem(ca, "certificate authority")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("the certificate authority {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "the certificate authority {} holds no certificate",
                    ca.display()
                ));
            }
            b = b.tls_built_in_root_certs(false).https_only(true);
            for c in certs {
                b = b.add_root_certificate(c);
            }
            "https"
        }
    };
    let client = b.build().map_err(|e| format!("an HTTP client: {e}"))?;
    Ok((client, scheme))
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node's id is not in the peer list.
    #[error("node {0} is not in the peer list")]
    NotAPeer(NodeId),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
        /// A hint for the common case.
        hint: &'static str,
    },
    /// The log could not be opened (e.g. another node holds it).
    #[error("cannot open the log in {dir}: {source}")]
    Log {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: crate::log_store::OpenError,
    },
    /// The state machine could not be opened.
    #[error("cannot open the state machine in {dir}: {source}")]
    StateMachine {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: crate::state_machine::StateMachineError,
    },
    /// The node's address in the cluster's membership is not the one its
    /// peer list gives.
    #[error(
        "node {id} is a member at {known}, but --peers gives {given}: a member's address \
         changes only through the membership (walnode remove, then add-learner and promote \
         at the new address)"
    )]
    Moved {
        /// The node.
        id: NodeId,
        /// Its address in the membership.
        known: String,
        /// The one given.
        given: String,
    },
    /// A TLS file is missing, unreadable or not what it should be.
    #[error("tls: {0}")]
    Tls(String),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
    /// The server failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// Runs a node until `shutdown` resolves.
pub async fn serve(
    opts: NodeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let NodeOptions {
        id,
        dir,
        peers,
        listen,
        token,
        tls,
    } = opts;
    let (client, scheme) =
        client_for(tls.as_ref().map(|t| t.ca.as_path())).map_err(NodeError::Tls)?;
    let server_tls = match &tls {
        None => None,
        Some(t) => {
            let cert = read_pem(&t.cert, "certificate").map_err(NodeError::Tls)?;
            let key = read_pem(&t.key, "private key").map_err(NodeError::Tls)?;
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                .await
                .map_err(|e| {
                    NodeError::Tls(format!(
                        "the certificate {} and key {}: {e}",
                        t.cert.display(),
                        t.key.display()
                    ))
                })?;
            Some(config)
        }
    };
    let advertised = peers.get(&id).cloned().ok_or(NodeError::NotAPeer(id))?;
    let addr = listen.unwrap_or_else(|| advertised.clone());
    // Bind first: a port in use is reported before anything is opened.
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| NodeError::Bind {
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another process uses this port; pick another address)"
            } else {
                ""
            },
            addr: addr.clone(),
            source,
        })?;
    let log_dir = dir.join("log");
    let config = Config::default()
        .segment_size(16 << 20)
        .sync_mode(SyncMode::Strict);
    let log = LogStore::<TypeConfig>::open(&log_dir, config).map_err(|source| NodeError::Log {
        dir: log_dir.clone(),
        source,
    })?;
    let sm_dir = dir.join("sm");
    let sm = StateMachineStore::open(&sm_dir).map_err(|source| NodeError::StateMachine {
        dir: sm_dir.clone(),
        source,
    })?;
    let peers = Arc::new(peers);
    let network = HttpNetwork {
        client: client.clone(),
        scheme,
        from: id,
        token: token.clone(),
    };
    let config = Arc::new(
        raft_config()
            .validate()
            .map_err(|e| NodeError::Raft(e.to_string()))?,
    );
    let raft = openraft::Raft::new(id, config, network, log.clone(), sm.clone())
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    // A member's address is the cluster's, not this command line's: a node
    // restarted elsewhere would win elections and send every client to an
    // address where nothing listens.
    let known = raft
        .with_raft_state(move |st| {
            st.membership_state
                .effective()
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        })
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if let Some(known) = known.filter(|k| *k != advertised) {
        let _ = raft.shutdown().await;
        return Err(NodeError::Moved {
            id,
            known,
            given: advertised,
        });
    }
    tracing::info!(
        node = id,
        %addr,
        %advertised,
        authenticated = token.is_some(),
        tls = tls.is_some(),
        log = %log_dir.display(),
        state_machine = %sm_dir.display(),
        "serving"
    );
    let token_for_guard = token.clone();
    let mut peer_client = HttpClient::new((*peers).clone()).with_token(token.clone());
    peer_client.client = client.clone();
    peer_client.scheme = scheme;
    let state = AppState {
        peer_client,
        id,
        raft: raft.clone(),
        log,
        sm,
        peers,
        token,
    };
    let app = Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .route("/api/init", post(api_init))
        .route("/api/membership", post(api_membership))
        .route("/api/write", post(api_write))
        .route("/api/read", post(api_read))
        .route("/api/read/local", post(api_read_local))
        .route("/api/replay/{run}", get(api_replay))
        .route("/api/status", get(api_status))
        .route("/api/ping", get(api_ping))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    let guard = tokio::spawn(guard_elections(
        raft.clone(),
        id,
        (client, scheme),
        token_for_guard,
    ));
    let served = match server_tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stop = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            let listener = listener.into_std().map_err(NodeError::Serve)?;
            match axum_server::from_tcp_rustls(listener, config) {
                Ok(server) => server.handle(handle).serve(app.into_make_service()).await,
                Err(e) => Err(e),
            }
        }
    };
    guard.abort();
    let _ = raft.shutdown().await;
    served.map_err(NodeError::Serve)
}

/// The HTTP client nodes and clients use (no proxy: loopback).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client with no TLS builds")
}

/// Refuses (401) a request without the cluster's token, when it has one.
async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| token.matches(g)) {
            let error = "no valid token: every request carries the cluster's token \
                         as `Authorization: Bearer <token>`";
            return (StatusCode::UNAUTHORIZED, Json(Err::<(), _>(error))).into_response();
        }
    }
    next.run(req).await
}

async fn raft_append(
    State(s): State<AppState>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(s.raft.append_entries(rpc).await)
}

async fn raft_vote(
    State(s): State<AppState>,
    Json(rpc): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(s.raft.vote(rpc).await)
}

async fn raft_snapshot(
    State(s): State<AppState>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(s.raft.install_snapshot(rpc).await)
}

/// An HTTP status that says what an answer is: 200 served, 421 not the
/// leader (ask the one named), 503 not served now (no quorum, no leader),
/// 400 a bad request.
type Reply<T> = (StatusCode, Json<T>);

impl WriteReply {
    fn status(&self) -> StatusCode {
        match self {
            WriteReply::Applied { .. } => StatusCode::OK,
            WriteReply::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            WriteReply::Failed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl ReadReply {
    fn status(&self) -> StatusCode {
        match self {
            ReadReply::Value { .. } => StatusCode::OK,
            ReadReply::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
            ReadReply::Failed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Initialises the cluster with this node's peer list as its voters, once
/// every peer has answered that it has the same list and is not part of a
/// cluster yet: a node started with a wrong list (or a typo'd address)
/// refuses rather than found a cluster of its own.
async fn api_init(State(s): State<AppState>) -> Reply<Result<(), String>> {
    let refuse = |e: String| (StatusCode::CONFLICT, Json(Err(e)));
    if s.raft
        .metrics()
        .borrow()
        .membership_config
        .nodes()
        .next()
        .is_some()
    {
        return refuse(format!("node {} is already part of a cluster", s.id));
    }
    let client = &s.peer_client;
    for (&id, addr) in s.peers.iter().filter(|(&id, _)| id != s.id) {
        let Some(status) = client.status(id).await else {
            return refuse(format!(
                "node {id} at {addr} does not answer: start every node of the peer list \
                 (with the cluster's token) before init"
            ));
        };
        if status.id != id {
            return refuse(format!("{addr} is node {}, not node {id}", status.id));
        }
        if status.peers != *s.peers {
            return refuse(format!(
                "node {id} was started with another peer list ({}); every node needs the same",
                peer_list(&status.peers)
            ));
        }
        if !status.members.is_empty() {
            return refuse(format!("node {id} is already part of a cluster"));
        }
    }
    let members: BTreeMap<NodeId, Node> = s
        .peers
        .iter()
        .map(|(&id, addr)| (id, BasicNode { addr: addr.clone() }))
        .collect();
    match s.raft.initialize(members).await {
        Ok(()) => (StatusCode::OK, Json(Ok(()))),
        Err(e) => refuse(e.to_string()),
    }
}

/// A peer list as `--peers` takes it.
pub fn peer_list(peers: &Peers) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A membership change, by the leader: learners added once caught up,
/// voters changed through openraft's joint consensus.
async fn api_membership(
    State(s): State<AppState>,
    Json(change): Json<MembershipChange>,
) -> Reply<WriteReply> {
    use openraft::error::ClientWriteError;
    use openraft::ChangeMembers;
    let ids = |v: &[NodeId]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
    let result = match &change {
        MembershipChange::AddLearner { id, addr } => {
            if let Err(e) = check_host_port(addr) {
                let reply = WriteReply::Failed {
                    error: format!("{addr:?} is not HOST:PORT ({e})"),
                };
                return (StatusCode::BAD_REQUEST, Json(reply));
            }
            let node = BasicNode { addr: addr.clone() };
            s.raft.add_learner(*id, node, true).await
        }
        MembershipChange::Promote { ids: v } => {
            s.raft
                .change_membership(ChangeMembers::AddVoterIds(ids(v)), false)
                .await
        }
        MembershipChange::Remove { ids: v } => {
            let m = s.raft.metrics().borrow().membership_config.clone();
            if let Some(x) = v.iter().find(|x| !m.nodes().any(|(n, _)| n == *x)) {
                let reply = WriteReply::Failed {
                    error: format!("node {x} is not a member"),
                };
                return (StatusCode::BAD_REQUEST, Json(reply));
            }
            // Voters leave through a membership change; learners (and
            // the voters just removed) are then dropped as nodes.
            let m = s.raft.metrics().borrow().membership_config.clone();
            let voters: Vec<NodeId> = m.voter_ids().filter(|x| v.contains(x)).collect();
            let first = if voters.is_empty() {
                None
            } else {
                Some(
                    s.raft
                        .change_membership(ChangeMembers::RemoveVoters(ids(&voters)), false)
                        .await,
                )
            };
            match first {
                Some(Err(e)) => Err(e),
                _ => {
                    let m = s.raft.metrics().borrow().membership_config.clone();
                    let left: Vec<NodeId> = v
                        .iter()
                        .copied()
                        .filter(|x| m.nodes().any(|(n, _)| n == x))
                        .collect();
                    match (left.is_empty(), first) {
                        (true, Some(done)) => done,
                        _ => {
                            s.raft
                                .change_membership(ChangeMembers::RemoveNodes(ids(&left)), false)
                                .await
                        }
                    }
                }
            }
        }
        MembershipChange::Voters { ids: v } => {
            s.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(ids(v)), false)
                .await
        }
    };
    let reply = match result {
        Ok(resp) => WriteReply::Applied {
            index: resp.log_id.index,
            duplicate: false,
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => WriteReply::NotLeader {
            leader: leader_of(f),
        },
        Err(e) => WriteReply::Failed {
            error: e.to_string(),
        },
    };
    let status = match &reply {
        WriteReply::Failed { .. } => StatusCode::CONFLICT,
        r => r.status(),
    };
    (status, Json(reply))
}

async fn api_write(State(s): State<AppState>, Json(mut txn): Json<RunTxn>) -> Reply<WriteReply> {
    use openraft::error::ClientWriteError;
    txn.timestamp = durability::format::header::now_micros();
    let reply = match s.raft.client_write(txn).await {
        Ok(resp) => WriteReply::Applied {
            index: resp.log_id.index,
            duplicate: resp.data.duplicate,
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => WriteReply::NotLeader {
            leader: leader_of(f),
        },
        Err(e) => WriteReply::Failed {
            error: e.to_string(),
        },
    };
    (reply.status(), Json(reply))
}

/// The leader a `ForwardToLeader` names, as the replies carry it.
fn leader_of(f: openraft::error::ForwardToLeader<NodeId, Node>) -> Option<(NodeId, String)> {
    f.leader_id
        .map(|id| (id, f.leader_node.map(|n| n.addr).unwrap_or_default()))
}

/// A linearizable read: `ensure_linearizable` has the leader confirm with
/// a quorum that it still leads (an old leader cut off by a partition, or
/// paused, cannot) and waits until its state machine has applied the
/// commit index it read then; only then is the state machine read.
async fn api_read(State(s): State<AppState>, Json(r): Json<ReadRequest>) -> Reply<ReadReply> {
    use openraft::error::CheckIsLeaderError;
    let reply = match s.raft.ensure_linearizable().await {
        Ok(_) => ReadReply::Value {
            value: s.sm.get(&r.run, &r.key),
        },
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => ReadReply::NotLeader {
            leader: leader_of(f),
        },
        Err(e) => ReadReply::Failed {
            error: e.to_string(),
        },
    };
    (reply.status(), Json(reply))
}

/// This node's state machine, whatever it has applied: may be stale.
async fn api_read_local(State(s): State<AppState>, Json(r): Json<ReadRequest>) -> Json<LocalValue> {
    Json(LocalValue {
        value: s.sm.get(&r.run, &r.key),
    })
}

/// What a local (possibly stale) read answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LocalValue {
    /// The key's value in this node's state machine (`None`: no such key).
    #[serde(with = "bytes_json::option")]
    pub value: Option<Vec<u8>>,
}

async fn api_replay(
    State(s): State<AppState>,
    UrlPath(run): UrlPath<String>,
) -> Reply<Result<RunReplay, String>> {
    let run: RunId = match run.parse() {
        Ok(r) => r,
        Err(e) => {
            let error = format!("bad run id {run:?}: {e}");
            return (StatusCode::BAD_REQUEST, Json(Err(error)));
        }
    };
    let mut out = Vec::new();
    let r = s.log.wal().replay_run(run, |t| {
        out.push(ReplayedTxn {
            txn_id: t.txn_id,
            timestamp: t.timestamp.filter(|&t| t > 0),
            ops: t
                .ops
                .iter()
                .map(|op| ReplayedOp {
                    key: op.entry.key().unwrap_or_default().to_vec(),
                    value: op.entry.value().map(<[u8]>::to_vec),
                })
                .collect(),
        })
    });
    match r {
        Ok(stats) => {
            let purged_through = s.raft.metrics().borrow().purged.map(|l| l.index);
            let replay = RunReplay {
                purged: stats.purged,
                purged_through,
                start_lsn: stats.start_lsn,
                txns: out,
            };
            (StatusCode::OK, Json(Ok(replay)))
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(Err(e.to_string()))),
    }
}

/// Answers that this node is up (the election guard's probe).
async fn api_ping() -> StatusCode {
    StatusCode::OK
}

/// How often the election guard probes the other voters, and how long it
/// waits for each.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_WAIT: Duration = Duration::from_millis(200);

/// Lets this node campaign only while it reaches a quorum of the voters
/// (itself included), a pre-vote done outside openraft 0.9, which has
/// none. A node cut off could not win an election anyway; without the
/// guard, each of its election timeouts raises its term, and when it
/// returns the leader learns of that term and steps down: about 1.2 s
/// without writes (DESIGN.md §10). Elections are enabled again at the
/// first probe that reaches a quorum.
async fn guard_elections(
    raft: Raft,
    id: NodeId,
    (client, scheme): (reqwest::Client, &'static str),
    token: Option<Token>,
) {
    let mut enabled = true;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let membership = raft.metrics().borrow().membership_config.clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !voters.contains(&id) {
            continue;
        }
        let mut probes = tokio::task::JoinSet::new();
        for (&peer, node) in membership
            .nodes()
            .filter(|(p, _)| **p != id && voters.contains(p))
        {
            let mut req = client
                .get(format!("{scheme}://{}/api/ping", node.addr))
                .header(FROM_HEADER, id.to_string())
                .timeout(PROBE_WAIT);
            if let Some(t) = &token {
                req = req.bearer_auth(t.as_str());
            }
            probes.spawn(async move {
                let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                (peer, ok)
            });
        }
        let mut reached = 1;
        while let Some(r) = probes.join_next().await {
            reached += usize::from(matches!(r, Ok((_, true))));
        }
        let quorum = voters.len() / 2 + 1;
        let elect = reached >= quorum;
        if elect != enabled {
            raft.runtime_config().elect(elect);
            enabled = elect;
            if elect {
                tracing::info!(
                    node = id,
                    reached,
                    voters = voters.len(),
                    "elections resumed"
                );
            } else {
                tracing::info!(
                    node = id,
                    reached,
                    voters = voters.len(),
                    "elections paused: this node reaches no quorum"
                );
            }
        }
    }
}

/// How long a leader's status waits for a quorum to confirm it leads.
const QUORUM_CHECK: Duration = Duration::from_millis(500);

async fn api_status(State(s): State<AppState>) -> Json<Status> {
    let m = s.raft.metrics().borrow().clone();
    let stats = s.log.wal().stats();
    let mut leader = m.current_leader;
    let mut quorum = None;
    let membership = m.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(&id, node)| Member {
            id,
            addr: node.addr.clone(),
            voter: membership.voter_ids().any(|v| v == id),
        })
        .collect();
    let matched = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(&id, l)| (id, l.map(|l| l.index))).collect())
        .unwrap_or_default();
    if m.state == openraft::ServerState::Leader {
        let confirmed = tokio::time::timeout(QUORUM_CHECK, s.raft.get_read_log_id()).await;
        let ok = matches!(confirmed, Ok(Ok(_)));
        quorum = Some(ok);
        if !ok {
            leader = None;
        }
    }
    Json(Status {
        id: s.id,
        leader,
        quorum,
        term: m.current_term,
        state: format!("{:?}", m.state),
        last_log_index: m.last_log_index,
        committed: s.log.committed(),
        last_applied: m.last_applied.map(|l| l.index),
        members,
        matched,
        peers: (*s.peers).clone(),
        digest: s.sm.digest(),
        durable_lsn: stats.synced_lsn,
        end_lsn: stats.end_lsn,
    })
}

/// openraft's network over HTTP: one connection per target.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    scheme: &'static str,
    from: NodeId,
    token: Option<Token>,
}

/// A connection to one peer.
pub struct HttpConnection {
    client: reqwest::Client,
    scheme: &'static str,
    from: NodeId,
    token: Option<Token>,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        HttpConnection {
            client: self.client.clone(),
            scheme: self.scheme,
            from: self.from,
            token: self.token.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

impl HttpConnection {
    async fn call<Req, Resp, E>(
        &self,
        route: &str,
        req: &Req,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let url = format!("{}://{}/raft/{route}", self.scheme, self.addr);
        let mut post = self
            .client
            .post(&url)
            .header(FROM_HEADER, self.from.to_string());
        if let Some(t) = &self.token {
            post = post.bearer_auth(t.as_str());
        }
        let resp = post
            .json(req)
            .send()
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let e = std::io::Error::other(format!(
                "node {} refused the request: this node's token is not the cluster's",
                self.target
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let body: Result<Resp, RaftError<NodeId, E>> = resp
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("append", &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("vote", &rpc).await
    }
}

/// What a node answered a request only the leader serves.
enum Answer<T> {
    /// Served.
    Done(T),
    /// Not the leader; the one it knows of, if any.
    Leader(Option<NodeId>),
    /// Failed for another reason.
    Failed(String),
}

/// The answers of requests only the leader serves.
trait LeaderReply: serde::de::DeserializeOwned {
    /// What a served request yields.
    type Out;
    /// The answer, classified.
    fn answer(self) -> Answer<Self::Out>;
}

impl LeaderReply for WriteReply {
    type Out = u64;
    fn answer(self) -> Answer<u64> {
        match self {
            WriteReply::Applied { index, .. } => Answer::Done(index),
            WriteReply::NotLeader { leader } => Answer::Leader(leader.map(|l| l.0)),
            WriteReply::Failed { error } => Answer::Failed(error),
        }
    }
}

impl LeaderReply for ReadReply {
    type Out = Option<Vec<u8>>;
    fn answer(self) -> Answer<Option<Vec<u8>>> {
        match self {
            ReadReply::Value { value } => Answer::Done(value),
            ReadReply::NotLeader { leader } => Answer::Leader(leader.map(|l| l.0)),
            ReadReply::Failed { error } => Answer::Failed(error),
        }
    }
}

/// How an answer that refuses the request's token begins.
const REFUSED: &str = "refused";

/// How long a client waits for one node's answer before it asks another:
/// a hint may name a leader that died or is paused (a follower names the
/// leader it last heard of), and the request is safe to resend (writes
/// are idempotent).
const TRY_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of the cluster's HTTP API: finds the leader and retries.
/// Clones share the leader they last found, and start there.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    scheme: &'static str,
    peers: Arc<Peers>,
    leader: Arc<std::sync::atomic::AtomicU64>,
    token: Option<Token>,
}

impl HttpClient {
    /// A client of the nodes in `peers`.
    pub fn new(peers: Peers) -> Self {
        let first = peers.keys().next().copied().unwrap_or(0);
        HttpClient {
            client: http_client(),
            scheme: "http",
            peers: Arc::new(peers),
            leader: Arc::new(std::sync::atomic::AtomicU64::new(first)),
            token: None,
        }
    }

    /// The token it sends, if any.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// The same client over HTTPS, trusting only the certificate authority
    /// in the PEM file `ca`.
    pub fn with_tls(mut self, ca: &Path) -> Result<Self, String> {
        let (client, scheme) = client_for(Some(ca))?;
        self.client = client;
        self.scheme = scheme;
        Ok(self)
    }

    /// The same client, sending `token` with every request.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// A request to `path` of node `id`, with the token.
    fn request(
        &self,
        method: reqwest::Method,
        id: NodeId,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let addr = self.peers.get(&id).ok_or_else(|| format!("no node {id}"))?;
        let r = self
            .client
            .request(method, format!("{}://{addr}{path}", self.scheme));
        Ok(match &self.token {
            Some(t) => r.bearer_auth(t.as_str()),
            None => r,
        })
    }

    /// Sends `req` and decodes its JSON answer, whatever its status.
    async fn answer<R: serde::de::DeserializeOwned>(
        req: reqwest::RequestBuilder,
    ) -> Result<R, String> {
        Self::answer_with_status(req).await.map(|(_, r)| r)
    }

    /// Sends `req`; its status and decoded JSON answer.
    async fn answer_with_status<R: serde::de::DeserializeOwned>(
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, R), String> {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(format!(
                "{REFUSED}: the request's token is not the cluster's"
            ));
        }
        let r = resp.json().await.map_err(|e| e.to_string())?;
        Ok((status, r))
    }

    /// The status of node `id`, if it answers.
    pub async fn status(&self, id: NodeId) -> Option<Status> {
        let req = self.request(reqwest::Method::GET, id, "/api/status").ok()?;
        Self::answer(req.timeout(Duration::from_secs(2))).await.ok()
    }

    /// Initialises the cluster through node `id`.
    pub async fn init(&self, id: NodeId) -> Result<(), String> {
        let req = self.request(reqwest::Method::POST, id, "/api/init")?;
        Self::answer::<Result<(), String>>(req).await?
    }

    /// Writes `txn`, asking the leader (found by trying the nodes in
    /// turn), retrying until `timeout`. Returns the index it applied at.
    pub async fn write(&self, txn: &RunTxn, timeout: Duration) -> Result<u64, String> {
        self.ask_leader::<_, WriteReply>("/api/write", txn, timeout, TRY_TIMEOUT)
            .await
    }

    /// Has the leader make `change` to the membership (found and retried
    /// as [`HttpClient::write`] does); returns the index it applied at.
    /// Adding a learner waits until it has caught up.
    pub async fn change_membership(
        &self,
        change: &MembershipChange,
        timeout: Duration,
    ) -> Result<u64, String> {
        self.ask_leader::<_, WriteReply>("/api/membership", change, timeout, timeout)
            .await
    }

    /// The value of `key` in `run`, read linearizably from the leader
    /// (found as [`HttpClient::write`] finds it), retrying until `timeout`.
    pub async fn read(
        &self,
        run: RunId,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, String> {
        let req = ReadRequest {
            run,
            key: key.to_vec(),
        };
        self.ask_leader::<_, ReadReply>("/api/read", &req, timeout, TRY_TIMEOUT)
            .await
    }

    /// Node `id`'s answer to a linearizable read of `key` in `run`, asked
    /// once.
    pub async fn read_at(&self, id: NodeId, run: RunId, key: &[u8]) -> Result<ReadReply, String> {
        self.post(
            id,
            "/api/read",
            &ReadRequest {
                run,
                key: key.to_vec(),
            },
        )
        .await
    }

    /// The value of `key` in `run` in node `id`'s state machine, whatever
    /// it has applied: may be stale. For checks of one node's state.
    pub async fn read_local(
        &self,
        id: NodeId,
        run: RunId,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        let local: LocalValue = self
            .post(
                id,
                "/api/read/local",
                &ReadRequest {
                    run,
                    key: key.to_vec(),
                },
            )
            .await?;
        Ok(local.value)
    }

    /// Posts `body` to `path` of node `id` and decodes the answer.
    async fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        id: NodeId,
        path: &str,
        body: &B,
    ) -> Result<R, String> {
        let req = self.request(reqwest::Method::POST, id, path)?;
        Self::answer(req.json(body)).await
    }

    /// Posts `body` to `path` of the leader: starts at the leader last
    /// found, follows a node's hint, tries the nodes in turn, and retries
    /// until `timeout`.
    async fn ask_leader<B: Serialize, R: LeaderReply>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
        per_try: Duration,
    ) -> Result<R::Out, String> {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + timeout;
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        let hint = self.leader.load(Ordering::Relaxed);
        let mut at = ids.iter().position(|&x| x == hint).unwrap_or(0);
        let mut misses = 0;
        let mut last = String::from("no node answered");
        while tokio::time::Instant::now() < deadline {
            let id = ids[at % ids.len()];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let req = self.request(reqwest::Method::POST, id, path).map(|r| {
                r.timeout(left.min(per_try).max(Duration::from_millis(100)))
                    .json(body)
            });
            let answer = match req {
                Ok(req) => Self::answer_with_status::<R>(req).await,
                Err(e) => Err(e),
            };
            match answer.map(|(status, r)| (status, r.answer())) {
                // A refusal no other node or later try would change.
                Ok((status, Answer::Failed(e)))
                    if status == StatusCode::BAD_REQUEST || status == StatusCode::CONFLICT =>
                {
                    return Err(e)
                }
                Err(e) if e.starts_with(REFUSED) => return Err(e),
                Ok((_, Answer::Done(out))) => {
                    // The next request starts at this leader.
                    self.leader.store(id, Ordering::Relaxed);
                    return Ok(out);
                }
                Ok((_, Answer::Leader(Some(l)))) if l != id && misses < 2 * ids.len() => {
                    at = ids.iter().position(|&x| x == l).unwrap_or(at + 1);
                    misses += 1;
                    continue;
                }
                Ok((_, Answer::Leader(_))) => last = format!("node {id}: not the leader"),
                Ok((_, Answer::Failed(e))) | Err(e) => last = format!("node {id}: {e}"),
            }
            at += 1;
            misses += 1;
            // Pause only once every node has been tried: an election is
            // under way, or no node answers.
            if misses >= ids.len() {
                misses = 0;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(last)
    }

    /// Run `run`'s transactions, replayed from node `id`'s log.
    pub async fn replay(&self, id: NodeId, run: RunId) -> Result<RunReplay, String> {
        let req = self.request(reqwest::Method::GET, id, &format!("/api/replay/{run}"))?;
        Self::answer::<Result<RunReplay, String>>(req).await?
    }
}

/// A transaction of the demo and the tests: key `k{n}` of `run` set to a
/// value naming both.
pub fn demo_txn(run: RunId, n: u64) -> RunTxn {
    RunTxn {
        run_id: run,
        txn_id: n,
        ops: vec![TxnOp::Put {
            key: format!("k{n}").into_bytes(),
            value: format!("{run}/{n}").into_bytes(),
        }],
        timestamp: 0,
    }
}

/// Three (or more) `walnode run` processes on 127.0.0.1, for the demo,
/// the bench and the tests. Every process it starts it stops: on
/// [`ProcCluster::kill`], and on drop.
pub struct ProcCluster {
    exe: PathBuf,
    base: PathBuf,
    peers: Peers,
    listen: BTreeMap<NodeId, String>,
    token: Token,
    tls: Option<TlsFiles>,
    children: BTreeMap<NodeId, std::process::Child>,
}

/// The environment variable `walnode run` reads the cluster's token from
/// (when no `--token-file` is given).
pub const TOKEN_ENV: &str = "WALNODE_TOKEN";

/// `n` free ports on 127.0.0.1 (bound, then released).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl ProcCluster {
    /// Plans `n` nodes under `base` (`node-{id}`), on free ports, with a
    /// random token; starts none.
    pub fn new(exe: impl Into<PathBuf>, base: impl Into<PathBuf>, n: u64) -> std::io::Result<Self> {
        let ports = free_ports(n as usize)?;
        let peers = (1..=n)
            .zip(ports)
            .map(|(id, p)| (id, format!("127.0.0.1:{p}")))
            .collect();
        Ok(ProcCluster {
            exe: exe.into(),
            base: base.into(),
            peers,
            listen: BTreeMap::new(),
            token: Token::random(),
            tls: None,
            children: BTreeMap::new(),
        })
    }

    /// Every node serves and calls HTTPS with `files` (one certificate,
    /// valid for 127.0.0.1, for all) from its next start on; clients
    /// trust its certificate authority.
    pub fn use_tls(&mut self, files: TlsFiles) {
        self.tls = Some(files);
    }

    /// Node `id` listens on `addr` (a proxy forwards its own address
    /// there) from its next start on.
    pub fn listen_at(&mut self, id: NodeId, addr: String) {
        self.listen.insert(id, addr);
    }

    /// The cluster's token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The members.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The peer list as `walnode run --peers` takes it.
    pub fn peer_arg(&self) -> String {
        self.peers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s directory.
    pub fn dir(&self, id: NodeId) -> PathBuf {
        self.base.join(format!("node-{id}"))
    }

    /// Starts node `id` (its output goes to `node-{id}.log` beside its dir).
    pub fn start(&mut self, id: NodeId) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join(format!("node-{id}.log")))?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("run")
            .arg("--id")
            .arg(id.to_string())
            .arg("--dir")
            .arg(self.dir(id))
            .arg("--peers")
            .arg(self.peer_arg());
        if let Some(addr) = self.listen.get(&id) {
            cmd.arg("--listen").arg(addr);
        }
        if let Some(t) = &self.tls {
            cmd.arg("--tls-cert")
                .arg(&t.cert)
                .arg("--tls-key")
                .arg(&t.key)
                .arg("--tls-ca")
                .arg(&t.ca);
        }
        let child = cmd
            .env(TOKEN_ENV, self.token.as_str())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.insert(id, child);
        Ok(())
    }

    /// Pauses node `id` (SIGSTOP): it keeps its sockets but answers
    /// nothing, as a process stalled longer than an election timeout.
    pub fn pause(&self, id: NodeId) {
        self.signal(id, rustix::process::Signal::STOP);
    }

    /// Resumes a paused node `id` (SIGCONT).
    pub fn resume(&self, id: NodeId) {
        self.signal(id, rustix::process::Signal::CONT);
    }

    fn signal(&self, id: NodeId, sig: rustix::process::Signal) {
        if let Some(pid) = self
            .children
            .get(&id)
            .and_then(|c| rustix::process::Pid::from_raw(c.id() as i32))
        {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.children.keys().copied().collect()
    }

    /// A client of every node, with the cluster's token (and its
    /// certificate authority, over TLS).
    pub fn client(&self) -> HttpClient {
        let client = HttpClient::new(self.peers.clone()).with_token(Some(self.token.clone()));
        match &self.tls {
            // The files were read when the nodes started; a client that
            // cannot read them reaches no node, which the caller sees.
            Some(t) => client.clone().with_tls(&t.ca).unwrap_or(client),
            None => client,
        }
    }

    /// Waits until every running node answers and one leader is known to
    /// all of them; returns it.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<NodeId, String> {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for id in self.running() {
                match client.status(id).await {
                    Some(s) => leaders.push(s.leader),
                    None => leaders.push(None),
                }
            }
            if let Some(Some(l)) = leaders.first().copied() {
                if leaders.iter().all(|x| *x == Some(l)) && self.children.contains_key(&l) {
                    return Ok(l);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no common leader after {timeout:?}: {leaders:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node answers its status.
    pub async fn wait_up(&self, timeout: Duration) -> Result<(), String> {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + timeout;
        for id in self.running() {
            while client.status(id).await.is_none() {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("node {id} did not come up in {timeout:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Waits until every running node has applied `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), String> {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + timeout;
        for id in self.running() {
            loop {
                let s = client.status(id).await;
                if s.as_ref().and_then(|s| s.last_applied) >= Some(index) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("node {id} has not applied {index}: {s:?}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.running();
        for id in ids {
            self.kill(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_ip_addresses_or_host_names() {
        let p =
            parse_peers("1=127.0.0.1:7001, 2=localhost:7002,3=[::1]:7003,4=n-4.local:1").unwrap();
        assert_eq!(p[&2], "localhost:7002");
        assert_eq!(p.len(), 4);
        for bad in [
            "1=localhost",
            "1=:7001",
            "1=local host:7001",
            "1=localhost:70000",
            "1=::1:7001",
        ] {
            let e = parse_peers(bad).unwrap_err();
            assert!(e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
    }
}
