//! Firewall rules: CIDR prefixes in the four LPM tries, set live on a pinned attachment.
//!
//! Writers take the attachment's lock, check everything (syntax, host bits, capacity) before the
//! first map write, and undo their own writes if the kernel still refuses one, so a failed
//! command leaves the rule set as it was. [`load`] adds before it deletes: a rule present in
//! both the old and the new set is never missing, not even for a packet.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    path::Path,
    str::FromStr,
};

use mapscope_common::xdp::{
    MAP_DST4, MAP_DST6, MAP_RULE_STATS, MAP_SRC4, MAP_SRC6, RULE_ALLOW, RULE_BLOCK,
    RULE_COUNT_HOSTS, RuleCounts,
};
use serde::Serialize;

mod store;

pub use self::store::list_maps;
use self::store::{TRIES, is_host, remove_counter, remove_trie, set_counts, set_trie, write_rule};

use super::{
    attachment::Attachment,
    error::{XdpError, XdpResult},
};

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Block,
    Allow,
}

impl Verdict {
    fn value(self) -> u32 {
        match self {
            Verdict::Block => RULE_BLOCK,
            Verdict::Allow => RULE_ALLOW,
        }
    }

    /// As the CLI and rules files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Block => "block",
            Verdict::Allow => "allow",
        }
    }
}

/// Which address of the packet a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Src,
    Dst,
}

/// A network prefix with no host bits set; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
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

impl FromStr for Cidr {
    type Err = XdpError;

    fn from_str(text: &str) -> XdpResult<Self> {
        let bad = |why: String| XdpError::BadRule(format!("bad CIDR {text:?}: {why}"));
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            bad("expected an IPv4 or IPv6 address, e.g. 10.0.0.0/8 or 2001:db8::/32".into())
        })?;
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(bad(format!(
                "an IPv4-mapped IPv6 address never matches (IPv4 packets are matched as IPv4): \
                 write {v4}{}",
                len.map(|l| format!("/{}", l.parse::<u32>().unwrap_or(128).saturating_sub(96)))
                    .unwrap_or_default()
            )));
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| {
                bad(format!(
                    "the prefix length must be 0..={max} for an {} address",
                    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                ))
            })?,
        };
        let net = network(addr, len);
        if net != addr {
            return Err(bad(format!("host bits are set: write {net}/{len}")));
        }
        Ok(Cidr { addr, len })
    }
}

/// `addr` with every bit after the first `len` cleared.
fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// One rule as written by a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Rule {
    pub verdict: Verdict,
    pub cidr: Cidr,
    pub dir: Direction,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verdict.as_str(), self.cidr)?;
        if self.dir == Direction::Dst {
            f.write_str(" dst")?;
        }
        Ok(())
    }
}

/// A rule in the kernel with its counters (packets dropped for block, passed for allow).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleEntry {
    #[serde(flatten)]
    pub rule: Rule,
    /// Key of its counter record.
    pub id: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// The trie a rule lives in, named for messages.
fn trie(cidr: &Cidr, dir: Direction) -> &'static str {
    match (cidr.addr.is_ipv4(), dir) {
        (true, Direction::Src) => MAP_SRC4,
        (true, Direction::Dst) => MAP_DST4,
        (false, Direction::Src) => MAP_SRC6,
        (false, Direction::Dst) => MAP_DST6,
    }
}

/// Every rule of the attachment with its counters, sorted.
pub fn list(att: &Attachment) -> XdpResult<Vec<RuleEntry>> {
    list_maps(&att.maps)
}

/// The rules keyed by what identifies one in the kernel: prefix and direction.
fn by_key(entries: &[RuleEntry]) -> BTreeMap<(Cidr, Direction), Rule> {
    entries
        .iter()
        .map(|e| ((e.rule.cidr, e.rule.dir), e.rule))
        .collect()
}

/// Adds `rules` (an existing rule with the same prefix and direction gets the new verdict).
pub fn add(att: &mut Attachment, rules: &[Rule]) -> XdpResult<()> {
    let _lock = att.lock()?;
    let old = list(att)?;
    let mut new = by_key(&old);
    for r in rules {
        new.insert((r.cidr, r.dir), *r);
    }
    apply(att, &old, new.into_values().collect())
}

/// Deletes the `verdict` rules for `cidrs`; all must exist, or nothing is deleted.
pub fn del(
    att: &mut Attachment,
    verdict: Verdict,
    cidrs: &[Cidr],
    dir: Direction,
) -> XdpResult<()> {
    let _lock = att.lock()?;
    let old = list(att)?;
    let mut new = by_key(&old);
    for c in cidrs {
        match new.remove(&(*c, dir)) {
            Some(r) if r.verdict == verdict => {}
            _ => {
                return Err(XdpError::BadRule(format!(
                    "no {} rule for {c}{} (see `mapscope xdp rules`); nothing was deleted",
                    verdict.as_str(),
                    if dir == Direction::Dst { " dst" } else { "" }
                )));
            }
        }
    }
    apply(att, &old, new.into_values().collect())
}

