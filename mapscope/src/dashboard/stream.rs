//! Server-sent event streams: `GET /api/v1/stream/exec` (every exec event as it is drained) and
//! `GET /api/v1/stream/stats` (one snapshot of every family per second).
//!
//! Both fan out through `tokio::sync::broadcast`: the producer (the exec drain task, the stats
//! ticker) never waits for a client. A client whose connection stalls stops being polled, falls
//! more than the channel's capacity behind and, when it reads again, gets one `lagged` event
//! (`{"missed": n}`) and continues from the oldest event still buffered. Misses are counted in
//! [`lagged_events`] (`mapscope_dashboard_lagged_events_total` on `/metrics`).

use std::{
    convert::Infallible,
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::response::{
    IntoResponse as _, Response,
    sse::{Event, KeepAlive, Sse},
};
use futures_util::{StreamExt as _, stream};
use tokio::sync::{
    broadcast::{self, error::RecvError},
    watch,
};

use crate::agent::{api, http::AgentState};

/// Stats snapshots a client may fall behind by (one a second: a minute of stall).
const STATS_BUFFER: usize = 60;

/// Events missed by lagging clients since the agent started, over both streams.
static LAGGED: AtomicU64 = AtomicU64::new(0);

/// Events the dashboard's SSE clients missed because they fell behind (for `/metrics`).
pub fn lagged_events() -> u64 {
    LAGGED.load(Ordering::Relaxed)
}

/// The once-a-second stats producer shared by every stats client.
pub struct StatsFeed {
    tx: broadcast::Sender<Arc<str>>,
}

impl StatsFeed {
    /// Starts the ticker; it reads the families only while someone listens and ends when the
    /// agent's state is gone (it holds a weak reference, so it never keeps programs attached).
    pub fn start(state: Weak<AgentState>) -> Self {
        let (tx, _) = broadcast::channel(STATS_BUFFER);
        let feed_tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                if feed_tx.receiver_count() == 0 {
                    continue;
                }
                let body = stats_json(&state).to_string();
                drop(state);
                let _ = feed_tx.send(body.into());
            }
        });
        Self { tx }
    }
}

/// One snapshot of every family, built by the same functions `/api/v1/<family>` serve (a
/// disabled family is `null`, one whose read failed is `{"error": …}`).
pub fn stats_json(s: &AgentState) -> serde_json::Value {
    let f = &s.families;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut out = serde_json::json!({
        "schema": 1,
        "time": now,
        "uptime_s": s.started.elapsed().as_secs_f64(),
        "exec_events_read": f.exec.as_ref().map(|_| f.exec_events.load(Ordering::Relaxed)),
        "dashboard": { "lagged_events": lagged_events() },
        "sinks": f
            .sinks()
            .iter()
            .map(|(name, live)| {
                let (delivered, dropped, rejected) = live.read();
                (
                    name.to_string(),
                    serde_json::json!({
                        "delivered": delivered, "dropped": dropped, "rejected": rejected,
                    }),
                )
            })
            .collect::<serde_json::Map<_, _>>(),
    });
    for (family, body) in api::BODIES {
        out[family] = match body(f) {
            Ok(v) => v,
            Err(api::Unavailable::Disabled) => serde_json::Value::Null,
            Err(api::Unavailable::Read(why)) => serde_json::json!({ "error": why }),
        };
    }
    out
}

/// Ends every stream when the agent is told to stop (SIGTERM/SIGINT): the server's graceful
/// shutdown waits for open connections, and an open browser tab would otherwise hold it forever.
pub fn closing() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            () = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}

/// Turns a broadcast subscription into SSE events named `event`, with `lagged` on misses,
/// until `closing` turns true.
fn relay<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
    mut closing: watch::Receiver<bool>,
    event: &'static str,
    render: fn(&T) -> String,
) -> Response {
    let s = stream::unfold(rx, move |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(item) => Event::default().event(event).data(render(&item)),
            Err(RecvError::Lagged(n)) => {
                LAGGED.fetch_add(n, Ordering::Relaxed);
                Event::default()
                    .event("lagged")
                    .data(serde_json::json!({ "missed": n }).to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), rx))
    });
    let s = s.take_until(async move {
        let _ = closing.wait_for(|c| *c).await;
    });
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /api/v1/stream/exec`: `exec` events with the JSON the CLI's `exec --json` prints.
pub fn exec(s: &AgentState, closing: watch::Receiver<bool>) -> Option<Response> {
    s.families.exec.as_ref()?;
    Some(relay(
        s.families.exec_tx.subscribe(),
        closing,
        "exec",
        |e| e.json().to_string(),
    ))
}

/// `GET /api/v1/stream/stats`: a `stats` event with [`stats_json`] every second.
pub fn stats(feed: &StatsFeed, closing: watch::Receiver<bool>) -> Response {
    relay(feed.tx.subscribe(), closing, "stats", |s: &Arc<str>| {
        s.to_string()
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    async fn next_frame(body: &mut axum::body::BodyDataStream) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("no frame in 5 s")?;
        Some(String::from_utf8(frame.unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_client_that_fell_behind_is_told_how_many_it_missed_then_continues() {
        let (tx, rx) = broadcast::channel::<u32>(2);
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        let (stop, closing) = watch::channel(false);
        let before = lagged_events();
        let mut body = relay(rx, closing, "n", |i| i.to_string())
            .into_body()
            .into_data_stream();
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "event: lagged\ndata: {\"missed\":3}\n\n"
        );
        assert!(lagged_events() >= before + 3);
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "event: n\ndata: 3\n\n"
        );
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "event: n\ndata: 4\n\n"
        );
        tx.send(5).unwrap();
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "event: n\ndata: 5\n\n"
        );
        // Stopping the agent ends the stream even though the producer lives on.
        stop.send(true).unwrap();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn the_stream_ends_with_its_producer() {
        let (tx, rx) = broadcast::channel::<u32>(4);
        let (_stop, closing) = watch::channel(false);
        let mut body = relay(rx, closing, "n", |i| i.to_string())
            .into_body()
            .into_data_stream();
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "event: n\ndata: 1\n\n"
        );
        assert_eq!(next_frame(&mut body).await, None);
    }
}
