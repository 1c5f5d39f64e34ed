//! Settings of the NATS JetStream sink: one serde struct, read from the agent's `[sinks.nats]`
//! table and built by the CLI's `--nats*` flags, so both run the same sink the same way.
//! Secrets are wrapped in [`Secret`], whose `Debug` prints nothing of them.

use std::{fmt, path::PathBuf, time::Duration};

use async_nats::jetstream::stream::RetentionPolicy;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A credential: kept out of `Debug` output, logs and messages.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// What the stream keeps, in the server's terms (see `nats stream add --retention`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Until `max_age` (or the server's limits): every consumer sees every event.
    #[default]
    Limits,
    /// Until every consumer that exists has acknowledged it.
    Interest,
    /// Until one consumer has acknowledged it.
    Workqueue,
}

impl From<Retention> for RetentionPolicy {
    fn from(r: Retention) -> Self {
        match r {
            Retention::Limits => Self::Limits,
            Retention::Interest => Self::Interest,
            Retention::Workqueue => Self::WorkQueue,
        }
    }
}

/// The `[sinks.nats]` table. Every field but `url` has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated for a cluster: `nats://host:4222`, `tls://host:4222`.
    /// `nats://user:pass@host` and `nats://token@host` work too (never printed).
    pub url: String,
    /// First token of every subject: events go to `<prefix>.<host>.<family>`.
    pub subject_prefix: String,
    /// The JetStream stream the events go into; created if missing.
    pub stream: String,
    /// Subjects of a stream mapscope creates; empty: `<prefix>.>`.
    pub stream_subjects: Vec<String>,
    /// Retention of a stream mapscope creates.
    pub retention: Retention,
    /// Longest an event stays in a stream mapscope creates (`humantime`, e.g. `7d`; `0` keeps
    /// them until the server's limits).
    pub max_age: String,
    /// De-duplication window of a stream mapscope creates: a message re-sent within it with the
    /// same `Nats-Msg-Id` is stored once. Must cover the longest retry (see docs/fleet.md).
    pub duplicate_window: String,
    /// Copies of a stream mapscope creates (3 on a 3-node cluster).
    pub replicas: usize,
    /// Publishes awaiting their JetStream ack at once.
    pub max_in_flight: usize,
    pub token: Option<Secret>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A `.creds` file (JWT + nkey seed), as `nats context` uses.
    pub creds: Option<PathBuf>,
    /// CA certificate(s) to verify the server with (PEM), for `tls://` or a server requiring TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Most events per batch handed to the transport (published one message each).
    pub batch_max: usize,
    /// Longest an event waits for its batch, in milliseconds.
    pub batch_ms: u64,
    /// Events held in memory before the spool takes them.
    pub queue: usize,
    /// Where batches wait while the server is unreachable (its own directory: the HTTP sink's
    /// spool is locked by that sink).
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// Longest wait between retries, in milliseconds.
    pub retry_max_ms: u64,
}

/// Where the NATS sink spools by default (beside the HTTP sink's `/var/lib/mapscope/spool`).
pub const DEFAULT_SPOOL: &str = "/var/lib/mapscope/spool-nats";

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            subject_prefix: "mapscope".into(),
            stream: "MAPSCOPE".into(),
            stream_subjects: Vec::new(),
            retention: Retention::Limits,
            max_age: "7d".into(),
            duplicate_window: "10m".into(),
            replicas: 1,
            max_in_flight: 256,
            token: None,
            user: None,
            password: None,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            batch_max: 100,
            batch_ms: 200,
            queue: 10_000,
            spool_dir: DEFAULT_SPOOL.into(),
            spool_max_bytes: 64 << 20,
            retry_max_ms: 30_000,
        }
    }
}

/// The checked durations of a [`NatsConfig`].
#[derive(Clone, Copy, Debug)]
pub struct Durations {
    pub max_age: Duration,
    pub duplicate_window: Duration,
}

