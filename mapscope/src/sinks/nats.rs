//! NATS JetStream sink: every event is one message (the `--json` object) on subject
//! `<prefix>.<host>.<family>`, stored exactly once in a JetStream stream, through the shared
//! [`super::pipeline`] (bounded queue, ordered delivery, retry with backoff, write-ahead spool).
//!
//! - Start-up: a malformed URL, credentials the server refuses, a TLS failure, a server without
//!   JetStream or an existing stream whose subjects do not cover `<prefix>.<host>.*` are one-line
//!   errors before anything is attached. An unreachable server is a warning: events wait in
//!   memory, then in the spool, and go out in order once it answers (the client reconnects for
//!   good, and the stream is found or created then).
//! - Exactly once: each message carries `Nats-Msg-Id: <host>.<spool id>.<seq>` (see
//!   [`publish`]), so a publish retried after its ack was lost is dropped by the server as a
//!   duplicate, provided the retry comes within the stream's duplicate window (`duplicate_window`,
//!   10 minutes for a stream mapscope creates; docs/fleet.md).
//! - Each publish waits for its JetStream ack, at most `max_in_flight` at once; a batch counts as
//!   delivered once every ack is back.
//! - Credentials (token, user/password, creds file, TLS client certificates) go to async-nats
//!   only; messages show the server URLs without user information.

/// The `[sinks.nats]` settings.
pub mod config;
/// The JetStream transport.
pub mod publish;
/// Finding or creating the stream.
pub mod stream;
/// Subject names and wildcard coverage.
pub mod subject;

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr, jetstream};
use serde_json::Value;
use tokio::sync::Mutex;

pub use self::config::{NatsConfig, Secret};
use self::{
    publish::JetStreamTransport,
    stream::{Ensure, StreamTrouble},
};
pub use super::pipeline::{Reporter, SinkStats, stderr_reporter};
use super::pipeline::{Sink, SinkConfig};
use crate::{Error, Result, error::one_line};

/// How long the start-up connection attempt may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a publish waits for its JetStream ack before it is retried.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// The file in the spool directory naming the spool in message ids.
const SPOOL_ID_FILE: &str = "nats-spool-id";

/// Handle to the running sink.
pub struct NatsSink {
    inner: Sink,
}

impl NatsSink {
    /// Checks the settings, connects, finds or creates the stream, and starts delivering.
    /// Messages go to stderr.
    pub async fn start(cfg: NatsConfig) -> Result<Self> {
        Self::start_with(cfg, stderr_reporter()).await
    }

    /// [`NatsSink::start`] with the sink's messages sent to `report`.
    pub async fn start_with(cfg: NatsConfig, report: Reporter) -> Result<Self> {
        let durations = cfg.check()?;
        let servers = servers(&cfg.url)?;
        let shown = shown(&servers);
        let host = hostname();
        let dir = cfg.spool_dir.clone();
        let spool_id = tokio::task::spawn_blocking(move || spool_id(&dir))
            .await
            .map_err(|e| Error::InvalidArgument(format!("spool task failed: {e}")))??;
        let mut ensure = Ensure::new(
            &cfg.stream,
            cfg.subjects(),
            subject::ours(&cfg.subject_prefix, &host),
            cfg.retention.into(),
            durations.max_age,
            durations.duplicate_window,
            cfg.replicas,
        );
        let client = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            options(&cfg).await?.connect(servers.clone()),
        )
        .await
        {
            Ok(Ok(client)) => Some(client),
            Ok(Err(e)) => {
                if let Some(fatal) = fatal(&shown, &e) {
                    return Err(fatal);
                }
                report(&format!(
                    "warning: NATS {shown} is unreachable ({}); events will wait in {} and be published when it is back",
                    one_line(&e),
                    cfg.spool_dir.display()
                ));
                None
            }
            Err(_) => {
                report(&format!(
                    "warning: NATS {shown} did not answer within {} s; events will wait in {} and be published when it is back",
                    CONNECT_TIMEOUT.as_secs(),
                    cfg.spool_dir.display()
                ));
                None
            }
        };
        let client = match client {
            Some(c) => c,
            None => options(&cfg)
                .await?
                .retry_on_initial_connect()
                .connect(servers)
                .await
                .map_err(|e| Error::InvalidArgument(format!("NATS {shown}: {e}")))?,
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .ack_timeout(ACK_TIMEOUT)
            .max_ack_inflight(cfg.max_in_flight)
            .backpressure_on_inflight(true)
            .build(client);
        if matches!(
            js.client().connection_state(),
            async_nats::connection::State::Connected
        ) {
            match ensure.check(&js).await {
                Ok(()) => ensure.done = true,
                Err(StreamTrouble::Config(m)) => return Err(Error::InvalidArgument(m)),
                Err(StreamTrouble::Unanswered(m)) => report(&format!("warning: {m}; retrying")),
            }
        }
        let inner = Sink::start(
            SinkConfig {
                batch_max: cfg.batch_max,
                batch_wait: Duration::from_millis(cfg.batch_ms),
                queue: cfg.queue,
                spool_dir: cfg.spool_dir.clone(),
                spool_max_bytes: cfg.spool_max_bytes,
                retry_max: Duration::from_millis(cfg.retry_max_ms),
            },
            JetStreamTransport {
                js,
                prefix: cfg.subject_prefix.clone(),
                spool_id,
                max_in_flight: cfg.max_in_flight,
                shown,
                ensure: Arc::new(Mutex::new(ensure)),
                acked_upto: Arc::new(AtomicU64::new(0)),
            },
            report,
        )
        .await?;
        Ok(Self { inner })
    }

