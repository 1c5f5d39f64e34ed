//! The agent's events besides exec, for its sinks: XDP rule changes, sources new to the talkers
//! table, and periodic snapshots of every family.
//!
//! Each event is one JSON object with `type` (what it is), `family` (the NATS subject's last
//! token, `<prefix>.<host>.<family>`), `schema` and `time` (RFC 3339, when the agent saw it):
//! - `xdp_rule`: a rule added or deleted through the API (`op`, `verdict`, `cidr`, `dir`,
//!   `interfaces`); the agent's start-up `xdp.drop` rules are in its config, not events.
//! - `xdp_talker`: a source that entered an interface's talkers table since the last scan (once a
//!   second), with the talkers report's fields. Sources already in the table when the agent
//!   starts are not new (the pinned table outlives agents): the first snapshot event lists them.
//!   A source evicted and seen again is new again (its `first_seen_ns` changes).
//! - `snapshot`: every `sinks.snapshot_every`, one per enabled family, carrying the body
//!   `GET /api/v1/<family>` returns.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

use serde::Serialize;
use serde_json::Value;

use super::{api, families::Families, http::AgentState, outbox::Outbox, xdp::RuleChange};
use crate::xdp::{
    rules::Rule,
    snapshot::Talker,
    talkers::{TalkerRate, top},
};

/// How often the talkers tables are scanned for new sources.
pub const TALKER_SCAN: Duration = Duration::from_secs(1);

/// Schema of the agent's own events (the family bodies inside snapshots carry their own).
const SCHEMA: u32 = 1;

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// `{"type", "family", "schema", "time", …fields}`.
fn event(kind: &str, family: &str, fields: impl Serialize) -> Value {
    let mut v = serde_json::json!({
        "type": kind,
        "family": family,
        "schema": SCHEMA,
        "time": now(),
    });
    if let (Some(obj), Ok(Value::Object(more))) = (v.as_object_mut(), serde_json::to_value(fields))
    {
        obj.extend(more);
    }
    v
}

/// A rule change that took effect (`op` is `add` or `del`).
pub fn rule_event(op: &str, c: RuleChange, interfaces: Vec<String>) -> Value {
    #[derive(Serialize)]
    struct Fields<'a> {
        op: &'a str,
        #[serde(flatten)]
        rule: Rule,
        interfaces: Vec<String>,
    }
    event(
        "xdp_rule",
        "xdp",
        Fields {
            op,
            rule: Rule {
                verdict: c.verdict,
                cidr: c.cidr,
                dir: c.dir,
            },
            interfaces,
        },
    )
}

/// Sources of one interface's table, by address and first-seen time (a re-inserted source has
/// a new one).
type Seen = HashSet<(IpAddr, u64)>;

/// Finds sources that entered each interface's talkers table since the previous scan.
#[derive(Default)]
pub struct NewTalkers {
    /// Per interface; absent until its first scan, which only learns the table.
    seen: HashMap<String, Seen>,
}

impl NewTalkers {
    /// The `xdp_talker` events for what is new in each interface's talkers (none on an
    /// interface's first scan).
    pub fn scan(&mut self, interfaces: &[(String, Vec<Talker>)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (iface, talkers) in interfaces {
            let now: Seen = talkers
                .iter()
                .map(|t| (t.addr, t.rec.first_seen_ns))
                .collect();
            if let Some(before) = self.seen.get(iface) {
                let fresh: Vec<Talker> = talkers
                    .iter()
                    .filter(|t| !before.contains(&(t.addr, t.rec.first_seen_ns)))
                    .copied()
                    .collect();
                for rate in top(&[], &fresh, usize::MAX) {
                    out.push(talker_event(iface, &rate));
                }
            }
            self.seen.insert(iface.clone(), now);
        }
        out
    }
}

fn talker_event(iface: &str, rate: &TalkerRate) -> Value {
    #[derive(Serialize)]
    struct Fields<'a> {
        iface: &'a str,
        #[serde(flatten)]
        rate: &'a TalkerRate,
    }
    event("xdp_talker", "xdp", Fields { iface, rate })
}

