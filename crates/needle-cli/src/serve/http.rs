//! The HTTP JSON API of a node (`docs/http-api.md` documents every endpoint). Each handler parses
//! its request into typed values, then calls the blocking `ReplicatedDatabase` on tokio's
//! blocking pool. Writes go through Raft; a follower answers them with `not_leader` naming the
//! leader's HTTP address. Reads pass a read barrier (`linearizable` by default, or `follower`
//! for a bounded-staleness local read) and then read the local database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use needle_core::{CollectionConfig, CollectionInfo, Distance, Filter, Record, SearchOptions};
use needle_raft::{BatchRecord, ReadConsistency, ReplicatedCommand, RequestId, Role};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::App;
use super::api_error::{ApiError, from_core, from_raft};
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::RecordJson;

type Shared = State<Arc<App>>;
type Answer = std::result::Result<Response, ApiError>;

/// Serves the API on `listener` until a shutdown signal or `POST /v1/admin/shutdown`.
pub async fn serve(app: Arc<App>, listener: std::net::TcpListener, max_body: usize) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| CliError::io("starting the HTTP listener", e))?;
    let (router, _) = api_routes().split_for_parts();
    let router = router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            super::metrics::track,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), forward_writes))
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .with_state(app.clone());
    let stop = app.clone();
    match app.http_tls.clone() {
        None => axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop_signal(&stop).await })
            .await
            .map_err(|e| CliError::io("serving HTTP", e)),
        Some(config) => {
            let listener = super::tls::TlsListener::new(listener, config, app.id)
                .map_err(|e| CliError::io("starting the HTTPS listener", e))?;
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop_signal(&stop).await })
                .await
                .map_err(|e| CliError::io("serving HTTPS", e))
        }
    }
}

/// Every route of the API with its OpenAPI description: the router and `GET /v1/openapi.json`
/// are built from this one list (utoipa-axum), from each handler's `#[utoipa::path]` and the
/// request types' `ToSchema` derives, so a route cannot be served and left out of the description.
fn api_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(list_collections, create_collection))
        .routes(routes!(collection_info, drop_collection))
        .routes(routes!(insert))
        .routes(routes!(insert_batch))
        .routes(routes!(get_record, update, delete_record))
        .routes(routes!(list_ids))
        .routes(routes!(count))
        .routes(routes!(scroll))
        .routes(routes!(get_many))
        .routes(routes!(delete_many))
        .routes(routes!(delete_by_filter))
        .routes(routes!(list_indexes, create_index))
        .routes(routes!(drop_index))
        .routes(routes!(search))
        .routes(routes!(compact))
        .routes(routes!(add_node))
        .routes(routes!(remove_node))
        .routes(routes!(register_peer))
        .routes(routes!(transfer_leader))
        .routes(routes!(shutdown))
        .routes(routes!(snapshot))
        .routes(routes!(super::metrics::metrics))
        .routes(routes!(livez))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
}

/// The OpenAPI 3 description of the API, as `GET /v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Needle",
        description = "The HTTP API of a node of a replicated Needle cluster (docs/http-api.md). \
            Writes go through Raft and are answered by the leader (a follower answers 421 \
            not_leader, or forwards with --forward-writes); every write may carry an \
            Idempotency-Key; reads take a consistency level."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
struct ApiDoc;

/// `--token-file`: every request but the probes carries `Authorization: Bearer <token>`.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The body of every error answer (`docs/http-api.md`, "Errors"); some codes add fields
/// (`leader_id`, `leader_http`, `may_have_been_applied`, `field`, `max`, `record`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // only described: `ApiError` writes the body
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)] // only described: `ApiError` writes the body
struct ErrorDetail {
    /// A stable, machine-readable code (`not_leader`, `dimension_mismatch`, …).
    code: String,
    /// What went wrong and where, for a person.
    message: String,
}

/// `GET /v1/openapi.json`: this API's OpenAPI 3 description.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI description", body = Object)))]
async fn openapi_json() -> Response {
    static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(SPEC.get_or_init(|| serde_json::to_value(openapi()).unwrap_or(Value::Null)))
        .into_response()
}

async fn stop_signal(app: &App) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
        _ = app.shutdown.notified() => {}
    }
}

// ---- plumbing ----------------------------------------------------------------------------------

