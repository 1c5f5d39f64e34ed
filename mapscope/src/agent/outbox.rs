//! The agent's sinks behind one handle: every producer (the exec drain, the rule endpoints, the
//! XDP and snapshot feed) sends each event once, and it goes to every configured sink — each a
//! [`crate::sinks::pipeline`] with its own queue, spool and retries, so a slow or unreachable
//! sink never holds another one (or a kernel reader) back beyond its own queue.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::RwLock;

use super::config::Sinks;
use crate::{
    error::one_line,
    sinks::{
        http::HttpSink,
        nats::NatsSink,
        pipeline::{LiveStats, SinkStats},
    },
};

/// One running sink of either transport.
enum Running {
    Nats(NatsSink),
    Http(HttpSink),
}

impl Running {
    async fn send(&self, event: Value) -> crate::Result<()> {
        match self {
            Self::Nats(s) => s.send(event).await,
            Self::Http(s) => s.send(event).await,
        }
    }

    async fn finish(self) -> crate::Result<SinkStats> {
        match self {
            Self::Nats(s) => s.finish().await,
            Self::Http(s) => s.finish().await,
        }
    }
}

/// Every configured sink; [`Outbox::finish`] flushes them once every producer is done.
pub struct Outbox {
    running: RwLock<Vec<(&'static str, Running)>>,
    live: Vec<(&'static str, Arc<LiveStats>)>,
}

impl Outbox {
    /// Starts each configured sink (NATS first, then HTTP). A malformed URL, refused
    /// credentials or a stream that does not cover our subjects fail here, before anything is
    /// attached; an unreachable service only warns and spools.
    pub async fn start(cfg: &Sinks) -> Result<Option<Arc<Self>>, (&'static str, crate::Error)> {
        let mut running = Vec::new();
        if let Some(c) = &cfg.nats {
            let s = NatsSink::start(c.clone()).await.map_err(|e| ("nats", e))?;
            running.push(("nats", Running::Nats(s)));
        }
        if let Some(c) = &cfg.http {
            let s = match HttpSink::start(c.sink_config()).await {
                Ok(s) => s,
                Err(e) => {
                    // The NATS sink started already: flush it (its spool keeps the rest).
                    for (_, r) in running {
                        let _ = r.finish().await;
                    }
                    return Err(("http", e));
                }
            };
            running.push(("http", Running::Http(s)));
        }
        if running.is_empty() {
            return Ok(None);
        }
        let live = running
            .iter()
            .map(|(name, r)| {
                (
                    *name,
                    match r {
                        Running::Nats(s) => s.live(),
                        Running::Http(s) => s.live(),
                    },
                )
            })
            .collect();
        Ok(Some(Arc::new(Self {
            running: RwLock::new(running),
            live,
        })))
    }

    /// Queues `event` on every sink (each waits only while its own queue is full). After
    /// [`Outbox::finish`] events are dropped: nothing produces them then but a late request.
    pub async fn send(&self, event: Value) {
        let running = self.running.read().await;
        let Some(((last_name, last), rest)) = running.split_last() else {
            return;
        };
        for (name, sink) in rest {
            if let Err(e) = sink.send(event.clone()).await {
                tracing::warn!("{name} sink: {}", one_line(&e));
            }
        }
        if let Err(e) = last.send(event).await {
            tracing::warn!("{last_name} sink: {}", one_line(&e));
        }
    }

    /// Each sink's running delivery totals, by sink name (`/metrics`, the dashboard).
    pub fn live(&self) -> &[(&'static str, Arc<LiveStats>)] {
        &self.live
    }

    /// Delivers what each sink can now and leaves the rest in its spool; one stderr line each.
    pub async fn finish(&self) {
        let running = std::mem::take(&mut *self.running.write().await);
        for (name, sink) in running {
            let what = match name {
                "nats" => ("published", "to NATS", "rejected by the server"),
                _ => ("posted", "to the web service", "rejected by the service"),
            };
            match sink.finish().await {
                Ok(s) => eprintln!(
                    "mapscope agent: {} {} events {}; {} spooled for later; {} dropped at the spool limit; {} {}",
                    what.0, s.delivered, what.1, s.spooled, s.dropped, s.rejected, what.2
                ),
                Err(e) => eprintln!("mapscope agent: {name} sink: {}", one_line(&e)),
            }
        }
    }
}
