//! `GET /metrics`: the node in Prometheus' text format (OpenMetrics), with the `prometheus-client`
//! crate. Two kinds of metric:
//! - kept as the node runs: per-endpoint request counters and latency histograms, search and
//!   write counters (updated by the `track` middleware);
//! - read at scrape time: the Raft state (role, term, commit, applied, log bounds, membership,
//!   each peer's lag on the leader), the transport's counters, each collection's record count.
//!
//! `docs/http-api.md` lists every metric.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::App;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabels {
    collection: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FsyncLabels {
    kind: String,
}

fn fsync_histogram() -> Histogram {
    // 10 µs to about 0.33 s, doubling.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 16))
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s, doubling.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The metrics kept as the node runs (cheap to clone: each family is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    searches: Family<OutcomeLabels, Counter>,
    writes: Family<OutcomeLabels, Counter>,
    /// Raft proposals this node made for HTTP writes, by outcome (`ok` or the error code).
    proposals: Family<OutcomeLabels, Counter>,
    /// fsync latency of the Raft log and the database file (`kind`: `file` or `dir`).
    fsync: Family<FsyncLabels, Histogram, fn() -> Histogram>,
    /// Snapshot chunks through the transport.
    pub snapshots: Arc<super::observed::SnapshotCounters>,
}

impl Metrics {
    /// The disk a node's Raft log and database are opened on: the OS file system with every
    /// fsync timed.
    pub fn timed_disk(&self) -> Arc<dyn needle_core::disk::Disk> {
        let h = |kind: &str| {
            self.fsync
                .get_or_create(&FsyncLabels {
                    kind: kind.to_string(),
                })
                .clone()
        };
        Arc::new(super::observed::TimedDisk::new(
            needle_core::disk::OsDisk::shared(),
            h("file"),
            h("dir"),
        ))
    }

    /// Counts one proposal's outcome: `ok`, or the API error code it was answered with.
    pub fn proposal(&self, outcome: &str) {
        self.proposals
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            searches: Family::default(),
            writes: Family::default(),
            proposals: Family::default(),
            fsync: Family::new_with_constructor(fsync_histogram as fn() -> Histogram),
            snapshots: Arc::default(),
        }
    }
}

/// Whether a request is a search, a write, or neither (by its route).
fn kind(method: &axum::http::Method, route: &str) -> Option<&'static str> {
    use axum::http::Method;
    if route.ends_with("/search") {
        return Some("search");
    }
    if route.starts_with("/v1/collections")
        && matches!(*method, Method::POST | Method::PATCH | Method::DELETE)
    {
        return Some("write");
    }
    None
}

/// Middleware: counts each request and observes its latency, per method and matched route
/// (the route pattern, `/v1/collections/{collection}/search`, never the concrete path).
pub async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status();
    let m = &app.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    m.latency
        .get_or_create(&RouteLabels {
            method: method.to_string(),
            route: route.clone(),
        })
        .observe(seconds);
    let outcome = OutcomeLabels {
        outcome: if status.is_success() { "ok" } else { "error" }.to_string(),
    };
    match kind(&method, &route) {
        Some("search") => {
            m.searches.get_or_create(&outcome).inc();
        }
        Some(_) => {
            m.writes.get_or_create(&outcome).inc();
        }
        None => {}
    }
    response
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = tokio::task::spawn_blocking(move || render(&app)).await;
    match text {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}")).into_response(),
    }
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(
        name,
        help,
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)),
    );
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

