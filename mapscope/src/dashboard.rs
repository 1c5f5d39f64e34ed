//! The agent's live web dashboard: one page at `/` whose assets (uPlot included, vendored from
//! its npm package with its licence) are compiled into the binary, so it works offline and with
//! no build step, fed by the SSE streams of [`stream`] and the agent's rule endpoints.

pub mod stream;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::agent::http::AgentState;

/// What the dashboard's handlers share.
struct Dash {
    agent: Arc<AgentState>,
    stats: stream::StatsFeed,
    closing: tokio::sync::watch::Receiver<bool>,
}

/// One embedded file: path, content type, bytes.
type Asset = (&'static str, &'static str, &'static [u8]);

/// The page and everything it loads, all from the binary.
const ASSETS: &[Asset] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("dashboard/assets/index.html"),
    ),
    (
        "/dashboard/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/assets/dashboard.js"),
    ),
    (
        "/dashboard/dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/assets/dashboard.css"),
    ),
    (
        "/dashboard/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/assets/uPlot.iife.min.js"),
    ),
    (
        "/dashboard/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/assets/uPlot.min.css"),
    ),
    (
        "/dashboard/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("dashboard/assets/uPlot.LICENSE"),
    ),
];

/// The dashboard's routes, merged into the agent's router (starts the stats ticker, so call it
/// inside the agent's tokio runtime).
pub fn routes(agent: Arc<AgentState>) -> Router {
    let dash = Arc::new(Dash {
        stats: stream::StatsFeed::start(Arc::downgrade(&agent)),
        closing: stream::closing(),
        agent,
    });
    let mut r = Router::new();
    for &(path, mime, body) in ASSETS {
        r = r.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, mime),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }),
        );
    }
    r.route("/api/v1/stream/exec", get(exec_stream))
        .route("/api/v1/stream/stats", get(stats_stream))
        .with_state(dash)
}

async fn exec_stream(State(d): State<Arc<Dash>>) -> Response {
    match stream::exec(&d.agent, d.closing.clone()) {
        Some(sse) => sse,
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "error": "exec is not enabled in the agent's config"
            })),
        )
            .into_response(),
    }
}

async fn stats_stream(State(d): State<Arc<Dash>>) -> Response {
    stream::stats(&d.stats, d.closing.clone())
}