/// One `snapshot` event per enabled family whose maps could be read.
pub fn snapshot_events(f: &Families) -> Vec<Value> {
    api::BODIES
        .into_iter()
        .filter_map(|(family, body)| match body(f) {
            Ok(snapshot) => Some(event(
                "snapshot",
                family,
                serde_json::json!({ "snapshot": snapshot }),
            )),
            Err(api::Unavailable::Disabled) => None,
            Err(api::Unavailable::Read(why)) => {
                tracing::warn!("snapshot of {family} for the sinks: {why}");
                None
            }
        })
        .collect()
}

/// Starts the feed: talker scans (when XDP runs) and snapshots every `snapshot_every` (zero:
/// none). It holds a weak reference, so it never keeps programs attached, and ends with the
/// agent's state.
pub fn start(
    state: Weak<AgentState>,
    outbox: Arc<Outbox>,
    snapshot_every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(xdp_on) = state.upgrade().map(|s| s.families.xdp.is_some()) else {
            return;
        };
        let mut talkers = NewTalkers::default();
        let mut scan = tokio::time::interval(TALKER_SCAN);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let snapshots = !snapshot_every.is_zero();
        let mut snap = tokio::time::interval(if snapshots {
            snapshot_every
        } else {
            Duration::from_secs(3600)
        });
        snap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // An interval's first tick is immediate: the first snapshot comes a full period in.
        snap.tick().await;
        loop {
            let events = tokio::select! {
                _ = scan.tick(), if xdp_on => {
                    let Some(s) = state.upgrade() else { return };
                    match s.families.xdp.as_ref().map(super::xdp::XdpSeam::talkers) {
                        Some(Ok(x)) => talkers.scan(&x),
                        Some(Err(e)) => {
                            tracing::warn!("scanning talkers: {}", crate::error::one_line(&e));
                            Vec::new()
                        }
                        None => Vec::new(),
                    }
                }
                _ = snap.tick(), if snapshots => {
                    let Some(s) = state.upgrade() else { return };
                    snapshot_events(&s.families)
                }
                else => return,
            };
            for e in events {
                outbox.send(e).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use mapscope_common::xdp::TalkerRecord;

    use super::*;

    fn snap(talkers: &[(&str, u64)]) -> Vec<(String, Vec<Talker>)> {
        let t = talkers
            .iter()
            .map(|(a, first)| Talker {
                addr: a.parse().unwrap(),
                rec: TalkerRecord {
                    packets: 2,
                    bytes: 200,
                    first_seen_ns: *first,
                    last_seen_ns: first + 5,
                },
            })
            .collect();
        vec![("eth9".into(), t)]
    }

    #[test]
    fn new_talkers_are_those_not_in_the_previous_scan() {
        let mut n = NewTalkers::default();
        assert!(n.scan(&snap(&[("10.0.0.1", 1)])).is_empty(), "first scan");
        let e = n.scan(&snap(&[("10.0.0.1", 1), ("fd00::2", 7)]));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["type"], "xdp_talker");
        assert_eq!(e[0]["family"], "xdp");
        assert_eq!(e[0]["iface"], "eth9");
        assert_eq!(e[0]["addr"], "fd00::2");
        assert_eq!(e[0]["packets"], 2);
        assert_eq!(e[0]["first_seen_ns"], 7);
        assert!(n.scan(&snap(&[("10.0.0.1", 1), ("fd00::2", 7)])).is_empty());
        // Evicted and seen again: a new first-seen time, so new again.
        let e = n.scan(&snap(&[("10.0.0.1", 9)]));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["addr"], "10.0.0.1");
    }

    #[test]
    fn rule_events_carry_the_rule_and_where_it_applies() {
        let e = rule_event(
            "add",
            RuleChange {
                cidr: "10.213.0.0/16".parse().unwrap(),
                verdict: crate::xdp::rules::Verdict::Block,
                dir: crate::xdp::rules::Direction::Src,
            },
            vec!["eth9".into()],
        );
        assert_eq!(e["type"], "xdp_rule");
        assert_eq!(e["op"], "add");
        assert_eq!(e["cidr"], "10.213.0.0/16");
        assert_eq!(e["verdict"], "block");
        assert_eq!(e["dir"], "src");
        assert_eq!(e["interfaces"][0], "eth9");
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
}
