//! The batch body every transport carries, and how a batch too large for the service is cut in
//! two.
//!
//! `{"schema":1,"agent":"mapscope","host":"…","seq":N,"lost_total":L,"events":[…]}`
//!
//! `seq` numbers events, not batches: a batch's `seq` is that of its first event and the next
//! batch's is `seq + events`. So the two halves of a split batch keep distinct `seq`s in
//! delivery order (`seq` and `seq + first half's events`), and a receiver that drops duplicate
//! `(host, seq)` never drops a half.

use bytes::Bytes;
use serde_json::Value;

use crate::exec::event::SCHEMA_VERSION;

/// What every batch carries besides its events.
pub struct Envelope<'a> {
    pub host: &'a str,
    pub seq: u64,
    /// The kernel's count of events it could not hand to mapscope.
    pub lost_total: u64,
}

/// One batch, encoded.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub seq: u64,
    pub events: usize,
    pub body: Bytes,
}

/// Encodes `events` as one batch body.
pub fn encode(env: &Envelope<'_>, events: &[Value]) -> Encoded {
    let body = serde_json::json!({
        "schema": SCHEMA_VERSION,
        "agent": "mapscope",
        "host": env.host,
        "seq": env.seq,
        "lost_total": env.lost_total,
        "events": events,
    });
    Encoded {
        seq: env.seq,
        events: events.len(),
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
    }
}

/// Cuts a batch of two or more events into halves carrying the same envelope, the second with
/// `seq` moved past the first half. `None` for a single event or a body that is not a batch.
pub fn split(body: &[u8]) -> Option<[Encoded; 2]> {
    let Value::Object(mut head) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let seq = head.get("seq")?.as_u64()?;
    let Some(Value::Array(mut first)) = head.remove("events") else {
        return None;
    };
    if first.len() < 2 {
        return None;
    }
    let second = first.split_off(first.len() / 2);
    let half = |seq: u64, events: Vec<Value>| {
        let mut obj = head.clone();
        obj.insert("seq".into(), seq.into());
        let n = events.len();
        obj.insert("events".into(), Value::Array(events));
        Encoded {
            seq,
            events: n,
            body: Bytes::from(serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()),
        }
    };
    let next = seq + first.len() as u64;
    Some([half(seq, first), half(next, second)])
}

/// Whether `body` is a complete batch (a file cut short by a power loss is not).
pub fn is_whole(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_envelope_order_and_gives_halves_their_own_seq() {
        let env = Envelope {
            host: "h",
            seq: 40,
            lost_total: 3,
        };
        let events: Vec<Value> = (0..5).map(|i| serde_json::json!({ "n": i })).collect();
        let whole = encode(&env, &events);
        assert_eq!((whole.seq, whole.events), (40, 5));
        let [a, b] = split(&whole.body).unwrap();
        assert_eq!((a.seq, a.events, b.seq, b.events), (40, 2, 42, 3));
        let a: Value = serde_json::from_slice(&a.body).unwrap();
        let b: Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(a["events"], serde_json::json!([{"n":0},{"n":1}]));
        assert_eq!(b["events"], serde_json::json!([{"n":2},{"n":3},{"n":4}]));
        assert_eq!((&a["host"], &a["lost_total"]), (&"h".into(), &3.into()));
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["schema", "agent", "host", "seq", "lost_total", "events"]
        );
        let one = encode(&env, &events[..1]);
        assert!(split(&one.body).is_none(), "one event cannot be split");
        assert!(split(b"not json").is_none());
    }

    #[test]
    fn a_cut_short_body_is_not_whole() {
        let env = Envelope {
            host: "h",
            seq: 1,
            lost_total: 0,
        };
        let b = encode(&env, &[serde_json::json!({"n": 1})]).body;
        assert!(is_whole(&b));
        assert!(!is_whole(&b[..b.len() - 1]));
        assert!(!is_whole(b""));
    }
}