/// Parses a rules file: one `block|allow CIDR [src|dst]` per line, `#` comments, blank lines.
/// Errors name the file and line.
pub fn parse_file(path: &Path) -> XdpResult<Vec<Rule>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| XdpError::io(format!("reading rules file {}", path.display()), e))?;
    let mut rules = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = |why: String| XdpError::BadRule(format!("{}:{}: {why}", path.display(), i + 1));
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let verdict = match words[0] {
            "block" => Verdict::Block,
            "allow" => Verdict::Allow,
            w => return Err(at(format!("expected `block` or `allow`, found {w:?}"))),
        };
        let cidr: Cidr = words
            .get(1)
            .ok_or_else(|| at("missing the CIDR after the verdict".into()))?
            .parse()
            .map_err(|e: XdpError| at(e.to_string()))?;
        let dir = match words.get(2).copied() {
            None | Some("src") => Direction::Src,
            Some("dst") => Direction::Dst,
            Some(w) => return Err(at(format!("expected `src` or `dst`, found {w:?}"))),
        };
        if words.len() > 3 {
            return Err(at(format!("unexpected {:?} after the rule", words[3])));
        }
        if let Some(prev) = seen.insert((cidr, dir), i + 1) {
            return Err(at(format!("{cidr} is already set on line {prev}")));
        }
        rules.push(Rule { verdict, cidr, dir });
    }
    Ok(rules)
}

/// Replaces the whole rule set with `rules`, adding before deleting.
pub fn load(att: &mut Attachment, rules: &[Rule]) -> XdpResult<()> {
    let _lock = att.lock()?;
    let old = list(att)?;
    apply(att, &old, rules.to_vec())
}

/// Brings the kernel from `old` to `new`: capacity check, then new/changed rules (each with a
/// fresh zeroed counter inserted before the rule), then removals. Caller holds the lock.
fn apply(att: &mut Attachment, old: &[RuleEntry], new: Vec<Rule>) -> XdpResult<()> {
    let cap = att.capacity().rules;
    let old_by_key: BTreeMap<(Cidr, Direction), &RuleEntry> =
        old.iter().map(|e| ((e.rule.cidr, e.rule.dir), e)).collect();
    let new_keys: BTreeSet<(Cidr, Direction)> = new.iter().map(|r| (r.cidr, r.dir)).collect();
    let writes: Vec<Rule> = new
        .iter()
        .filter(|r| {
            old_by_key
                .get(&(r.cidr, r.dir))
                .is_none_or(|e| e.rule != **r)
        })
        .copied()
        .collect();
    let removals: Vec<&RuleEntry> = old
        .iter()
        .filter(|e| !new_keys.contains(&(e.rule.cidr, e.rule.dir)))
        .collect();
    // Peak size per trie: every old rule plus the new prefixes (removals come last). The kernel
    // skips a trie whose count is 0, so each count is raised to the peak before any insert and
    // lowered to the final size only after the removals: never below what the trie holds.
    let mut peak: RuleCounts = [0; 10];
    let mut last: RuleCounts = [0; 10];
    for (i, (name, ..)) in TRIES.iter().enumerate() {
        let name = *name;
        let used = old
            .iter()
            .filter(|e| trie(&e.rule.cidr, e.rule.dir) == name)
            .count() as u32;
        let added = writes
            .iter()
            .filter(|r| trie(&r.cidr, r.dir) == name && !old_by_key.contains_key(&(r.cidr, r.dir)))
            .count() as u32;
        if used + added > cap {
            return Err(XdpError::Full {
                trie: name,
                capacity: cap,
                used,
                fits: cap - used,
            });
        }
        // The same counts split between the trie and its host hash, for the kernel's skip.
        let hosts = |rules: &mut dyn Iterator<Item = &Cidr>| {
            rules.fold([0u32; 2], |mut n, c| {
                n[usize::from(is_host(c))] += 1;
                n
            })
        };
        let old_n = hosts(
            &mut old
                .iter()
                .filter(|e| trie(&e.rule.cidr, e.rule.dir) == name)
                .map(|e| &e.rule.cidr),
        );
        let added_n = hosts(
            &mut writes
                .iter()
                .filter(|r| {
                    trie(&r.cidr, r.dir) == name && !old_by_key.contains_key(&(r.cidr, r.dir))
                })
                .map(|r| &r.cidr),
        );
        let new_n = hosts(
            &mut new
                .iter()
                .filter(|r| trie(&r.cidr, r.dir) == name)
                .map(|r| &r.cidr),
        );
        peak[i] = old_n[0] + added_n[0];
        peak[RULE_COUNT_HOSTS + i] = old_n[1] + added_n[1];
        last[i] = new_n[0];
        last[RULE_COUNT_HOSTS + i] = new_n[1];
    }
    // Both count writes also bump the rules generation, so talkers' cached source rules from
    // before or during the change are looked up again; the second write happens on failure too.
    set_counts(att, peak)?;
    let res = write_and_remove(att, old, &old_by_key, &writes, removals, cap);
    set_counts(att, if res.is_ok() { last } else { peak })?;
    res
}

