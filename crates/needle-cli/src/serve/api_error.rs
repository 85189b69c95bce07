//! Errors as the HTTP API answers them: a status code and a JSON body
//! `{"error": {"code": "...", "message": "...", ...}}`, with extra fields a client can act on
//! (`leader_id` and `leader_http` for `not_leader`, `may_have_been_applied` for a timed-out
//! write). The table in `docs/http-api.md` lists every code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use needle_raft::NeedleError as RaftError;
use serde_json::{Map, Value, json};

/// One error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A follower refusing a write (or a read it cannot serve): 421 when the leader is known
    /// (the body names its id and HTTP address), 503 `no_leader` while there is none.
    pub fn not_leader(leader: Option<u64>, leader_http: Option<String>) -> ApiError {
        match leader {
            Some(id) => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "not_leader",
                format!(
                    "this node is not the leader; send the request to node {id}{}",
                    leader_http
                        .as_deref()
                        .map(|a| format!(" at http://{a}"))
                        .unwrap_or_default()
                ),
            )
            .with("leader_id", json!(id))
            .with("leader_http", json!(leader_http)),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "the cluster has no leader right now (an election is under way, or a majority is unreachable); retry shortly",
            )
            .with("leader_id", Value::Null)
            .with("leader_http", Value::Null),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.extend(self.extra);
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// needle-core's errors: bad requests are 400, missing things 404, conflicts 409.
pub fn from_core(e: needle_core::Error) -> ApiError {
    use needle_core::Error as E;
    let (status, code) = match &e {
        E::DimensionMismatch { .. } => (StatusCode::BAD_REQUEST, "dimension_mismatch"),
        E::InvalidVector { .. } => (StatusCode::BAD_REQUEST, "invalid_vector"),
        E::InvalidId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
        E::InvalidMetadata { .. } => (StatusCode::BAD_REQUEST, "invalid_metadata"),
        E::InvalidFilter { .. } => (StatusCode::BAD_REQUEST, "invalid_filter"),
        E::InvalidCollectionName { .. } => (StatusCode::BAD_REQUEST, "invalid_collection_name"),
        E::InvalidArgument { .. } => (StatusCode::BAD_REQUEST, "invalid_argument"),
        E::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, "invalid_config"),
        E::CollectionNotFound { .. } => (StatusCode::NOT_FOUND, "collection_not_found"),
        E::RecordNotFound { .. } => (StatusCode::NOT_FOUND, "record_not_found"),
        E::CollectionExists { .. } => (StatusCode::CONFLICT, "collection_exists"),
        E::IndexNotFound { .. } => (StatusCode::NOT_FOUND, "index_not_found"),
        E::IndexExists { .. } => (StatusCode::CONFLICT, "index_exists"),
        E::Corrupted { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError::new(status, code, e.to_string())
}

/// needle-raft's errors. `leader_http` looks up a leader's HTTP address.
pub fn from_raft(e: RaftError, leader_http: impl Fn(u64) -> Option<String>) -> ApiError {
    let maybe = e.may_have_been_applied();
    match e {
        RaftError::NotLeader { leader } => {
            ApiError::not_leader(leader, leader.and_then(&leader_http))
        }
        RaftError::Core(core) => from_core(core),
        e @ RaftError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string())
                .with("may_have_been_applied", json!(maybe))
        }
        e @ RaftError::LeadershipLost { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "leadership_lost",
            e.to_string(),
        )
        .with("may_have_been_applied", json!(maybe)),
        e @ RaftError::ProposalDropped { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "proposal_dropped",
            e.to_string(),
        )
        .with("may_have_been_applied", json!(false)),
        e @ RaftError::EntryTooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entry_too_large",
            e.to_string(),
        )
        .with("may_have_been_applied", json!(false)),
        e @ RaftError::StaleRead { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stale_read", e.to_string())
        }
        e @ RaftError::Shutdown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            e.to_string(),
        ),
        // A retry (same request id, e.g. the same Idempotency-Key) of a write whose first
        // attempt the state machine rejected: answered with that rejection, nothing applied.
        RaftError::Rejected { reason } => ApiError::new(
            StatusCode::CONFLICT,
            "rejected",
            format!("the first attempt of this request was rejected when applied: {reason}"),
        )
        .with("may_have_been_applied", json!(false)),
        e @ RaftError::InvalidConfig { .. } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_config", e.to_string())
        }
        e @ RaftError::MembershipChangeRefused { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "membership_change_refused",
            e.to_string(),
        ),
        e @ RaftError::LeadershipTransferRefused { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "leadership_transfer_refused",
            e.to_string(),
        ),
        // This node serves nothing (it was removed from the cluster, or its Raft thread
        // stopped on an error); the others may: a client goes to another node.
        e @ RaftError::Stopped { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", e.to_string())
        }
        e => ApiError::internal(e.to_string()),
    }
}
