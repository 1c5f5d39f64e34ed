//! The JetStream transport: one batch of the pipeline becomes one message per event, published
//! in order with at most `max_in_flight` awaiting their ack, each with a `Nats-Msg-Id` the
//! server de-duplicates on.
//!
//! The id is `<host>.<spool id>.<seq>`: `seq` numbers events in a spool for good (crash-safe,
//! see `sinks::state`), and the spool id tells apart the spools of one host, so the id of an
//! event is the same on every attempt, in this run or after a restart that replays the spool.
//! A per-process run id would not be: a batch published by a run killed before its ack, and
//! replayed by the next run, would land twice.
//!
//! Within a run, events whose ack came back are not published again when the rest of their
//! batch is retried (`acked_upto`), so only the few publishes whose ack was lost are resent,
//! and those land within the stream's duplicate window unless the server stays away longer.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        context::{PublishAckFuture, PublishErrorKind},
        message::PublishMessage,
    },
};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Mutex;

use super::{stream::Ensure, subject};
use crate::sinks::transport::{Failure, Outcome, Transport};

/// The header carrying the host's kernel lost-event total (the HTTP envelope's `lost_total`).
pub const LOST_TOTAL_HEADER: &str = "Mapscope-Lost-Total";
/// The header carrying the event's `seq` (the HTTP envelope's `seq` plus its index).
pub const SEQ_HEADER: &str = "Mapscope-Seq";

/// Publishes batches into JetStream.
pub struct JetStreamTransport {
    pub js: jetstream::Context,
    pub prefix: String,
    pub spool_id: String,
    pub max_in_flight: usize,
    /// Shown in messages, without credentials.
    pub shown: String,
    /// Makes sure the stream exists before the first publish when start-up could not.
    pub ensure: Arc<Mutex<Ensure>>,
    /// Every event with `seq` below this has its ack (this run).
    pub acked_upto: Arc<AtomicU64>,
}

/// One batch body as the pipeline encoded it (see `sinks::batch`).
struct Batch {
    host: String,
    seq: u64,
    lost_total: u64,
    events: Vec<Value>,
}

fn parse(body: &[u8]) -> Option<Batch> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let Value::Array(events) = v.get_mut("events")?.take() else {
        return None;
    };
    Some(Batch {
        host: v.get("host")?.as_str()?.to_string(),
        seq: v.get("seq")?.as_u64()?,
        lost_total: v.get("lost_total").and_then(Value::as_u64).unwrap_or(0),
        events,
    })
}

impl Transport for JetStreamTransport {
    fn target(&self) -> String {
        format!("NATS {}", self.shown)
    }

    fn deliver(&self, body: Bytes) -> impl Future<Output = Outcome> + Send + 'static {
        let js = self.js.clone();
        let prefix = self.prefix.clone();
        let spool_id = self.spool_id.clone();
        let max = self.max_in_flight;
        let shown = self.shown.clone();
        let ensure = Arc::clone(&self.ensure);
        let acked_upto = Arc::clone(&self.acked_upto);
        async move {
            let Some(batch) = parse(&body) else {
                return Outcome::Refused("not a mapscope batch".into());
            };
            if let Err(f) = ensure.lock().await.ensure(&js).await {
                return Outcome::Retry(f);
            }
            let fail = |class: String| {
                Outcome::Retry(Failure {
                    detail: format!("NATS {shown}: {class}"),
                    class,
                })
            };
            let mut pending: std::collections::VecDeque<(u64, PublishAckFuture)> =
                Default::default();
            let n = batch.events.len() as u64;
            for (i, ev) in batch.events.iter().enumerate() {
                let seq = batch.seq + i as u64;
                if seq < acked_upto.load(Ordering::Relaxed) {
                    continue;
                }
                // `family` when the event names it (the agent's xdp_rule, snapshot, …), else
                // its `type` (exec events).
                let family = ev
                    .get("family")
                    .or_else(|| ev.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("event");
                let mut headers = HeaderMap::new();
                headers.insert(SEQ_HEADER, seq.to_string().as_str());
                headers.insert(LOST_TOTAL_HEADER, batch.lost_total.to_string().as_str());
                let msg = PublishMessage::build()
                    .payload(Bytes::from(serde_json::to_vec(ev).unwrap_or_default()))
                    .headers(headers)
                    .message_id(format!("{}.{spool_id}.{seq}", subject::token(&batch.host)));
                let subject = subject::of(&prefix, &batch.host, family);
                match js.send_publish(subject, msg).await {
                    Ok(ack) => pending.push_back((seq, ack)),
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        let why = format!("event larger than the server's max_payload ({e})");
                        return if n > 1 {
                            Outcome::TooLarge(why)
                        } else {
                            Outcome::Refused(why)
                        };
                    }
                    Err(e) => return fail(format!("publish failed ({e})")),
                }
                if pending.len() >= max
                    && let Err(o) = settle(&mut pending, &acked_upto, &fail).await
                {
                    return o;
                }
            }
            while !pending.is_empty() {
                if let Err(o) = settle(&mut pending, &acked_upto, &fail).await {
                    return o;
                }
            }
            Outcome::Delivered
        }
    }
}

/// Awaits the oldest ack and moves `acked_upto` past it.
async fn settle(
    pending: &mut std::collections::VecDeque<(u64, PublishAckFuture)>,
    acked_upto: &AtomicU64,
    fail: &impl Fn(String) -> Outcome,
) -> Result<(), Outcome> {
    let Some((seq, ack)) = pending.pop_front() else {
        return Ok(());
    };
    match ack.await {
        Ok(_) => {
            acked_upto.fetch_max(seq + 1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(fail(match e.kind() {
            PublishErrorKind::StreamNotFound => {
                "no stream takes the subject (stream deleted?)".to_string()
            }
            PublishErrorKind::TimedOut => "no JetStream ack in time (server down?)".to_string(),
            _ => format!("publish not acknowledged ({e})"),
        })),
    }
}
