//! The agent's TOML config: every key optional with a documented default (see
//! `deploy/agent.toml`), unknown keys refused, and every error one line naming `file:line`.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::xdp::Cidr;
use crate::sinks::{
    http::config::HttpSettings,
    nats::config::{NatsConfig, Secret},
};
use crate::xdp::AttachMode;

/// Where the agent looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/mapscope/agent.toml";
/// Where the agent pins its counter maps, one directory per family.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/mapscope/agent";
/// Loopback only: the API answers the host itself unless asked otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// The bearer token of the mutating endpoints, created 0600 on first start.
pub const DEFAULT_TOKEN_FILE: &str = "/etc/mapscope/agent.token";

/// A config problem, printed as `file:line: message` (just `file: message` without a line).
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The file as written: spans kept for the values checked after parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    pin_dir: Option<Spanned<PathBuf>>,
    http: RawHttp,
    xdp: RawXdp,
    exec: RawFamily,
    syscalls: RawFamily,
    malloc: RawFamily,
    sinks: Sinks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    allow_non_loopback: bool,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawXdp {
    enabled: Option<bool>,
    interfaces: Vec<Spanned<String>>,
    mode: Option<Mode>,
    netns: Option<Spanned<String>>,
    drop: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFamily {
    enabled: Option<bool>,
}

/// `xdp.mode` as the config spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Skb,
    Native,
}

impl From<Mode> for AttachMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Skb => AttachMode::Skb,
            Mode::Native => AttachMode::Native,
        }
    }
}

/// The effective config: defaults filled in, addresses parsed. `--check-config` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The file it came from (absent: built-in defaults).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    pub pin_dir: PathBuf,
    pub http: Http,
    pub xdp: Xdp,
    pub exec: Family,
    pub syscalls: Family,
    pub malloc: Family,
    pub sinks: Sinks,
}

/// `[sinks]`: where the agent streams its events besides its own API (none by default): exec
/// events, XDP rule changes and new talkers, and periodic snapshots (see `agent::feed`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sinks {
    /// How often every family's snapshot goes to the sinks (`humantime`, e.g. `60s`; `0`:
    /// never). Ignored without a sink.
    pub snapshot_every: String,
    /// `[sinks.nats]`: NATS JetStream, exactly once per event (see docs/fleet.md).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redacted")]
    pub nats: Option<NatsConfig>,
    /// `[sinks.http]`: a web service taking POSTed JSON batches, at least once (the CLI's
    /// `exec --post`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// Snapshots once a minute: a consumer sees every counter without polling each agent.
pub const DEFAULT_SNAPSHOT_EVERY: &str = "60s";

impl Default for Sinks {
    fn default() -> Self {
        Self {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY.into(),
            nats: None,
            http: None,
        }
    }
}

impl Sinks {
    /// `snapshot_every` as a duration (checked when the config was read; zero: never).
    pub fn snapshot_every(&self) -> std::time::Duration {
        parse_every(&self.snapshot_every).unwrap_or_default()
    }
}

fn parse_every(v: &str) -> Result<std::time::Duration, String> {
    if v.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let d = humantime::parse_duration(v).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) {
        return Err("shorter than 1s".into());
    }
    Ok(d)
}

/// `--check-config` prints the effective config: never its credentials.
fn redacted<S: serde::Serializer>(cfg: &Option<NatsConfig>, s: S) -> Result<S::Ok, S::Error> {
    let hidden = cfg.clone().map(|mut c| {
        c.url = crate::sinks::nats::servers(&c.url)
            .map(|v| crate::sinks::nats::shown(&v))
            .unwrap_or_default();
        let star = |o: &mut Option<Secret>| {
            if o.is_some() {
                *o = Some(Secret("***".to_string()));
            }
        };
        star(&mut c.token);
        star(&mut c.password);
        c
    });
    hidden.serialize(s)
}

/// `[http]`.
#[derive(Clone, Debug, Serialize)]
pub struct Http {
    pub listen: SocketAddr,
    pub allow_non_loopback: bool,
    pub token_file: PathBuf,
}

/// `[xdp]`.
#[derive(Clone, Debug, Serialize)]
pub struct Xdp {
    pub enabled: bool,
    /// Names as given; empty means the default-route interface (resolved at start).
    pub interfaces: Vec<String>,
    pub mode: Mode,
    /// A named network namespace (`/run/netns/NAME`) holding the interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Sources dropped at start (the firewall's rule list).
    pub drop: Vec<Cidr>,
    /// Line of each interface name, for errors found when resolving them.
    #[serde(skip)]
    pub interface_lines: Vec<Option<usize>>,
}