    /// Queues one event; waits only while `queue` events are already waiting to be batched.
    pub async fn send(&self, event: Value) -> Result<()> {
        self.inner.send(event).await
    }

    /// Records the kernel's lost-event total, carried in every later message's header.
    pub fn set_lost(&self, total: u64) {
        self.inner.set_lost(total);
    }

    /// The running delivery totals (the agent's `/metrics`).
    pub fn live(&self) -> Arc<crate::sinks::pipeline::LiveStats> {
        self.inner.live()
    }

    /// Flushes: publishes what it can now, leaves the rest in the spool for the next run.
    pub async fn finish(self) -> Result<SinkStats> {
        self.inner.finish().await
    }
}

/// Connects once, failing on an unreachable server too: for consumers such as `mapscope tail`.
pub async fn connect(cfg: &NatsConfig) -> Result<async_nats::Client> {
    let servers = servers(&cfg.url)?;
    let shown = shown(&servers);
    match tokio::time::timeout(CONNECT_TIMEOUT, options(cfg).await?.connect(servers)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(fatal(&shown, &e).unwrap_or_else(|| {
            Error::InvalidArgument(format!(
                "NATS {shown} is unreachable ({}): start the server or fix --nats",
                one_line(&e)
            ))
        })),
        Err(_) => Err(Error::InvalidArgument(format!(
            "NATS {shown} did not answer within {} s: start the server or fix --nats",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A connection failure no retry will fix, as a one-line error.
fn fatal(shown: &str, e: &async_nats::ConnectError) -> Option<Error> {
    let m = match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => format!(
            "NATS {shown} refused mapscope's credentials ({}): check --nats-token, --nats-user/--nats-password or --nats-creds",
            e.kind()
        ),
        ConnectErrorKind::Tls => format!(
            "TLS with NATS {shown} failed ({}): check the tls:// URL and --nats-tls-ca / --nats-tls-cert",
            one_line(e)
        ),
        ConnectErrorKind::ServerParse => {
            format!("--nats {shown}: {e} (e.g. nats://127.0.0.1:4222)")
        }
        _ => return None,
    };
    Some(Error::InvalidArgument(m))
}

/// The client options: credentials, TLS, and reconnecting for good.
async fn options(cfg: &NatsConfig) -> Result<ConnectOptions> {
    let mut o = ConnectOptions::new()
        .name("mapscope")
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(Duration::from_secs(10))
        .max_reconnects(None)
        .reconnect_delay_callback(|n| Duration::from_millis((100u64 << n.min(5)).min(2_000)));
    if let Some(t) = &cfg.token {
        o = o.token(t.0.clone());
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        o = o.user_and_password(u.clone(), p.0.clone());
    }
    if let Some(path) = &cfg.creds {
        o = o.credentials_file(path).await.map_err(|e| {
            Error::InvalidArgument(format!(
                "reading NATS credentials file {}: {e} (pass a .creds file made by nsc or nats)",
                path.display()
            ))
        })?;
    }
    if let Some(ca) = &cfg.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        o = o
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(o)
}

/// Parses the comma-separated server list; a bad entry is one line (without its password).
pub fn servers(url: &str) -> Result<Vec<ServerAddr>> {
    let list: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(Error::InvalidArgument(
            "--nats needs a server URL (e.g. nats://127.0.0.1:4222)".into(),
        ));
    }
    list.into_iter()
        .map(|s| {
            let bad = |why: String| {
                Error::InvalidArgument(format!(
                    "--nats {:?} is not a valid NATS URL ({why}; e.g. nats://127.0.0.1:4222 or tls://host:4222)",
                    redact(s)
                ))
            };
            let addr: ServerAddr = s.parse().map_err(|e: std::io::Error| bad(e.to_string()))?;
            let u = addr.clone().into_inner();
            if u.host_str().is_none_or(str::is_empty) {
                return Err(bad("no host".into()));
            }
            if u.path().len() > 1 || u.query().is_some() {
                return Err(bad("a NATS URL has no path".into()));
            }
            Ok(addr)
        })
        .collect()
}

/// The servers for messages: scheme, host and port only.
pub fn shown(servers: &[ServerAddr]) -> String {
    servers
        .iter()
        .map(|s| format!("{}://{}:{}", s.scheme(), s.host(), s.port()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `scheme://user:pass@host` → `scheme://***@host`, for text that did not parse.
fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}***{}", &s[..a + 3], &s[b..]),
        (None, Some(b)) => format!("***{}", &s[b..]),
        _ => s.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_string())
}

/// The spool's id for message ids: made once (random) and kept in the spool directory, so it
/// outlives the process like the batches it names.
fn spool_id(dir: &Path) -> Result<String> {
    let fix = |e: std::io::Error| {
        Error::InvalidArgument(format!(
            "NATS spool {}: {e} (pick a writable --nats-spool-dir)",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fix)?;
    let path = dir.join(SPOOL_ID_FILE);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id.to_string());
        }
    }
    let mut raw = [0u8; 8];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(fix)?;
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!("{SPOOL_ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n")).map_err(fix)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fix)?;
    std::fs::rename(&tmp, &path).map_err(fix)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_credentials() {
        let s = servers("nats://u:secret@127.0.0.1:4222, tls://h2").unwrap();
        assert_eq!(shown(&s), "nats://127.0.0.1:4222,tls://h2:4222");
        for bad in ["http://h:1", "nats://", "", "nats://h:99999", "nats://h/x"] {
            let e = servers(bad).unwrap_err().to_string();
            assert!(e.contains("nats://127.0.0.1:4222"), "{bad}: {e}");
        }
        let e = servers("ftp://u:secret@h").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn spool_id_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let a = spool_id(d.path()).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(spool_id(d.path()).unwrap(), a);
    }
}