fn render(app: &App) -> Result<String, String> {
    let mut r = Registry::with_prefix("needle");
    let m = &app.metrics;
    r.register(
        "http_requests",
        "HTTP requests answered, by method, route and status",
        m.requests.clone(),
    );
    r.register(
        "http_request_duration_seconds",
        "HTTP request latency, by method and route",
        m.latency.clone(),
    );
    r.register(
        "searches",
        "Searches answered, by outcome",
        m.searches.clone(),
    );
    r.register(
        "writes",
        "Record and collection writes answered, by outcome",
        m.writes.clone(),
    );
    r.register(
        "raft_proposals",
        "Raft proposals made for HTTP writes, by outcome (ok, or the error code: proposal_dropped, timeout, not_leader, leadership_lost, ...)",
        m.proposals.clone(),
    );
    r.register(
        "fsync_duration_seconds",
        "fsync latency of the Raft log and the database file (kind: file, or dir for a directory)",
        m.fsync.clone(),
    );
    {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &m.snapshots;
        counter(
            &mut r,
            "raft_snapshots_sent",
            "Snapshots streamed to a peer (counted at their last chunk)",
            s.sent.load(Relaxed),
        );
        counter(
            &mut r,
            "raft_snapshots_received",
            "Snapshots received from the leader (counted at their last chunk)",
            s.received.load(Relaxed),
        );
        counter(
            &mut r,
            "raft_snapshot_bytes_sent",
            "Snapshot bytes streamed to peers",
            s.bytes_sent.load(Relaxed),
        );
        counter(
            &mut r,
            "raft_snapshot_bytes_received",
            "Snapshot bytes received",
            s.bytes_received.load(Relaxed),
        );
    }

    let node = &app.node;
    gauge(
        &mut r,
        "raft_role",
        "0 follower, 1 pre-candidate, 2 candidate, 3 leader",
        node.role() as u64,
    );
    gauge(
        &mut r,
        "raft_is_leader",
        "1 on the leader",
        u64::from(node.role() == needle_raft::Role::Leader),
    );
    gauge(
        &mut r,
        "raft_leader_id",
        "The leader this node knows (0: none)",
        node.leader().unwrap_or(0),
    );
    gauge(&mut r, "raft_term", "The current Raft term", node.term());
    gauge(
        &mut r,
        "raft_applied_index",
        "The highest log index applied to the database",
        node.applied_index(),
    );
    if let Ok(s) = node.status() {
        gauge(
            &mut r,
            "raft_commit_index",
            "The highest log index known committed",
            s.commit,
        );
        gauge(
            &mut r,
            "raft_first_index",
            "The first index still in the Raft log",
            s.first_index,
        );
        gauge(
            &mut r,
            "raft_last_index",
            "The last index in the Raft log",
            s.last_index,
        );
        gauge(
            &mut r,
            "raft_snapshot_index",
            "The index of this node's latest snapshot",
            s.snapshot_index,
        );
        gauge(
            &mut r,
            "raft_voters",
            "Voters in the configuration this node applied",
            s.voters.len() as u64,
        );
        gauge(
            &mut r,
            "raft_learners",
            "Learners in that configuration",
            s.learners.len() as u64,
        );
        let lag = Family::<PeerLabels, Gauge>::default();
        let matched = Family::<PeerLabels, Gauge>::default();
        for (id, p) in &s.progress {
            let l = PeerLabels {
                peer: id.to_string(),
            };
            lag.get_or_create(&l)
                .set(i64::try_from(s.commit.saturating_sub(p.matched)).unwrap_or(i64::MAX));
            matched
                .get_or_create(&l)
                .set(i64::try_from(p.matched).unwrap_or(i64::MAX));
        }
        r.register(
            "raft_peer_lag",
            "Entries a peer is behind the commit index (leader only)",
            lag,
        );
        r.register(
            "raft_peer_matched_index",
            "The highest index known on a peer (leader only)",
            matched,
        );
    }
    gauge(
        &mut r,
        "raft_fatal",
        "1 when the Raft thread has stopped on an error",
        u64::from(node.fatal_error().is_some()),
    );

    let t = app.transport.metrics();
    counter(
        &mut r,
        "transport_messages_sent",
        "Raft messages written to a peer",
        t.messages_sent,
    );
    counter(
        &mut r,
        "transport_messages_received",
        "Raft messages received from peers",
        t.messages_received,
    );
    let dropped = Family::<ReasonLabels, Counter>::default();
    for (reason, n) in [
        ("queue_full", t.dropped_queue_full),
        ("oversized", t.dropped_oversized),
        ("unknown_peer", t.dropped_unknown_peer),
        ("in_flight", t.dropped_in_flight),
        ("unreachable", t.dropped_unreachable),
        ("inbound_full", t.dropped_inbound_full),
    ] {
        dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }
    r.register(
        "transport_messages_dropped",
        "Raft messages the transport dropped, by reason",
        dropped,
    );
    counter(
        &mut r,
        "transport_connections_established",
        "Outgoing connections that completed the handshake",
        t.connections_established,
    );
    counter(
        &mut r,
        "transport_connections_accepted",
        "Incoming connections that completed the handshake",
        t.connections_accepted,
    );
    counter(
        &mut r,
        "transport_connect_failures",
        "Outgoing connection attempts that failed",
        t.connect_failures,
    );
    counter(
        &mut r,
        "transport_handshakes_refused",
        "Handshakes refused in either direction",
        t.handshakes_refused,
    );

    let records = Family::<CollectionLabels, Gauge>::default();
    for name in app.db.list_collections() {
        if let Ok(info) = app.db.collection_info(&name) {
            records
                .get_or_create(&CollectionLabels { collection: name })
                .set(i64::try_from(info.count).unwrap_or(i64::MAX));
        }
    }
    r.register(
        "collection_records",
        "Live records per collection on this node",
        records,
    );

    let mut text = String::new();
    encode(&mut text, &r).map_err(|e| e.to_string())?;
    Ok(text)
}