/// Every request carries `Authorization: Bearer <token>` when the node has a token (except the
/// probes `/livez` and `/readyz`, which say no more than whether the node is up).
async fn authenticate(State(app): Shared, request: Request, next: Next) -> Response {
    let probe = matches!(request.uri().path(), "/livez" | "/readyz");
    if let Some(token) = app.token.as_ref().filter(|_| !probe) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token (send Authorization: Bearer <token>)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Set on a request that a follower forwarded, so that it is never forwarded twice.
const FORWARDED_BY: &str = "needle-forwarded-by";

/// Whether `method path` is a write that `--forward-writes` sends on to the leader: record and
/// collection writes, and membership changes. Searches (a `POST` that reads), peer
/// registration and shutdown are this node's own business.
fn is_forwardable(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if !matches!(*method, Method::POST | Method::PATCH | Method::DELETE) {
        return false;
    }
    (path.starts_with("/v1/collections") && !is_read_by_post(path))
        || path.starts_with("/v1/cluster/nodes")
        || path == "/v1/cluster/leader"
}

/// The reads that take their arguments in a POST body.
fn is_read_by_post(path: &str) -> bool {
    ["/search", "/count", "/scroll", "/records/get"]
        .iter()
        .any(|end| path.ends_with(end))
}

/// With `--forward-writes`, a follower that knows the leader's HTTP address sends a write on to
/// it, `Idempotency-Key` and all, and answers with the leader's answer. Without a known leader
/// the write goes to its handler, which answers `not_leader` or `no_leader` as usual.
async fn forward_writes(State(app): Shared, request: Request, next: Next) -> Response {
    if !app.forward_writes
        || !is_forwardable(request.method(), request.uri().path())
        || request.headers().contains_key(FORWARDED_BY)
        || app.node.role() == Role::Leader
    {
        return next.run(request).await;
    }
    let Some((leader, addr)) = app
        .node
        .leader()
        .and_then(|l| Some((l, app.http_of(l)?.parse::<SocketAddr>().ok()?)))
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, app.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is over {} bytes", app.max_body),
            )
            .into_response();
        }
    };
    let key = parts
        .headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = parts.method.to_string();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
    let me = app.id.to_string();
    let token = app.token.clone();
    let tls = app.client_tls.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut headers = vec![(FORWARDED_BY, me.as_str())];
        if let Some(k) = &key {
            headers.push(("Idempotency-Key", k.as_str()));
        }
        Client::new(addr)
            .with_token(token)
            .with_tls(tls)
            .with_timeout(std::time::Duration::from_secs(60))
            .request_with_headers(&method, &path, Some(&bytes), &headers)
            .map_err(|e| (e, key))
    })
    .await;
    match answer {
        Ok(Ok(r)) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, Json(r.body)).into_response();
            if let Ok(v) = leader.to_string().parse() {
                response.headers_mut().insert("needle-forwarded-to", v);
            }
            response
        }
        Ok(Err((e, key))) => {
            // Refused before anything was sent: nothing can have been applied. Any later
            // failure may come after the leader took the write.
            let refused = e.kind() == std::io::ErrorKind::ConnectionRefused;
            ApiError::new(
                if refused {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::GATEWAY_TIMEOUT
                },
                "forward_failed",
                format!("forwarding the write to the leader, node {leader} at {addr}, failed: {e}; retry with the same Idempotency-Key"),
            )
            .with("may_have_been_applied", json!(!refused))
            .with("leader_id", json!(leader))
            .with("idempotency_key", json!(key))
            .into_response()
        }
        Err(e) => ApiError::internal(format!("forwarding failed: {e}")).into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        format!(
            "no endpoint {} {} (see docs/http-api.md)",
            request.method(),
            request.uri().path()
        ),
    )
}

/// A JSON request body whose rejections (malformed JSON, a wrong field, a missing
/// `Content-Type`, a body over the limit) are answered in the API's error format.
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(body_error(rejection)),
        }
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    // axum answers 422 for JSON of the wrong shape; the API calls every malformed body 400.
    let (status, code) = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        _ => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    ApiError::new(status, code, rejection.body_text())
}

/// Runs blocking work (anything that waits on Raft) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::result::Result<T, ApiError> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("a request handler failed: {e}")))?
}

fn raft_error(app: &App, e: needle_raft::NeedleError) -> ApiError {
    from_raft(e, |id| app.http_of(id))
}

/// A write's Raft proposal, counted in `/metrics` (`needle_raft_proposals_total`) by outcome —
/// `ok` or the API error code it is answered with — with its error in the API's form.
fn proposed<T>(app: &App, r: needle_raft::Result<T>) -> std::result::Result<T, ApiError> {
    match r {
        Ok(v) => {
            app.metrics.proposal("ok");
            Ok(v)
        }
        Err(e) => {
            let e = raft_error(app, e);
            app.metrics.proposal(e.code);
            Err(e)
        }
    }
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Ok((status, Json(body)).into_response())
}

/// The header that makes a write safe to retry: its value becomes the write's Raft request id,
/// so a retry with the same key is applied at most once and answered with the first outcome
/// (within the state machine's dedup window; see `docs/http-api.md`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest `Idempotency-Key` accepted.
const MAX_KEY_LEN: usize = 255;

/// A write's request id: from the `Idempotency-Key` header when given, else fresh from the node.
struct WriteId(Option<RequestId>);

impl WriteId {
    fn get(&self, app: &App) -> RequestId {
        self.0.unwrap_or_else(|| app.node.next_request_id())
    }

    /// Whether the client gave a key: a keyed write may be a retry of one that already applied,
    /// so checks against the current state (a collection that the first attempt dropped) are
    /// left to the state machine, which answers a retry with the first outcome.
    fn keyed(&self) -> bool {
        self.0.is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, ApiError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(WriteId(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| {
                !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
            })
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
                ))
                .with("field", json!("Idempotency-Key"))
            })?;
        Ok(WriteId(Some(request_id_of_key(key))))
    }
}

/// The Raft request id of an idempotency key: SHA-256 of the key, split into the id's two
/// halves. Keys from different clients collide with probability 2^-128; the ids a node makes
/// for unkeyed writes (its id and clock in `client`, a counter in `seq`) are a different
/// population, met by a key's hash with the same odds.
pub fn request_id_of_key(key: &str) -> RequestId {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let half = |r: std::ops::Range<usize>| u64::from_le_bytes(d[r].try_into().unwrap_or_default());
    RequestId {
        client: half(0..8),
        seq: half(8..16),
    }
}

