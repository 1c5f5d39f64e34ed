//! `--nats*` flags: the NATS JetStream sink of `mapscope exec` (and the connection flags of
//! `mapscope tail`), turned into the same [`NatsConfig`] the agent reads from `[sinks.nats]`.

use std::path::PathBuf;

use clap::Args;
use mapscope::sinks::nats::{
    NatsConfig, NatsSink, Secret,
    config::{DEFAULT_SPOOL, Retention},
};

/// How to reach and log in to a NATS server (shared by the sink and `mapscope tail`).
#[derive(Debug, Args)]
pub struct NatsAuthArgs {
    /// NATS auth token (prefer --nats-creds or the agent's config: flags show in `ps`).
    #[arg(long, value_name = "TOKEN", requires = "nats")]
    pub nats_token: Option<String>,
    /// NATS user (with --nats-password).
    #[arg(long, value_name = "USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, value_name = "PASSWORD", requires = "nats_user")]
    pub nats_password: Option<String>,
    /// NATS credentials file (JWT + nkey seed, as made by nsc).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) to verify the NATS server; implies TLS.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (with --nats-tls-key).
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// Copies the credentials into `cfg`.
    pub fn apply(&self, cfg: &mut NatsConfig) {
        cfg.token = self.nats_token.clone().map(Secret);
        cfg.user = self.nats_user.clone();
        cfg.password = self.nats_password.clone().map(Secret);
        cfg.creds = self.nats_creds.clone();
        cfg.tls_ca = self.nats_tls_ca.clone();
        cfg.tls_cert = self.nats_tls_cert.clone();
        cfg.tls_key = self.nats_tls_key.clone();
    }
}

/// NATS JetStream sink options of `mapscope exec`.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// Publish events into NATS JetStream at this URL (nats:// or tls://; comma-separated for a
    /// cluster), one message per event on <prefix>.<host>.<family>, exactly once.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// First token of the subjects.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "mapscope",
        requires = "nats"
    )]
    pub nats_prefix: String,
    /// JetStream stream to publish into; created if missing.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "MAPSCOPE",
        requires = "nats"
    )]
    pub nats_stream: String,
    /// Subjects of a stream mapscope creates (comma-separated; default <prefix>.>).
    #[arg(
        long,
        value_name = "SUBJECTS",
        value_delimiter = ',',
        requires = "nats"
    )]
    pub nats_stream_subjects: Vec<String>,
    /// Retention of a stream mapscope creates.
    #[arg(long, value_enum, default_value_t = Retention::Limits, requires = "nats")]
    pub nats_retention: Retention,
    /// Longest an event stays in a stream mapscope creates (e.g. 7d; 0: server limits only).
    #[arg(long, value_name = "DURATION", default_value = "7d", requires = "nats")]
    pub nats_max_age: String,
    /// De-duplication window of a stream mapscope creates: retries within it land once.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10m",
        requires = "nats"
    )]
    pub nats_duplicate_window: String,
    /// Replicas of a stream mapscope creates (3 on a 3-node cluster).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "nats")]
    pub nats_replicas: usize,
    /// Publishes awaiting their JetStream ack at once.
    #[arg(long, value_name = "N", default_value_t = 256, requires = "nats")]
    pub nats_max_in_flight: usize,
    /// Where events wait while NATS is unreachable (replayed in order, also after a restart).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SPOOL, requires = "nats")]
    pub nats_spool_dir: PathBuf,
    /// Largest the NATS spool may grow, in bytes; beyond it events are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, requires = "nats")]
    pub nats_spool_max_bytes: u64,
    /// Most events per batch (each event is still its own message).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "nats")]
    pub nats_batch_max: usize,
    /// Longest an event waits for its batch, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, requires = "nats")]
    pub nats_batch_ms: u64,
    /// Longest wait between retries of an unreachable server, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000, requires = "nats")]
    pub nats_retry_max_ms: u64,
    /// Print events on stdout too while publishing.
    #[arg(long, requires = "nats")]
    pub nats_echo: bool,
    #[command(flatten)]
    pub auth: NatsAuthArgs,
}

impl NatsArgs {
    /// The sink's settings, if `--nats` was given.
    pub fn config(&self) -> Option<NatsConfig> {
        let url = self.nats.clone()?;
        let mut cfg = NatsConfig {
            url,
            subject_prefix: self.nats_prefix.clone(),
            stream: self.nats_stream.clone(),
            stream_subjects: self.nats_stream_subjects.clone(),
            retention: self.nats_retention,
            max_age: self.nats_max_age.clone(),
            duplicate_window: self.nats_duplicate_window.clone(),
            replicas: self.nats_replicas,
            max_in_flight: self.nats_max_in_flight,
            batch_max: self.nats_batch_max,
            batch_ms: self.nats_batch_ms,
            spool_dir: self.nats_spool_dir.clone(),
            spool_max_bytes: self.nats_spool_max_bytes,
            retry_max_ms: self.nats_retry_max_ms,
            ..NatsConfig::default()
        };
        self.auth.apply(&mut cfg);
        Some(cfg)
    }

    /// Starts the sink if `--nats` was given (before anything is attached: bad settings fail
    /// first).
    pub async fn start(&self) -> anyhow::Result<Option<NatsSink>> {
        match self.config() {
            Some(cfg) => Ok(Some(NatsSink::start(cfg).await?)),
            None => Ok(None),
        }
    }
}

/// Flushes the sink and reports what happened to the events, like the HTTP sink's summary.
pub async fn finish(sink: NatsSink, lost: u64) -> anyhow::Result<()> {
    sink.set_lost(lost);
    let s = sink.finish().await?;
    eprintln!(
        "mapscope: published {} events to NATS; {} spooled for later; {} dropped at the spool limit; {} rejected by the server",
        s.delivered, s.spooled, s.dropped, s.rejected
    );
    Ok(())
}