impl NatsConfig {
    /// The subjects of a stream mapscope creates.
    pub fn subjects(&self) -> Vec<String> {
        if self.stream_subjects.is_empty() {
            vec![format!("{}.>", self.subject_prefix)]
        } else {
            self.stream_subjects.clone()
        }
    }

    /// Checks what can be checked without a server; each error is one line naming the fix.
    pub fn check(&self) -> Result<Durations> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.subject_prefix.is_empty()
            || self
                .subject_prefix
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>', ' ', '\t']))
        {
            return bad(format!(
                "NATS subject prefix {:?} is not a valid subject (dot-separated tokens without spaces or wildcards, e.g. mapscope)",
                self.subject_prefix
            ));
        }
        if self.stream.is_empty() || self.stream.contains(['.', '*', '>', ' ', '\t', '/', '\\']) {
            return bad(format!(
                "NATS stream name {:?} is not valid (no spaces, dots, slashes or wildcards, e.g. MAPSCOPE)",
                self.stream
            ));
        }
        if self.max_in_flight == 0 || self.replicas == 0 {
            return bad("NATS max_in_flight and replicas must be at least 1".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("a NATS client certificate needs both tls_cert and tls_key".into());
        }
        if self.password.is_some() && self.user.is_none() {
            return bad("a NATS password needs a user (--nats-user)".into());
        }
        let duration = |name: &str, v: &str| -> Result<Duration> {
            if v.trim() == "0" {
                return Ok(Duration::ZERO);
            }
            humantime::parse_duration(v).map_err(|e| {
                Error::InvalidArgument(format!(
                    "NATS {name} {v:?} is not a duration ({e}; e.g. 7d, 2h, 10m)"
                ))
            })
        };
        let d = Durations {
            max_age: duration("max_age", &self.max_age)?,
            duplicate_window: duration("duplicate_window", &self.duplicate_window)?,
        };
        if d.duplicate_window.is_zero() {
            return bad(
                "NATS duplicate_window must be more than 0: it is what makes a retried publish land once"
                    .into(),
            );
        }
        if !d.max_age.is_zero() && d.duplicate_window > d.max_age {
            return bad(format!(
                "NATS duplicate_window {} is longer than max_age {}: the server refuses that; shorten it",
                self.duplicate_window, self.max_age
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_like_table_with_defaults_and_unknown_fields_refused() {
        let c: NatsConfig = serde_json::from_value(serde_json::json!({
            "url": "nats://127.0.0.1:4222", "token": "s3cret", "retention": "interest"
        }))
        .unwrap();
        assert_eq!(c.stream, "MAPSCOPE");
        assert_eq!(c.retention, Retention::Interest);
        assert_eq!(c.subjects(), ["mapscope.>"]);
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        c.check().unwrap();
        let e = serde_json::from_value::<NatsConfig>(serde_json::json!({"url": "x", "strem": "A"}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `strem`"), "{e}");
    }

    #[test]
    fn check_names_the_fix() {
        let with = |f: &dyn Fn(&mut NatsConfig)| {
            let mut c = NatsConfig {
                url: "nats://h".into(),
                ..NatsConfig::default()
            };
            f(&mut c);
            c.check().map(|_| ()).unwrap_err().to_string()
        };
        assert!(with(&|c| c.subject_prefix = "a.*".into()).contains("prefix"));
        assert!(with(&|c| c.stream = "A.B".into()).contains("stream name"));
        assert!(with(&|c| c.max_age = "soon".into()).contains("max_age"));
        assert!(with(&|c| c.duplicate_window = "0".into()).contains("duplicate_window"));
        assert!(
            with(&|c| {
                c.max_age = "1m".into();
                c.duplicate_window = "2m".into();
            })
            .contains("longer than max_age")
        );
        assert!(with(&|c| c.password = Some(Secret("p".into()))).contains("user"));
    }
}