/// `[exec]`, `[syscalls]`, `[malloc]`.
#[derive(Clone, Debug, Serialize)]
pub struct Family {
    pub enabled: bool,
}

impl Config {
    /// The built-in defaults (what an absent config file means).
    pub fn defaults() -> Self {
        Self::from_raw(Raw::default(), "", None).expect("defaults are valid")
    }

    /// Reads `path`; when `explicit` is false a missing file means the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::defaults());
            }
            Err(e) => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    message: format!("cannot read the config file: {e}; pass a readable --config"),
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Parses config text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().replace('\n', " "),
        })?;
        Self::from_raw(raw, text, Some(file))
    }

    fn from_raw(raw: Raw, text: &str, file: Option<&Path>) -> Result<Self, ConfigError> {
        let err = |span: std::ops::Range<usize>, message: String| ConfigError {
            file: file.map(Path::to_path_buf).unwrap_or_default(),
            line: Some(line_of(text, span.start)),
            message,
        };
        let listen = match &raw.http.listen {
            None => DEFAULT_LISTEN.parse().expect("valid default"),
            Some(s) => s.get_ref().parse::<SocketAddr>().map_err(|_| {
                err(
                    s.span(),
                    format!(
                        "http.listen {:?} is not an address:port (e.g. \"127.0.0.1:9464\")",
                        s.get_ref()
                    ),
                )
            })?,
        };
        if !listen.ip().is_loopback()
            && !raw.http.allow_non_loopback
            && let Some(s) = &raw.http.listen
        {
            return Err(err(
                s.span(),
                format!(
                    "http.listen {listen} is not a loopback address: the API would answer other \
                     hosts; set http.allow_non_loopback = true to mean it"
                ),
            ));
        }
        let drop = raw
            .xdp
            .drop
            .iter()
            .map(|s| {
                s.get_ref().parse::<Cidr>().map_err(|why| {
                    err(s.span(), format!("xdp.drop entry {:?}: {why}", s.get_ref()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(ns) = &raw.xdp.netns
            && !Path::new("/run/netns").join(ns.get_ref()).exists()
        {
            return Err(err(
                ns.span(),
                format!(
                    "xdp.netns {:?} is not a named network namespace: pick one from `ip netns list`",
                    ns.get_ref()
                ),
            ));
        }
        for name in &raw.xdp.interfaces {
            if name.get_ref().is_empty() || name.get_ref().len() > 15 {
                return Err(err(
                    name.span(),
                    format!(
                        "xdp.interfaces entry {:?} is not an interface name (1 to 15 bytes)",
                        name.get_ref()
                    ),
                ));
            }
        }
        let pin_dir = raw
            .pin_dir
            .as_ref()
            .map_or_else(|| PathBuf::from(DEFAULT_PIN_DIR), |p| p.get_ref().clone());
        if let Some(p) = &raw.pin_dir
            && !p.get_ref().is_absolute()
        {
            return Err(err(
                p.span(),
                "pin_dir must be an absolute path on bpffs (e.g. /sys/fs/bpf/mapscope/agent)"
                    .to_string(),
            ));
        }
        Ok(Self {
            source: file.map(Path::to_path_buf),
            pin_dir,
            http: Http {
                listen,
                allow_non_loopback: raw.http.allow_non_loopback,
                token_file: raw
                    .http
                    .token_file
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE)),
            },
            xdp: Xdp {
                enabled: raw.xdp.enabled.unwrap_or(true),
                interface_lines: raw
                    .xdp
                    .interfaces
                    .iter()
                    .map(|s| Some(line_of(text, s.span().start)))
                    .collect(),
                interfaces: raw
                    .xdp
                    .interfaces
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
                mode: raw.xdp.mode.unwrap_or_default(),
                netns: raw.xdp.netns.map(Spanned::into_inner),
                drop,
            },
            exec: Family {
                enabled: raw.exec.enabled.unwrap_or(true),
            },
            syscalls: Family {
                enabled: raw.syscalls.enabled.unwrap_or(true),
            },
            // A uprobe on every malloc of every process: about a microsecond per call.
            malloc: Family {
                enabled: raw.malloc.enabled.unwrap_or(false),
            },
            sinks: {
                let table_err = |table: &str, message: String| ConfigError {
                    file: file.map(Path::to_path_buf).unwrap_or_default(),
                    line: text.find(&format!("[{table}]")).map(|at| line_of(text, at)),
                    message: format!("{table}: {message}"),
                };
                if let Some(n) = &raw.sinks.nats {
                    n.check()
                        .map_err(|e| table_err("sinks.nats", e.to_string()))?;
                }
                if let Some(h) = &raw.sinks.http {
                    h.check()
                        .map_err(|e| table_err("sinks.http", e.to_string()))?;
                    if raw.sinks.nats.as_ref().map(|n| &n.spool_dir) == Some(&h.spool_dir) {
                        return Err(table_err(
                            "sinks.http",
                            format!(
                                "spool_dir {} is also sinks.nats's: give each sink its own",
                                h.spool_dir.display()
                            ),
                        ));
                    }
                }
                if let Err(why) = parse_every(&raw.sinks.snapshot_every) {
                    return Err(ConfigError {
                        file: file.map(Path::to_path_buf).unwrap_or_default(),
                        line: text.find("snapshot_every").map(|at| line_of(text, at)),
                        message: format!(
                            "sinks.snapshot_every {:?} is not a duration of 1s or more ({why}; e.g. 60s, 5m, or 0 for never)",
                            raw.sinks.snapshot_every
                        ),
                    });
                }
                raw.sinks
            },
        })
    }

    /// An error about this config, at `line` when known.
    pub fn error(&self, line: Option<usize>, message: String) -> ConfigError {
        ConfigError {
            file: self
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("(defaults)")),
            line,
            message,
        }
    }

    /// The effective config as TOML, for `--check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/x/agent.toml"))
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.pin_dir, Path::new(DEFAULT_PIN_DIR));
        assert_eq!(c.http.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.xdp.enabled && c.exec.enabled && c.syscalls.enabled);
        assert!(
            !c.malloc.enabled,
            "malloc costs every process: off by default"
        );
        assert_eq!(c.xdp.mode, Mode::Skb);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/x/agent.toml:3: "), "{s}");
        assert!(s.contains("lisen"), "{s}");
        assert!(!s.contains('\n'), "{s}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = parse("\n[xdp]\ndrop = [\"10.0.0.0/8\",\n \"10.1.2.3/33\"]\n").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        let e = parse("[http]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[http]\nlisten = \"0.0.0.0:9464\"\n").unwrap_err();
        assert!(e.to_string().contains("allow_non_loopback"), "{e}");
        parse("[http]\nlisten = \"0.0.0.0:9464\"\nallow_non_loopback = true\n").unwrap();
        let e = parse("[xdp]\nmode = \"fast\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[exec]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn effective_config_round_trips() {
        let c = parse("[xdp]\ninterfaces = [\"eth0\"]\ndrop = [\"10.213.9.0/24\"]\n").unwrap();
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again.xdp.interfaces, ["eth0"]);
        assert_eq!(again.xdp.drop, c.xdp.drop);
    }

    #[test]
    fn sinks_tables_are_checked_with_their_line() {
        let c = parse("[sinks.http]\nurl = \"http://127.0.0.1:9/e\"\n").unwrap();
        assert_eq!(c.sinks.http.as_ref().unwrap().batch_max, 100);
        assert_eq!(c.sinks.snapshot_every(), std::time::Duration::from_secs(60));
        let e = parse("\n[sinks.http]\nurl = \"127.0.0.1:9\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("sinks.http: url"), "{e}");
        let e = parse(
            "[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nspool_dir = \"/s\"\n\
             [sinks.http]\nurl = \"http://127.0.0.1:9/e\"\nspool_dir = \"/s\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("give each sink its own"), "{e}");
        let e = parse("[sinks]\nsnapshot_every = \"often\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[sinks]\nsnapshot_every = \"10ms\"\n").unwrap_err();
        assert!(e.to_string().contains("1s or more"), "{e}");
        let c = parse("[sinks]\nsnapshot_every = \"0\"\n").unwrap();
        assert!(c.sinks.snapshot_every().is_zero());
    }

    #[test]
    fn missing_default_file_means_defaults() {
        let c = Config::load(Path::new("/nonexistent/agent.toml"), false).unwrap();
        assert!(c.source.is_none());
        let e = Config::load(Path::new("/nonexistent/agent.toml"), true).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/agent.toml: "),
            "{e}"
        );
    }
}