/// The map writes of [`apply`]: new and changed rules, then removals.
fn write_and_remove(
    att: &mut Attachment,
    old: &[RuleEntry],
    old_by_key: &BTreeMap<(Cidr, Direction), &RuleEntry>,
    writes: &[Rule],
    removals: Vec<&RuleEntry>,
    cap: u32,
) -> XdpResult<()> {
    let mut ids = IdAllocator::new(old, 4 * cap);
    let mut done: Vec<(Rule, u32)> = Vec::new();
    for r in writes {
        let id = ids.next().ok_or_else(|| XdpError::Full {
            trie: MAP_RULE_STATS,
            capacity: 4 * cap,
            used: 4 * cap,
            fits: 0,
        })?;
        if let Err(e) = write_rule(att, r, id) {
            // Undo: restore replaced rules, remove added ones.
            for (r, id) in done.iter().rev() {
                match old_by_key.get(&(r.cidr, r.dir)) {
                    Some(e) => {
                        let _ = set_trie(att, &e.rule, e.id);
                    }
                    None => {
                        let _ = remove_trie(att, r);
                    }
                }
                let _ = remove_counter(att, *id);
            }
            return Err(e);
        }
        done.push((*r, id));
        if let Some(e) = old_by_key.get(&(r.cidr, r.dir)) {
            remove_counter(att, e.id)?;
        }
    }
    for e in removals {
        remove_trie(att, &e.rule)?;
        remove_counter(att, e.id)?;
    }
    Ok(())
}

/// Lowest counter ids not used by the old rules.
struct IdAllocator {
    used: BTreeSet<u32>,
    next: u32,
    max: u32,
}

impl IdAllocator {
    fn new(old: &[RuleEntry], max: u32) -> Self {
        Self {
            used: old.iter().map(|e| e.id).collect(),
            next: 0,
            max,
        }
    }

    fn next(&mut self) -> Option<u32> {
        while self.next < self.max {
            let id = self.next;
            self.next += 1;
            if !self.used.contains(&id) {
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        s.parse::<Cidr>().unwrap_err().to_string()
    }

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert_eq!("10.1.2.3".parse::<Cidr>().unwrap().len, 32);
        assert_eq!("fd00:213::1".parse::<Cidr>().unwrap().len, 128);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
        assert_eq!("::/0".parse::<Cidr>().unwrap().len, 0);
    }

    #[test]
    fn rejects_host_bits_naming_the_network() {
        assert!(
            err("10.1.2.3/8").contains("write 10.0.0.0/8"),
            "{}",
            err("10.1.2.3/8")
        );
        assert!(err("fd00:213::1/64").contains("write fd00:213::/64"));
    }

    #[test]
    fn rejects_family_mixups_and_garbage() {
        assert!(err("10.0.0.0/33").contains("0..=32 for an IPv4"));
        assert!(err("::ffff:10.0.0.1").contains("write 10.0.0.1"));
        assert!(err("::ffff:10.0.0.0/104").contains("write 10.0.0.0/8"));
        assert!(err("10.0.0/8").contains("expected an IPv4 or IPv6"));
        assert!(err("fd00::/129").contains("0..=128 for an IPv6"));
    }

    #[test]
    fn parses_rules_files_with_line_numbers() {
        let dir = std::env::temp_dir().join(format!("ms-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.txt");
        std::fs::write(&p, "# c\nblock 10.0.0.0/8\n\nallow 2001:db8::/48 dst # x\n").unwrap();
        let rules = parse_file(&p).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].to_string(), "allow 2001:db8::/48 dst");
        std::fs::write(&p, "block 10.0.0.0/8\nblock 10.1.2.3/8\n").unwrap();
        let e = parse_file(&p).unwrap_err().to_string();
        assert!(e.contains("r.txt:2: bad CIDR"), "{e}");
        std::fs::write(&p, "drop 10.0.0.0/8\n").unwrap();
        assert!(
            parse_file(&p)
                .unwrap_err()
                .to_string()
                .contains("r.txt:1: expected `block`")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