/// A write is refused at once on a follower (Raft would refuse it too, one round trip later).
fn require_leader(app: &App) -> std::result::Result<(), ApiError> {
    if app.node.role() == Role::Leader {
        return Ok(());
    }
    let leader = app.node.leader();
    Err(ApiError::not_leader(
        leader,
        leader.and_then(|l| app.http_of(l)),
    ))
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Consistency {
    /// ReadIndex through the leader, then a wait until this node has applied that index.
    #[default]
    Linearizable,
    /// This node's own state, refused when it has not heard from a leader within
    /// `--max-staleness-ms`.
    Follower,
}

impl Consistency {
    /// needle-raft's level: `follower` is bounded by this node's `--max-staleness-ms`.
    fn level(self, app: &App) -> ReadConsistency {
        match self {
            Consistency::Linearizable => ReadConsistency::Linearizable,
            Consistency::Follower => {
                ReadConsistency::BoundedStaleness(app.node.config().max_staleness)
            }
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReadParams {
    /// `linearizable` (default) or `follower`.
    #[serde(default)]
    consistency: Consistency,
    /// `/v1/status` only: add the database's `state_checksum`.
    #[serde(default)]
    checksum: bool,
}

fn barrier(app: &App, c: Consistency) -> std::result::Result<(), ApiError> {
    app.node
        .read_barrier(c.level(app))
        .map_err(|e| raft_error(app, e))
}

fn info_json(i: &CollectionInfo) -> Value {
    crate::commands::config_json(i)
}

/// Checks a write's vectors against the collection as this (leader) node has it, so that a
/// request with a wrong dimension is refused before it reaches the Raft log.
fn check_vectors<'a>(
    app: &App,
    collection: &str,
    vectors: impl Iterator<Item = &'a [f32]>,
) -> std::result::Result<(), ApiError> {
    let info = app.db.collection_info(collection).map_err(from_core)?;
    for (i, v) in vectors.enumerate() {
        if v.len() != info.dimensions {
            return Err(from_core(needle_core::Error::DimensionMismatch {
                collection: collection.to_string(),
                expected: info.dimensions,
                got: v.len(),
            })
            .with("record", json!(i)));
        }
    }
    Ok(())
}

// ---- backup ------------------------------------------------------------------------------------

/// The headers of `GET /v1/snapshot`.
pub const SNAPSHOT_TERM: &str = "needle-raft-term";
pub const SNAPSHOT_INDEX: &str = "needle-raft-index";
pub const SNAPSHOT_CHECKSUM: &str = "needle-state-checksum";

/// `GET /v1/snapshot`: a consistent snapshot of the database in the `.needle` file format,
/// taken after a linearizable read barrier (so it holds every write acknowledged before the
/// request), with the Raft term, the applied index it reflects and its state checksum in the
/// headers. The snapshot is consistent with those headers: it is taken between two readings of
/// the applied index and the checksum that agree (retried a few times under writes).
#[utoipa::path(
    get,
    path = "/v1/snapshot",
    tag = "admin",
    summary = "A consistent backup in the .needle file format",
    responses((status = 200, description = "The snapshot", body = Vec<u8>, content_type = "application/octet-stream", headers(("needle-raft-term" = u64, description = "The Raft term"), ("needle-raft-index" = u64, description = "The applied index the snapshot reflects"), ("needle-state-checksum" = String, description = "The state checksum at that index, 16 hex digits"))), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn snapshot(State(app): Shared) -> Answer {
    let (bytes, term, index, checksum) = blocking(move || {
        barrier(&app, Consistency::Linearizable)?;
        for _ in 0..5 {
            let (index, checksum) = (app.node.applied_index(), app.node.state_checksum());
            let mut bytes = Vec::new();
            app.db
                .write_snapshot(&mut bytes, index)
                .map_err(from_core)?;
            if (app.node.applied_index(), app.node.state_checksum()) == (index, checksum) {
                return Ok((bytes, app.node.term(), index, checksum));
            }
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "writes kept changing the database while the snapshot was taken; retry",
        ))
    })
    .await?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE.as_str(),
                "application/octet-stream".to_string(),
            ),
            (SNAPSHOT_TERM, term.to_string()),
            (SNAPSHOT_INDEX, index.to_string()),
            (SNAPSHOT_CHECKSUM, format!("{checksum:016x}")),
        ],
        bytes,
    )
        .into_response())
}

// ---- probes ------------------------------------------------------------------------------------

/// `GET /livez`: 200 while the process serves HTTP and its Raft thread runs; 503 once the Raft
/// thread has stopped on an error (restart the process).
#[utoipa::path(
    get,
    path = "/livez",
    tag = "probes",
    summary = "Liveness probe (no token)",
    responses((status = 200, description = "Live", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn livez(State(app): Shared) -> Answer {
    match app.node.fatal_error() {
        None => ok(StatusCode::OK, json!({"live": true, "id": app.id})),
        Some(reason) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_live",
            format!("the Raft thread stopped: {reason}"),
        )),
    }
}

