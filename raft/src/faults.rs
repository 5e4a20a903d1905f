//! Partitions between `walnode` processes, for the fault-injection tests:
//! one HTTP proxy in front of each node, in the test's process.
//!
//! Each node advertises the proxy's address (its address in the peer list)
//! and listens on another port ([`ProcCluster::listen_at`]); the proxy
//! forwards every request to it. Nodes name themselves in every RPC
//! ([`FROM_HEADER`]); a request without the header is a client's. A cut
//! link `a → b` loses every request `a` sends to `b` and every answer `b`
//! sends to `a`: either the request is refused at once (a reset
//! connection) or it is held until the sender gives up (dropped packets),
//! as the cut was made. A request already forwarded when its answer's link
//! is cut took effect but its answer is lost, as on a real network.
//!
//! Everything runs on loopback, needs no privileges, and stops when the
//! [`Partitions`] is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;

use crate::node::{free_ports, ProcCluster, FROM_HEADER, MAX_BODY};
use crate::types::NodeId;

/// The sender of a request without [`FROM_HEADER`]: a client.
pub const CLIENT: NodeId = 0;

/// How a cut link loses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Refused at once (as a reset connection).
    Refuse,
    /// Held until the sender gives up (as dropped packets).
    Drop,
}

#[derive(Default)]
struct Links {
    /// Cut directed links `(from, to)`, and how each loses requests.
    cut: BTreeMap<(NodeId, NodeId), Loss>,
}

/// The links between the nodes of a [`ProcCluster`] (and its clients),
/// which a test cuts and heals.
pub struct Partitions {
    links: Arc<Mutex<Links>>,
    nodes: BTreeSet<NodeId>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Proxy {
    to: NodeId,
    backend: String,
    links: Arc<Mutex<Links>>,
    client: reqwest::Client,
}

/// How long a dropped request is held: longer than any sender waits.
const HOLD: Duration = Duration::from_secs(30);

impl Partitions {
    /// Puts a proxy at every node's address of `procs` and has each node
    /// listen on a port of its own from its next start: call before
    /// starting the nodes. Must run inside a Tokio runtime.
    pub async fn install(procs: &mut ProcCluster) -> std::io::Result<Partitions> {
        let links = Arc::new(Mutex::new(Links::default()));
        let peers = procs.peers().clone();
        let ports = free_ports(peers.len())?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(std::io::Error::other)?;
        let mut servers = Vec::new();
        for ((&id, addr), port) in peers.iter().zip(ports) {
            let backend = format!("127.0.0.1:{port}");
            procs.listen_at(id, backend.clone());
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let proxy = Proxy {
                to: id,
                backend,
                links: Arc::clone(&links),
                client: client.clone(),
            };
            let app = Router::new().fallback(forward).with_state(proxy);
            servers.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        Ok(Partitions {
            links,
            nodes: peers.keys().copied().collect(),
            servers,
        })
    }

    /// Cuts the link `from → to` (requests `from` sends to `to`, and
    /// answers `to` sends back to `from`).
    pub fn cut(&self, from: NodeId, to: NodeId, loss: Loss) {
        self.links.lock().cut.insert((from, to), loss);
    }

    /// Cuts `group` from every other node, both ways; clients still reach
    /// every node.
    pub fn isolate(&self, group: &[NodeId], loss: Loss) {
        for &a in group {
            for &b in self.nodes.iter().filter(|b| !group.contains(b)) {
                self.cut(a, b, loss);
                self.cut(b, a, loss);
            }
        }
    }

    /// Cuts `a` and `b` from each other, both ways (a bridge: a third
    /// node still reaches both).
    pub fn separate(&self, a: NodeId, b: NodeId, loss: Loss) {
        self.cut(a, b, loss);
        self.cut(b, a, loss);
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.links.lock().cut.clear();
    }

    /// The cut links.
    pub fn cuts(&self) -> Vec<(NodeId, NodeId)> {
        self.links.lock().cut.keys().copied().collect()
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

impl Proxy {
    fn loss(&self, from: NodeId, to: NodeId) -> Option<Loss> {
        self.links.lock().cut.get(&(from, to)).copied()
    }
}

/// Loses a request or an answer the way its link was cut.
async fn lose(loss: Loss) -> Response {
    if loss == Loss::Drop {
        tokio::time::sleep(HOLD).await;
    }
    (StatusCode::BAD_GATEWAY, "partitioned").into_response()
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let from = req
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLIENT);
    if let Some(loss) = p.loss(from, p.to) {
        return lose(loss).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::BAD_REQUEST, "body too large").into_response();
    };
    let mut headers = parts.headers.clone();
    for h in [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ] {
        headers.remove(h);
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let sent = p
        .client
        .request(parts.method, format!("http://{}{path}", p.backend))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        // The node is down (killed) or paused past the sender's patience.
        Err(_) => return (StatusCode::BAD_GATEWAY, "node down").into_response(),
    };
    let status = answer.status();
    let mut headers = answer.headers().clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let Ok(bytes) = answer.bytes().await else {
        return (StatusCode::BAD_GATEWAY, "node down").into_response();
    };
    // The request took effect; its answer may still be lost.
    if let Some(loss) = p.loss(p.to, from) {
        return lose(loss).await;
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
