//! The agent's XDP seam: everything the agent does with XDP goes through [`XdpSeam`].
//!
//! MERGE SEAM (issue 10 ↔ firewall issue): today this attaches the per-action statistics program
//! of `crate::xdp` for the agent's lifetime (counters start at 0 on every start) and keeps the
//! rule list in memory (the statistics program enforces no rules). When the firewall's pinned
//! attachment lands (`/sys/fs/bpf/mapscope/xdp/<ifname>/`, `xdp::attachment::{attach,
//! open_existing}`, `xdp::rules`, `XdpSnapshot`), switch the bodies of [`XdpSeam::start`],
//! [`XdpSeam::snapshot`], [`XdpSeam::rules`], [`XdpSeam::add_rule`] and
//! [`XdpSeam::delete_rule`] to it: reuse an existing attachment instead of attaching, keep it
//! attached on SIGTERM, and read/write its rule map. Nothing outside this file needs to change.

use std::{
    fmt, fs::File, net::IpAddr, os::fd::AsRawFd as _, path::Path, str::FromStr, sync::Mutex,
};

use mapscope_common::xdp::XdpAction;
use serde::{Deserialize, Serialize};

use crate::{
    iface::Interface,
    xdp::{self as family, AttachMode, XdpStats, report::Interval},
};

/// An address prefix in `addr/len` form (a bare address is a full-length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "not a CIDR: write address/prefix, e.g. 10.0.0.0/8".to_string())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { addr, len };
        if cidr.network() != addr {
            return Err(format!(
                "host bits set: did you mean {}/{len}?",
                cidr.network()
            ));
        }
        Ok(cidr)
    }
}

impl Cidr {
    /// The address with the host bits cleared.
    fn network(self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why the seam could not start.
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
}

/// One interface the agent counts on.
struct Attached {
    stats: XdpStats,
    mode: &'static str,
}

/// The XDP side of the agent: attachments per interface and the rule list.
pub struct XdpSeam {
    attached: Vec<Attached>,
    rules: Mutex<Vec<Cidr>>,
}

/// One interface's counters: the same per-action report `xdp stats --json` prints, taken between
/// zero and now (so `packets`/`bytes` are totals and rates are 0).
pub fn interface_json(
    iface: &str,
    mode: &'static str,
    snap: &family::Snapshot,
) -> serde_json::Value {
    let zero = family::Snapshot {
        at: snap.at,
        array: Default::default(),
        percpu: Default::default(),
    };
    Interval::between(iface, mode, &zero, snap).json()
}

/// The counters of every interface at one instant.
pub struct XdpSnapshot {
    /// (interface, mode, counters), in config order.
    pub interfaces: Vec<(String, &'static str, family::Snapshot)>,
    pub rules: Vec<Cidr>,
}

impl XdpSnapshot {
    /// Packets and bytes of `action` on `iface` (the shared Array's atomic counts).
    pub fn action(snap: &family::Snapshot, action: XdpAction) -> (u64, u64) {
        let r = snap.array[action as usize];
        (r.packets, r.bytes)
    }

    /// What `GET /api/v1/xdp` returns.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": 1,
            "interfaces": self
                .interfaces
                .iter()
                .map(|(i, m, s)| interface_json(i, m, s))
                .collect::<Vec<_>>(),
            "rules": self.rules,
        })
    }
}

impl XdpSeam {
    /// Resolves the interfaces (in `netns` when given) and attaches to each, with `drop` as the
    /// initial rule list. Nothing is left attached when any interface fails.
    pub fn start(
        interfaces: &[String],
        netns: Option<&str>,
        mode: AttachMode,
        drop: &[Cidr],
    ) -> Result<Self, SeamError> {
        let resolve_all = || -> Result<Vec<Attached>, SeamError> {
            let names: Vec<Option<&str>> = if interfaces.is_empty() {
                vec![None]
            } else {
                interfaces.iter().map(|s| Some(s.as_str())).collect()
            };
            let mut out = Vec::new();
            for name in names {
                let iface = Interface::resolve(name)?;
                let stats = XdpStats::attach(&iface, mode)?;
                out.push(Attached {
                    stats,
                    mode: mode.as_str(),
                });
            }
            Ok(out)
        };
        let attached = match netns {
            None => resolve_all()?,
            Some(ns) => in_netns(ns, resolve_all)?,
        };
        Ok(Self {
            attached,
            rules: Mutex::new(drop.to_vec()),
        })
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

    /// Interface names the seam counts on.
    pub fn interfaces(&self) -> Vec<String> {
        self.attached
            .iter()
            .map(|a| a.stats.interface().name.clone())
            .collect()
    }

    /// Every interface's counters now.
    pub fn snapshot(&self) -> crate::Result<XdpSnapshot> {
        let interfaces = self
            .attached
            .iter()
            .map(|a| {
                Ok((
                    a.stats.interface().name.clone(),
                    a.mode,
                    a.stats.snapshot()?,
                ))
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(XdpSnapshot {
            interfaces,
            rules: self.rules(),
        })
    }

    /// The rule list.
    pub fn rules(&self) -> Vec<Cidr> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds `cidr` (no-op if present); returns whether it was new.
    pub fn add_rule(&self, cidr: Cidr) -> bool {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.contains(&cidr) {
            return false;
        }
        rules.push(cidr);
        true
    }

    /// Removes `cidr`; returns whether it was there.
    pub fn delete_rule(&self, cidr: Cidr) -> bool {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let before = rules.len();
        rules.retain(|r| *r != cidr);
        rules.len() != before
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
    fn parses_cidrs() {
        let c: Cidr = "10.213.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.213.0.0/16");
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().len, 32);
        assert_eq!("fd00:213::/32".parse::<Cidr>().unwrap().len, 32);
        assert!("10.1.2.3/33".parse::<Cidr>().is_err());
        assert!("10.1.2.0/x".parse::<Cidr>().is_err());
        assert!("bogus/8".parse::<Cidr>().is_err());
        let e = "10.1.2.3/24".parse::<Cidr>().unwrap_err();
        assert!(e.contains("10.1.2.0/24"), "{e}");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
    }
}