/// `GET /readyz`: 200 when this node knows a leader and has applied everything that was
/// committed when it started (proved once by a linearizable read barrier: a ReadIndex round
/// through the leader, then a wait until this node has applied that index); else 503 with the
/// reason. After that first barrier, ready while a leader is known.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    summary = "Readiness probe (no token)",
    responses((status = 200, description = "Ready", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn readyz(State(app): Shared) -> Answer {
    blocking(move || {
        let not_ready =
            |reason: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason);
        if let Some(reason) = app.node.fatal_error() {
            return Err(not_ready(format!("the Raft thread stopped: {reason}")));
        }
        let Some(leader) = app.node.leader() else {
            // A member told this node it is no longer in the configuration: say so.
            if let Ok(Some(index)) = app.node.status().map(|s| s.removed) {
                return Err(not_ready(format!(
                    "removed from the cluster: a member applied a configuration without this node at index {index}"
                )));
            }
            return Err(not_ready("no leader known".into()));
        };
        if !app.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            app.node
                .read_barrier(ReadConsistency::Linearizable)
                .map_err(|e| not_ready(format!("not caught up with the leader yet: {e}")))?;
            app.caught_up
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(json!({
            "ready": true,
            "id": app.id,
            "leader": leader,
            "applied_index": app.node.applied_index(),
        }))
    })
    .await
    .map(|body| (StatusCode::OK, Json(body)).into_response())
}

// ---- status and cluster ------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "cluster",
    summary = "This node's Raft state",
    params(ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn status(State(app): Shared, Query(p): Query<ReadParams>) -> Answer {
    let body = blocking(move || {
        let s = app.node.status().map_err(|e| raft_error(&app, e))?;
        let progress: serde_json::Map<String, Value> = s
            .progress
            .iter()
            .map(|(id, p)| {
                (
                    id.to_string(),
                    json!({
                        "matched": p.matched,
                        "next_index": p.next_index,
                        "state": p.state,
                        "recent_active": p.recent_active,
                        "lag": s.commit.saturating_sub(p.matched),
                    }),
                )
            })
            .collect();
        let http_peers: serde_json::Map<String, Value> = app
            .http_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, a)| (id.to_string(), json!(a.to_string())))
            .collect();
        let peers: serde_json::Map<String, Value> = app
            .raft_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, a)| {
                let connected = app.transport.peer_stats(*id).is_some_and(|s| s.connected);
                (
                    id.to_string(),
                    json!({"raft": a.to_string(), "connected": connected}),
                )
            })
            .collect();
        let m = app.transport.metrics();
        let mut body = json!({
            "id": s.id,
            "role": format!("{:?}", s.role).to_lowercase(),
            "term": s.term,
            "leader": s.leader,
            "leader_http": s.leader.and_then(|l| app.http_of(l)),
            "commit": s.commit,
            "applied": s.applied,
            "first_index": s.first_index,
            "last_index": s.last_index,
            "snapshot_index": s.snapshot_index,
            "voters": s.voters,
            "learners": s.learners,
            "progress": progress,
            "http": app.http_addr.to_string(),
            "raft": app.raft_addr.to_string(),
            "http_peers": http_peers,
            "raft_peers": peers,
            "transport": {
                "messages_sent": m.messages_sent,
                "messages_received": m.messages_received,
                "connections_established": m.connections_established,
                "connections_accepted": m.connections_accepted,
                "connect_failures": m.connect_failures,
                "handshakes_refused": m.handshakes_refused,
                "dropped_queue_full": m.dropped_queue_full,
                "last_refusal": m.last_refusal,
            },
            "fatal_error": app.node.fatal_error(),
            "removed": s.removed,
        });
        if p.checksum {
            // Equal on two nodes at equal applied index iff their databases are identical.
            let applied = app.node.applied_index();
            body["state_checksum"] = json!(format!("{:016x}", app.node.state_checksum()));
            body["checksum_applied"] = json!(applied);
        }
        Ok(body)
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NodeAddrs {
    id: u64,
    /// The node's Raft address, `IP:PORT`.
    #[schema(value_type = String)]
    raft: SocketAddr,
    /// The node's HTTP address, `IP:PORT`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    http: Option<SocketAddr>,
}

fn remember(app: &App, n: &NodeAddrs) -> std::result::Result<(), ApiError> {
    if n.id == app.id {
        return Err(ApiError::bad_request(format!("node {} is this node", n.id)));
    }
    app.transport
        .add_peer(n.id, n.raft)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    app.raft_peers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(n.id, n.raft);
    if let Some(h) = n.http {
        app.http_peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n.id, h);
    }
    Ok(())
}

/// Tells this node where another node listens (no membership change).
#[utoipa::path(
    post,
    path = "/v1/cluster/peers",
    tag = "cluster",
    summary = "Tell this node where another node listens",
    request_body = NodeAddrs,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn register_peer(State(app): Shared, Body(n): Body<NodeAddrs>) -> Answer {
    remember(&app, &n)?;
    ok(StatusCode::OK, json!({"ok": true, "id": n.id}))
}

