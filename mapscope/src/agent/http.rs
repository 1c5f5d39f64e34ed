//! The agent's HTTP server: `/metrics`, `/healthz`, `/api/v1/<family>` and the token-guarded
//! rule endpoints. [`router`] returns a plain axum `Router` over the shared [`AgentState`] so
//! other modules (the dashboard, SSE streams) can `.merge()` their own routes into it.

use std::{sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{
    api,
    families::Families,
    feed, metrics,
    xdp::{Cidr, RuleChange, XdpSeam},
};
use crate::xdp::rules::{Direction, Verdict};

/// What every handler shares: the running families and the API token.
pub struct AgentState {
    pub families: Families,
    /// The bearer token of the mutating endpoints.
    pub token: String,
    pub started: Instant,
}

/// Every route of the agent.
pub fn router(state: Arc<AgentState>) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz));
    for (family, body) in api::BODIES {
        router = router.route(&format!("/api/v1/{family}"), get(family_handler(body)));
    }
    router
        .route(
            "/api/v1/xdp/rules",
            get(list_rules).post(add_rule).delete(delete_rule),
        )
        .with_state(state.clone())
        .merge(crate::dashboard::routes(state))
}

/// Serves `app` on `listener` (bound before any program is attached, so a busy port fails
/// the start cleanly) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(s): State<Arc<AgentState>>, headers: HeaderMap) -> Response {
    let readings = s.families.read();
    let read = s.families.exec.as_ref().map(|_| {
        s.families
            .exec_events
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    let body = metrics::render(readings, read);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if metrics::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
    } else {
        let text = metrics::to_classic_text(&body);
        ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE_TEXT)], text).into_response()
    }
}

async fn healthz(State(s): State<Arc<AgentState>>) -> Json<serde_json::Value> {
    let f = &s.families;
    Json(serde_json::json!({
        "status": "ok",
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "families": {
            "xdp": f.xdp.is_some(),
            "exec": f.exec.is_some(),
            "syscalls": f.syscalls.is_some(),
            "malloc": f.malloc.is_some(),
        },
    }))
}

fn family_handler(
    f: api::Body,
) -> impl Fn(State<Arc<AgentState>>) -> std::future::Ready<Response> + Clone + Send + 'static {
    move |State(s): State<Arc<AgentState>>| {
        std::future::ready(match f(&s.families) {
            Ok(v) => Json(v).into_response(),
            Err(api::Unavailable::Disabled) => error(
                StatusCode::NOT_FOUND,
                "this family is not enabled in the agent's config",
            ),
            Err(api::Unavailable::Read(why)) => error(StatusCode::INTERNAL_SERVER_ERROR, &why),
        })
    }
}

fn error(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

/// Whether the request carries `Authorization: Bearer <token>` (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({
            "error": "send Authorization: Bearer <the token in the agent's http.token_file>"
        })),
    )
        .into_response()
}

/// The body of the rule endpoints: `{"cidr": "10.0.0.0/8", "verdict": "block", "dst": false}`
/// (`verdict` defaults to block, `dst` to false: the rule matches source addresses).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    cidr: String,
    /// `action` is accepted too (the dashboard's word for it).
    #[serde(default, alias = "action")]
    verdict: Option<String>,
    #[serde(default)]
    dst: bool,
}

impl RuleBody {
    fn change(self) -> Result<RuleChange, String> {
        let cidr: Cidr = self.cidr.parse().map_err(|e| format!("{e}"))?;
        let verdict = match self.verdict.as_deref() {
            None | Some("block") => Verdict::Block,
            Some("allow") => Verdict::Allow,
            Some(v) => return Err(format!("verdict must be \"block\" or \"allow\", not {v:?}")),
        };
        let dir = if self.dst {
            Direction::Dst
        } else {
            Direction::Src
        };
        Ok(RuleChange { cidr, verdict, dir })
    }
}

async fn list_rules(State(s): State<Arc<AgentState>>) -> Response {
    match &s.families.xdp {
        Some(x) => match x.rules() {
            Ok(r) => Json(serde_json::json!({ "rules": r })).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        None => error(
            StatusCode::NOT_FOUND,
            "xdp is not enabled in the agent's config",
        ),
    }
}

/// What a rule endpoint does: `POST` adds, `DELETE` deletes.
#[derive(Clone, Copy)]
enum RuleOp {
    Add,
    Del,
}

impl RuleOp {
    /// Applies the change to every interface; whether any changed.
    fn apply(self, seam: &XdpSeam, c: RuleChange) -> Result<bool, crate::xdp::error::XdpError> {
        match self {
            Self::Add => seam.add_rule(c),
            Self::Del => seam.delete_rule(c),
        }
    }

    /// `op` of its `xdp_rule` event.
    fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Del => "del",
        }
    }

    /// The answer when something changed (an unchanged set is 200 either way).
    fn status_if_changed(self) -> StatusCode {
        match self {
            Self::Add => StatusCode::CREATED,
            Self::Del => StatusCode::OK,
        }
    }
}

/// Checks the token before even looking at the body, so a bad request without a token is a 401.
/// A change that took effect goes to the sinks as an `xdp_rule` event.
async fn rule_change(s: &AgentState, headers: &HeaderMap, body: &[u8], op: RuleOp) -> Response {
    if !authorized(headers, &s.token) {
        return unauthorized();
    }
    let Some(seam) = &s.families.xdp else {
        return error(
            StatusCode::NOT_FOUND,
            "xdp is not enabled in the agent's config",
        );
    };
    let rule = match serde_json::from_slice::<RuleBody>(body)
        .map_err(|e| e.to_string())
        .and_then(RuleBody::change)
    {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "body must be {{\"cidr\": \"10.0.0.0/8\", \"verdict\": \"block\"|\"allow\", \"dst\": false}}: {e}"
                ),
            );
        }
    };
    let changed = match op.apply(seam, rule) {
        Ok(c) => c,
        // Bad rules (full trie, no such rule) are the caller's; nothing was half-applied.
        Err(e @ crate::xdp::error::XdpError::BadRule(_)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if changed && let Some(o) = &s.families.outbox {
        o.send(feed::rule_event(op.name(), rule, seam.interfaces()))
            .await;
    }
    let status = if changed {
        op.status_if_changed()
    } else {
        StatusCode::OK
    };
    let rules = seam.rules().ok();
    (
        status,
        Json(serde_json::json!({ "changed": changed, "rules": rules })),
    )
        .into_response()
}

async fn add_rule(
    State(s): State<Arc<AgentState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    rule_change(&s, &headers, &body, RuleOp::Add).await
}

async fn delete_rule(
    State(s): State<Arc<AgentState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    rule_change(&s, &headers, &body, RuleOp::Del).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(authorized(&h, "abc"));
        assert!(!authorized(&h, "abd"));
        assert!(!authorized(&h, "abcd"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!authorized(&h, "abc"));
    }
}
