//! The agent's XDP side: the firewall's pinned attachment (`crate::xdp::attachment`), shared
//! with the CLI, never duplicated. On each configured interface the agent reuses an existing
//! mapscope attachment (made by `mapscope xdp attach` or an earlier agent run) or makes one, then
//! adds the config's `drop` rules. The attachment outlives the agent on purpose: the filter keeps
//! filtering and its counters keep counting across agent restarts (the xdp-filter model);
//! `mapscope xdp detach --iface IF` removes it. Only when the agent's own start fails does it
//! remove the attachments it made in that start, so a bad config leaves nothing behind.

use std::{
    collections::BTreeMap,
    fs::File,
    os::fd::AsRawFd as _,
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;

use super::families::lock;
pub use crate::xdp::rules::Cidr;
use crate::{
    iface::Interface,
    xdp::{
        AttachMode,
        attachment::{self, AttachOptions, Attachment},
        error::XdpError,
        report::Interval,
        rules::{self, Direction, Rule, RuleEntry, Verdict},
        snapshot::{self, Talker, XdpSnapshot as FirewallSnapshot},
    },
};

/// How many top talkers the API and `/metrics` show per interface (a bounded label set).
pub const TOP_TALKERS: usize = 10;

/// Why the XDP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum SeamError {
    #[error("xdp.netns {netns:?}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Family(#[from] crate::Error),
    #[error(transparent)]
    Xdp(#[from] XdpError),
}

/// One interface the agent filters and counts on.
struct Attached {
    att: Mutex<Attachment>,
    /// Made by this agent start (removed again if the start fails).
    created: bool,
}

/// The XDP side of the agent: one pinned firewall attachment per interface.
pub struct XdpSeam {
    attached: Vec<Attached>,
    /// Set once the whole agent started: from then on attachments outlive the agent.
    kept: AtomicBool,
}

/// The counters of every interface at one instant.
pub struct XdpSnapshot {
    /// (interface, mode, everything the firewall's maps hold), in config order.
    pub interfaces: Vec<(String, &'static str, FirewallSnapshot)>,
}

impl XdpSnapshot {
    /// What `GET /api/v1/xdp` returns: per interface the same report `xdp stats --json` prints,
    /// taken between zero and now (so `packets`/`bytes` are totals since attach and rates are 0).
    pub fn json(&self) -> serde_json::Value {
        crate::versioned::versioned(
            1,
            &serde_json::json!({
                "interfaces": self
                    .interfaces
                    .iter()
                    .map(|(iface, mode, snap)| interface_json(iface, mode, snap))
                    .collect::<Vec<_>>(),
            }),
        )
    }
}

/// One interface's report since attach, with its top talkers and rules.
pub fn interface_json(
    iface: &str,
    mode: &'static str,
    snap: &FirewallSnapshot,
) -> serde_json::Value {
    let zero = FirewallSnapshot {
        at: snap.at,
        array: Default::default(),
        percpu: Default::default(),
        rules: Vec::new(),
        talkers: Vec::new(),
        errors: Default::default(),
    };
    let mut interval = Interval::between(iface, mode, &zero, snap, TOP_TALKERS);
    interval.attachment = "pinned";
    interval.json()
}

/// A rule change asked for through the API.
#[derive(Clone, Copy, Debug)]
pub struct RuleChange {
    pub cidr: Cidr,
    pub verdict: Verdict,
    pub dir: Direction,
}

/// The rules of every interface, as the rules endpoints return them.
#[derive(Serialize)]
pub struct RuleSets(BTreeMap<String, Vec<RuleEntry>>);

impl XdpSeam {
    /// Resolves the interfaces (in `netns` when given), reuses or makes each one's pinned
    /// attachment and adds `drop` as block rules on source addresses.
    pub fn start(
        interfaces: &[String],
        netns: Option<&str>,
        mode: AttachMode,
        drop: &[Cidr],
    ) -> Result<Self, SeamError> {
        let seam = Self {
            attached: Vec::new(),
            kept: AtomicBool::new(false),
        };
        let open_all = |mut seam: Self| -> Result<Self, SeamError> {
            let names: Vec<Option<&str>> = if interfaces.is_empty() {
                vec![None]
            } else {
                interfaces.iter().map(|s| Some(s.as_str())).collect()
            };
            let rules: Vec<Rule> = drop
                .iter()
                .map(|&cidr| Rule {
                    verdict: Verdict::Block,
                    cidr,
                    dir: Direction::Src,
                })
                .collect();
            for name in names {
                let iface = Interface::resolve(name)?;
                let (mut att, created) = if attachment::pin_dir(&iface.name).exists() {
                    (attachment::open_existing(&iface.name)?, false)
                } else {
                    let opts = AttachOptions {
                        mode,
                        ..Default::default()
                    };
                    (attachment::attach(&iface, opts)?, true)
                };
                let added = rules::add(&mut att, &rules);
                // Pushed before the error check, so a failed start removes what it made.
                seam.attached.push(Attached {
                    att: Mutex::new(att),
                    created,
                });
                added?;
            }
            Ok(seam)
        };
        match netns {
            None => open_all(seam),
            Some(ns) => in_netns(ns, move || open_all(seam)),
        }
    }

    /// The agent started: its attachments now outlive it (see the module doc).
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// Checks that every interface exists (in `netns` when given) without attaching anything:
    /// the names that do not, in order.
    pub fn missing_interfaces(
        interfaces: &[String],
        netns: Option<&str>,
    ) -> Result<Vec<usize>, SeamError> {
        let check = || -> Result<Vec<usize>, SeamError> {
            Ok(interfaces
                .iter()
                .enumerate()
                .filter(|(_, n)| Interface::resolve(Some(n)).is_err())
                .map(|(i, _)| i)
                .collect())
        };
        match netns {
            None => check(),
            Some(ns) => in_netns(ns, check),
        }
    }

    /// Interface names the agent filters on.
    pub fn interfaces(&self) -> Vec<String> {
        self.attached
            .iter()
            .map(|a| lock(&a.att).iface.clone())
            .collect()
    }

    /// Every interface's counters now, read from the pinned maps.
    pub fn snapshot(&self) -> Result<XdpSnapshot, XdpError> {
        let interfaces = self
            .attached
            .iter()
            .map(|a| {
                let att = lock(&a.att);
                Ok((
                    att.iface.clone(),
                    att.mode().as_str(),
                    snapshot::read(&att.maps)?,
                ))
            })
            .collect::<Result<Vec<_>, XdpError>>()?;
        Ok(XdpSnapshot { interfaces })
    }

    /// Every interface's talkers (the new-talker scan reads only these, not rules and stats).
    pub fn talkers(&self) -> Result<Vec<(String, Vec<Talker>)>, XdpError> {
        self.attached
            .iter()
            .map(|a| {
                let att = lock(&a.att);
                Ok((att.iface.clone(), snapshot::talkers(&att.maps)?))
            })
            .collect()
    }

    /// The rules of every interface with their counters.
    pub fn rules(&self) -> Result<RuleSets, XdpError> {
        let mut out = BTreeMap::new();
        for a in &self.attached {
            let att = lock(&a.att);
            out.insert(att.iface.clone(), rules::list(&att)?);
        }
        Ok(RuleSets(out))
    }

    /// Adds (or re-verdicts) a rule on every interface; whether any interface changed.
    pub fn add_rule(&self, c: RuleChange) -> Result<bool, XdpError> {
        let rule = Rule {
            verdict: c.verdict,
            cidr: c.cidr,
            dir: c.dir,
        };
        let mut changed = false;
        for a in &self.attached {
            let mut att = lock(&a.att);
            let had = rules::list(&att)?.iter().any(|e| e.rule == rule);
            rules::add(&mut att, &[rule])?;
            changed |= !had;
        }
        Ok(changed)
    }

    /// Deletes a rule from every interface that has it; whether any had it.
    pub fn delete_rule(&self, c: RuleChange) -> Result<bool, XdpError> {
        let mut changed = false;
        for a in &self.attached {
            let mut att = lock(&a.att);
            let has = rules::list(&att)?.iter().any(|e| {
                e.rule.cidr == c.cidr && e.rule.dir == c.dir && e.rule.verdict == c.verdict
            });
            if has {
                rules::del(&mut att, c.verdict, &[c.cidr], c.dir)?;
                changed = true;
            }
        }
        Ok(changed)
    }
}

impl Drop for XdpSeam {
    /// A start that failed removes the attachments it made; a started agent keeps them.
    fn drop(&mut self) {
        if self.kept.load(Ordering::Relaxed) {
            return;
        }
        for a in &self.attached {
            if a.created {
                let _ = attachment::detach(&lock(&a.att).iface);
            }
        }
    }
}

/// Runs `f` on a thread that joined network namespace `/run/netns/<ns>`: interface names resolve
/// there and what `f` attaches stays attached (XDP is per interface, not per thread).
fn in_netns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, SeamError> + Send,
) -> Result<T, SeamError> {
    let path = Path::new("/run/netns").join(ns);
    let file = File::open(&path).map_err(|source| SeamError::Netns {
        netns: ns.to_string(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd changes only this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(SeamError::Netns {
                    netns: ns.to_string(),
                    source: std::io::Error::last_os_error(),
                });
            }
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_report_starts_from_zero_and_keeps_the_stats_schema() {
        let snap = FirewallSnapshot {
            at: std::time::Instant::now(),
            array: Default::default(),
            percpu: Default::default(),
            rules: Vec::new(),
            talkers: Vec::new(),
            errors: Default::default(),
        };
        let j = XdpSnapshot {
            interfaces: vec![("eth9".into(), "skb", snap)],
        }
        .json();
        assert_eq!(j["schema"], 1);
        assert_eq!(j["interfaces"][0]["iface"], "eth9");
        assert_eq!(j["interfaces"][0]["attachment"], "pinned");
    }
}