/// Adds a node to the cluster: every known node learns its addresses, then the leader adds it
/// as a learner and promotes it once it has caught up.
#[utoipa::path(
    post,
    path = "/v1/cluster/nodes",
    tag = "cluster",
    summary = "Add a node (leader)",
    request_body = NodeAddrs,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn add_node(State(app): Shared, Body(n): Body<NodeAddrs>) -> Answer {
    require_leader(&app)?;
    remember(&app, &n)?;
    let body = blocking(move || {
        let others: Vec<(u64, SocketAddr)> = app
            .http_peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(id, _)| **id != app.id && **id != n.id)
            .map(|(id, a)| (*id, *a))
            .collect();
        let announce = json!({"id": n.id, "raft": n.raft, "http": n.http});
        let mut informed = Vec::new();
        let mut not_informed = Vec::new();
        for (id, addr) in others {
            let client = Client::new(addr)
                .with_token(app.token.clone())
                .with_tls(app.client_tls.clone())
                .with_timeout(std::time::Duration::from_secs(2));
            match client.post("/v1/cluster/peers", &announce) {
                Ok(r) if r.is_success() => informed.push(id),
                _ => not_informed.push(id),
            }
        }
        app.node.add_node(n.id).map_err(|e| raft_error(&app, e))?;
        let s = app.node.status().map_err(|e| raft_error(&app, e))?;
        Ok(json!({
            "ok": true,
            "voters": s.voters,
            "learners": s.learners,
            "peers_informed": informed,
            "peers_not_informed": not_informed,
        }))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    delete,
    path = "/v1/cluster/nodes/{id}",
    tag = "cluster",
    summary = "Remove a node (leader)",
    params(("id" = u64, Path, description = "The node's id")),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn remove_node(State(app): Shared, Path(id): Path<u64>) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        app.node.remove_node(id).map_err(|e| raft_error(&app, e))?;
        if id != app.id {
            app.transport.remove_peer(id);
        }
        let s = app.node.status().map_err(|e| raft_error(&app, e))?;
        Ok(json!({"ok": true, "voters": s.voters, "learners": s.learners}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Transfer {
    to: u64,
}

#[utoipa::path(
    post,
    path = "/v1/cluster/leader",
    tag = "cluster",
    summary = "Transfer leadership (leader)",
    request_body = Transfer,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn transfer_leader(State(app): Shared, Body(t): Body<Transfer>) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        let started = Instant::now();
        app.node
            .transfer_leadership(t.to)
            .map_err(|e| raft_error(&app, e))?;
        Ok(json!({
            "ok": true,
            "leader": t.to,
            "leader_http": app.http_of(t.to),
            "took_ms": started.elapsed().as_secs_f64() * 1e3,
        }))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    post,
    path = "/v1/admin/shutdown",
    tag = "admin",
    summary = "Stop this node",
    responses((status = 202, description = "Stopping", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn shutdown(State(app): Shared) -> Answer {
    app.shutdown.notify_one();
    ok(
        StatusCode::ACCEPTED,
        json!({"ok": true, "stopping": app.id}),
    )
}

// ---- collections -------------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/collections",
    tag = "collections",
    summary = "List collections",
    params(ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn list_collections(State(app): Shared, Query(p): Query<ReadParams>) -> Answer {
    let body = blocking(move || {
        barrier(&app, p.consistency)?;
        let infos = app
            .db
            .list_collections()
            .iter()
            .map(|n| app.db.collection_info(n).map(|i| info_json(&i)))
            .collect::<needle_core::Result<Vec<_>>>()
            .map_err(from_core)?;
        Ok(json!({"collections": infos}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum DistanceName {
    Cosine,
    Euclidean,
    Dot,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCollection {
    name: String,
    dimensions: usize,
    #[serde(default)]
    distance: Option<DistanceName>,
    #[serde(default)]
    m: Option<usize>,
    #[serde(default)]
    ef_construction: Option<usize>,
    #[serde(default)]
    ef_search: Option<usize>,
    /// `"none"` (default) or `"sq8"`.
    #[serde(default)]
    quantization: Option<QuantizationName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum QuantizationName {
    None,
    Sq8,
}

#[utoipa::path(
    post,
    path = "/v1/collections",
    tag = "collections",
    summary = "Create a collection (leader)",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = CreateCollection,
    responses((status = 201, description = "Created", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn create_collection(
    State(app): Shared,
    key: WriteId,
    Body(c): Body<CreateCollection>,
) -> Answer {
    require_leader(&app)?;
    let default = CollectionConfig::default();
    let config = CollectionConfig {
        distance: match c.distance {
            None | Some(DistanceName::Cosine) => Distance::Cosine,
            Some(DistanceName::Euclidean) => Distance::Euclidean,
            Some(DistanceName::Dot) => Distance::DotProduct,
        },
        m: c.m.unwrap_or(default.m),
        ef_construction: c.ef_construction.unwrap_or(default.ef_construction),
        ef_search: c.ef_search.unwrap_or(default.ef_search),
        quantization: match c.quantization {
            None | Some(QuantizationName::None) => needle_core::Quantization::None,
            Some(QuantizationName::Sq8) => needle_core::Quantization::Sq8,
        },
        ..default
    };
    // Checked by needle-core's own rules first: a bad request never reaches the log.
    needle_core::Database::check_collection(&c.name, c.dimensions, &config).map_err(from_core)?;
    let body = blocking(move || {
        let cmd = ReplicatedCommand::CreateCollection {
            name: c.name.clone(),
            dimensions: c.dimensions,
            config: Some(config),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        let info = app.db.collection_info(&c.name).map_err(from_core)?;
        Ok(json!({"ok": true, "collection": info_json(&info), "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::CREATED, body)
}

#[utoipa::path(
    get,
    path = "/v1/collections/{collection}",
    tag = "collections",
    summary = "One collection",
    params(("collection" = String, Path, description = "The collection's name"), ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn collection_info(
    State(app): Shared,
    Path(collection): Path<String>,
    Query(p): Query<ReadParams>,
) -> Answer {
    let body = blocking(move || {
        barrier(&app, p.consistency)?;
        let info = app.db.collection_info(&collection).map_err(from_core)?;
        Ok(info_json(&info))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}",
    tag = "collections",
    summary = "Drop a collection (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn drop_collection(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            app.db.collection_info(&collection).map_err(from_core)?;
        }
        let cmd = ReplicatedCommand::DropCollection {
            name: collection.clone(),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "dropped": collection, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/compact",
    tag = "collections",
    summary = "Compact a collection on every node (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn compact(State(app): Shared, key: WriteId, Path(collection): Path<String>) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        let before = app.db.collection_info(&collection).map_err(from_core)?;
        let cmd = ReplicatedCommand::Compact {
            collection: collection.clone(),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "removed": before.deleted, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

// ---- records -----------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    id: String,
    vector: Vec<f32>,
    #[serde(default)]
    metadata: Option<Value>,
}

impl From<RecordIn> for Record {
    fn from(r: RecordIn) -> Record {
        Record::new(r.id, r.vector, r.metadata.filter(|m| !m.is_null()))
    }
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/records",
    tag = "records",
    summary = "Insert or replace one record (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = RecordIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn insert(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
    Body(r): Body<RecordIn>,
) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        check_vectors(&app, &collection, std::iter::once(r.vector.as_slice()))?;
        let r = Record::from(r);
        let cmd = ReplicatedCommand::Insert {
            collection: collection.clone(),
            id: r.id,
            vector: r.vector,
            metadata: r.metadata.as_ref().map(ReplicatedCommand::json),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "inserted": 1, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    records: Vec<RecordIn>,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/records/batch",
    tag = "records",
    summary = "Insert many records, all or nothing (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = BatchIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn insert_batch(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
    Body(b): Body<BatchIn>,
) -> Answer {
    require_leader(&app)?;
    if b.records.is_empty() {
        return Err(ApiError::bad_request("\"records\" is empty"));
    }
    let body = blocking(move || {
        check_vectors(
            &app,
            &collection,
            b.records.iter().map(|r| r.vector.as_slice()),
        )?;
        let n = b.records.len();
        let records = b
            .records
            .into_iter()
            .map(|r| {
                let r = Record::from(r);
                BatchRecord {
                    metadata: r.metadata.as_ref().map(ReplicatedCommand::json),
                    id: r.id,
                    vector: r.vector,
                }
            })
            .collect();
        let cmd = ReplicatedCommand::InsertBatch {
            collection: collection.clone(),
            records,
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "inserted": n, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateIn {
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[utoipa::path(
    patch,
    path = "/v1/collections/{collection}/records/{id}",
    tag = "records",
    summary = "Update a record's vector and/or metadata (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("id" = String, Path, description = "The record's id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = UpdateIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn update(
    State(app): Shared,
    key: WriteId,
    Path((collection, id)): Path<(String, String)>,
    Body(u): Body<UpdateIn>,
) -> Answer {
    require_leader(&app)?;
    if u.vector.is_none() && u.metadata.is_none() {
        return Err(ApiError::bad_request(
            "give \"vector\", \"metadata\" or both",
        ));
    }
    let body = blocking(move || {
        check_vectors(&app, &collection, u.vector.as_deref().into_iter())?;
        let cmd = ReplicatedCommand::Update {
            collection: collection.clone(),
            id: id.clone(),
            vector: u.vector,
            metadata: u.metadata.as_ref().map(ReplicatedCommand::json),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "updated": id, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}/records/{id}",
    tag = "records",
    summary = "Delete a record (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("id" = String, Path, description = "The record's id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn delete_record(
    State(app): Shared,
    key: WriteId,
    Path((collection, id)): Path<(String, String)>,
) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            app.db.collection_info(&collection).map_err(from_core)?;
        }
        let existed = proposed(
            &app,
            app.node.delete_with_id(key.get(&app), &collection, &id),
        )?;
        Ok(json!({
            "ok": true,
            "deleted": id,
            "existed": existed,
            "applied_index": app.node.applied_index(),
        }))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/records/{id}",
    tag = "records",
    summary = "One record",
    params(("collection" = String, Path, description = "The collection's name"), ("id" = String, Path, description = "The record's id"), ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn get_record(
    State(app): Shared,
    Path((collection, id)): Path<(String, String)>,
    Query(p): Query<ReadParams>,
) -> Answer {
    let body = blocking(move || {
        barrier(&app, p.consistency)?;
        match app.db.get(&collection, &id).map_err(from_core)? {
            Some(r) => Ok(r),
            None => Err(from_core(needle_core::Error::RecordNotFound {
                collection,
                id,
            })),
        }
    })
    .await?;
    Ok(Json(RecordJson {
        id: &body.id,
        vector: &body.vector,
        metadata: &body.metadata,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/ids",
    tag = "records",
    summary = "Every live id",
    params(("collection" = String, Path, description = "The collection's name"), ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn list_ids(
    State(app): Shared,
    Path(collection): Path<String>,
    Query(p): Query<ReadParams>,
) -> Answer {
    let body = blocking(move || {
        barrier(&app, p.consistency)?;
        let ids = app.db.ids(&collection).map_err(from_core)?;
        Ok(json!({"count": ids.len(), "ids": ids, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SearchIn {
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default)]
    ef: Option<usize>,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    consistency: Consistency,
    #[serde(default)]
    include_vectors: bool,
    /// Drop results farther than this (the collection's distance, as reported).
    #[serde(default)]
    score_threshold: Option<f32>,
}

fn default_k() -> usize {
    10
}

/// The largest `k` a search request may ask for (`docs/http-api.md`): a bound on the work and
/// memory one request can claim, checked before anything is allocated.
pub const MAX_K: usize = 10_000;
/// The largest `ef` a search request may ask for (the same bound as a collection's `ef_search`).
pub const MAX_EF: usize = 10_000;

/// Refuses a `k` or `ef` over the API's caps (400 `invalid_argument`, naming the field).
fn check_search_bounds(k: usize, ef: Option<usize>) -> std::result::Result<(), ApiError> {
    let over = |what: &str, value: usize, max: usize| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("\"{what}\" is {value}; the most a search may ask for is {max}"),
        )
        .with("field", json!(what))
        .with("max", json!(max))
    };
    if k > MAX_K {
        return Err(over("k", k, MAX_K));
    }
    match ef {
        Some(ef) if ef > MAX_EF => Err(over("ef", ef, MAX_EF)),
        _ => Ok(()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/search",
    tag = "search",
    summary = "The k nearest records",
    params(("collection" = String, Path, description = "The collection's name")),
    request_body = SearchIn,
    responses((status = 200, description = "The hits, nearest first", body = SearchAnswer), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn search(
    State(app): Shared,
    Path(collection): Path<String>,
    Body(s): Body<SearchIn>,
) -> Answer {
    check_search_bounds(s.k, s.ef)?;
    let mut opts = SearchOptions::new().with_vectors(s.include_vectors);
    if let Some(f) = &s.filter {
        opts = opts.with_filter(Filter::parse(f).map_err(from_core)?);
    }
    if let Some(ef) = s.ef {
        opts = opts.with_ef_search(ef);
    }
    if let Some(t) = s.score_threshold {
        if t.is_nan() {
            return Err(
                ApiError::bad_request("\"score_threshold\" must be a number")
                    .with("field", json!("score_threshold")),
            );
        }
        opts = opts.with_score_threshold(t);
    }
    let body = blocking(move || {
        barrier(&app, s.consistency)?;
        let started = Instant::now();
        let query = match (s.vector, &s.id) {
            (Some(v), None) => v,
            (None, Some(id)) => {
                app.db
                    .get(&collection, id)
                    .map_err(from_core)?
                    .ok_or_else(|| {
                        from_core(needle_core::Error::RecordNotFound {
                            collection: collection.clone(),
                            id: id.clone(),
                        })
                    })?
                    .vector
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of \"vector\" and \"id\"",
                ));
            }
        };
        let hits = app
            .db
            .search_with(&collection, &query, s.k, &opts)
            .map_err(from_core)?;
        let results = hits
            .into_iter()
            .map(|h| Hit {
                id: h.id,
                distance: h.distance,
                metadata: h.metadata,
                vector: h.vector,
            })
            .collect();
        Ok(SearchAnswer {
            results,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            node: app.id,
        })
    })
    .await?;
    Ok(Json(body).into_response())
}

/// Serialised from `f32` directly, so distances and vectors print in their shortest
/// round-tripping form (`0.0061162710`, not `0.006116271018981934`).
#[derive(Debug, Serialize, ToSchema)]
struct Hit {
    id: String,
    distance: f32,
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<Vec<f32>>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SearchAnswer {
    results: Vec<Hit>,
    took_ms: f64,
    node: u64,
}

// ---- set operations and payload indexes ---------------------------------------------------------

/// The most records one `scroll` page or `records/get` / `records/delete` request may name.
pub const MAX_PAGE: usize = 10_000;

fn parse_filter(f: Option<&Value>) -> std::result::Result<Option<Filter>, ApiError> {
    f.map(|f| Filter::parse(f).map_err(|e| from_core(e).with("field", json!("filter"))))
        .transpose()
}

fn check_ids(ids: &[String]) -> std::result::Result<(), ApiError> {
    if ids.len() > MAX_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!(
                "\"ids\" names {} records; the most is {MAX_PAGE}",
                ids.len()
            ),
        )
        .with("field", json!("ids"))
        .with("max", json!(MAX_PAGE)));
    }
    Ok(())
}

fn record_json(r: &Record, with_vector: bool) -> Value {
    let mut v = json!({"id": r.id, "metadata": r.metadata});
    if with_vector {
        v["vector"] = json!(r.vector);
    }
    v
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CountIn {
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    consistency: Consistency,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/count",
    tag = "records",
    summary = "How many records match a filter",
    params(("collection" = String, Path, description = "The collection's name")),
    request_body = CountIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn count(
    State(app): Shared,
    Path(collection): Path<String>,
    Body(c): Body<CountIn>,
) -> Answer {
    let filter = parse_filter(c.filter.as_ref())?;
    let body = blocking(move || {
        barrier(&app, c.consistency)?;
        let n = app
            .db
            .count_matching(&collection, filter.as_ref())
            .map_err(from_core)?;
        Ok(json!({"count": n, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScrollIn {
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default)]
    consistency: Consistency,
}

fn default_limit() -> usize {
    100
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/scroll",
    tag = "records",
    summary = "Page through the matches in id order",
    params(("collection" = String, Path, description = "The collection's name")),
    request_body = ScrollIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn scroll(
    State(app): Shared,
    Path(collection): Path<String>,
    Body(s): Body<ScrollIn>,
) -> Answer {
    if s.limit == 0 || s.limit > MAX_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("\"limit\" is {}; it must be 1 to {MAX_PAGE}", s.limit),
        )
        .with("field", json!("limit"))
        .with("max", json!(MAX_PAGE)));
    }
    let filter = parse_filter(s.filter.as_ref())?;
    let body = blocking(move || {
        barrier(&app, s.consistency)?;
        let page = app
            .db
            .scroll(&collection, filter.as_ref(), s.cursor.as_deref(), s.limit)
            .map_err(from_core)?;
        let records: Vec<Value> = page
            .records
            .iter()
            .map(|r| record_json(r, s.include_vectors))
            .collect();
        Ok(json!({
            "records": records,
            "next_cursor": page.next_cursor,
            "applied_index": app.node.applied_index(),
        }))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IdsIn {
    ids: Vec<String>,
    #[serde(default)]
    include_vectors: bool,
    #[serde(default)]
    consistency: Consistency,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/records/get",
    tag = "records",
    summary = "Many records by id",
    params(("collection" = String, Path, description = "The collection's name")),
    request_body = IdsIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn get_many(
    State(app): Shared,
    Path(collection): Path<String>,
    Body(g): Body<IdsIn>,
) -> Answer {
    check_ids(&g.ids)?;
    let body = blocking(move || {
        barrier(&app, g.consistency)?;
        let found = app.db.get_many(&collection, &g.ids).map_err(from_core)?;
        let records: Vec<Value> = found
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or(Value::Null, |r| record_json(r, g.include_vectors))
            })
            .collect();
        Ok(json!({"records": records, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeleteIdsIn {
    ids: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/records/delete",
    tag = "records",
    summary = "Delete many records by id (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = DeleteIdsIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn delete_many(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
    Body(d): Body<DeleteIdsIn>,
) -> Answer {
    check_ids(&d.ids)?;
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            app.db.collection_info(&collection).map_err(from_core)?;
        }
        let n = proposed(
            &app,
            app.node
                .delete_many_with_id(key.get(&app), &collection, &d.ids),
        )?;
        Ok(json!({"ok": true, "deleted_count": n, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeleteByFilterIn {
    filter: Value,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/delete-by-filter",
    tag = "records",
    summary = "Delete every match of a filter (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = DeleteByFilterIn,
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn delete_by_filter(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
    Body(d): Body<DeleteByFilterIn>,
) -> Answer {
    let filter =
        Filter::parse(&d.filter).map_err(|e| from_core(e).with("field", json!("filter")))?;
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            app.db.collection_info(&collection).map_err(from_core)?;
        }
        let n = proposed(
            &app,
            app.node
                .delete_by_filter_with_id(key.get(&app), &collection, &filter),
        )?;
        Ok(json!({"ok": true, "deleted_count": n, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

fn index_json(i: &needle_core::IndexInfo) -> Value {
    crate::commands::index_json(i)
}

#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/indexes",
    tag = "indexes",
    summary = "The payload indexes",
    params(("collection" = String, Path, description = "The collection's name"), ReadParams),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn list_indexes(
    State(app): Shared,
    Path(collection): Path<String>,
    Query(p): Query<ReadParams>,
) -> Answer {
    let body = blocking(move || {
        barrier(&app, p.consistency)?;
        let info = app.db.collection_info(&collection).map_err(from_core)?;
        let indexes: Vec<Value> = info.indexes.iter().map(index_json).collect();
        Ok(json!({
            "indexes": indexes,
            "index_codes_bytes": info.index_codes_bytes,
            "applied_index": app.node.applied_index(),
        }))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IndexIn {
    path: String,
    kind: String,
    /// `false`: values held by many records get no graphs of their own (default `true`).
    #[serde(default)]
    value_graphs: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection}/indexes",
    tag = "indexes",
    summary = "Create a payload index (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    request_body = IndexIn,
    responses((status = 201, description = "Created", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn create_index(
    State(app): Shared,
    key: WriteId,
    Path(collection): Path<String>,
    Body(i): Body<IndexIn>,
) -> Answer {
    let kind: needle_core::IndexKind = i
        .kind
        .parse()
        .map_err(|e| from_core(e).with("field", json!("kind")))?;
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            // Refused here with the state machine's own typed error, before a Raft round.
            let c = app.db.collection_info(&collection).map_err(from_core)?;
            if let Some(existing) = c.indexes.iter().find(|x| x.path == i.path) {
                return Err(from_core(needle_core::Error::IndexExists {
                    collection: collection.clone(),
                    path: existing.path.clone(),
                    kind: existing.kind.name().to_string(),
                }));
            }
        }
        let cmd = match i.value_graphs {
            Some(false) => ReplicatedCommand::CreateIndexWithOptions {
                collection: collection.clone(),
                path: i.path.clone(),
                kind: kind.name().to_string(),
                value_graphs: false,
            },
            _ => ReplicatedCommand::CreateIndex {
                collection: collection.clone(),
                path: i.path.clone(),
                kind: kind.name().to_string(),
            },
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        let info = app.db.collection_info(&collection).map_err(from_core)?;
        let index = info
            .indexes
            .iter()
            .find(|x| x.path == i.path)
            .map(index_json);
        Ok(json!({"ok": true, "index": index, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::CREATED, body)
}

#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}/indexes/{path}",
    tag = "indexes",
    summary = "Drop a payload index (leader)",
    params(("collection" = String, Path, description = "The collection's name"), ("path" = String, Path, description = "The indexed metadata path"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the write safe to retry: 1 to 255 visible ASCII characters; a retry with the same key is applied at most once and answered like the first attempt")),
    responses((status = 200, description = "Done", body = Object), (status = "4XX", description = "Refused: nothing changed", body = ErrorBody), (status = "5XX", description = "Not served; see the code (a write with may_have_been_applied: true may be retried with its Idempotency-Key)", body = ErrorBody))
)]
async fn drop_index(
    State(app): Shared,
    key: WriteId,
    Path((collection, path)): Path<(String, String)>,
) -> Answer {
    require_leader(&app)?;
    let body = blocking(move || {
        if !key.keyed() {
            let c = app.db.collection_info(&collection).map_err(from_core)?;
            if !c.indexes.iter().any(|x| x.path == path) {
                return Err(from_core(needle_core::Error::IndexNotFound {
                    collection: collection.clone(),
                    path: path.clone(),
                }));
            }
        }
        let cmd = ReplicatedCommand::DropIndex {
            collection: collection.clone(),
            path: path.clone(),
        };
        proposed(&app, app.node.execute_with_id(key.get(&app), cmd))?;
        Ok(json!({"ok": true, "dropped": path, "applied_index": app.node.applied_index()}))
    })
    .await?;
    ok(StatusCode::OK, body)
}

#[cfg(test)]
mod openapi_tests;
