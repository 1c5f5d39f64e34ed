//! The agent: every enabled family in one long-running process, counters pinned so they survive
//! restarts, served as Prometheus metrics and an HTTP API.
//!
//! Start order keeps failures clean: the config is checked (interfaces included) before anything
//! is touched, the pin root is locked (one agent per pin root), the token read, the port bound,
//! and only then are programs attached. Stop order (SIGTERM/SIGINT): the server stops, then every
//! program is detached; the counter maps stay pinned for the next start.

pub mod api;
pub mod config;
pub mod families;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod pins;
pub mod token;
pub mod xdp;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

pub use config::{Config, ConfigError};

/// Why the agent stopped or did not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pins(#[from] pins::PinError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error(
        "cannot listen on {addr}: {cause}; pick another http.listen or stop what uses the port"
    )]
    Listen {
        addr: SocketAddr,
        /// Shown inline (before the fix), so not a `#[source]`: the chain would repeat it.
        cause: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] families::StartError),
    #[error("sinks.{0}")]
    Sink(&'static str, #[source] crate::Error),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// Checks what parsing cannot: the XDP interfaces exist (in `xdp.netns` when set) and a default
/// route exists when none are named. Attaches nothing.
pub fn check(cfg: &Config) -> Result<(), ConfigError> {
    if !cfg.xdp.enabled {
        return Ok(());
    }
    if cfg.xdp.interfaces.is_empty() {
        if cfg.xdp.netns.is_none() && crate::iface::default_route_interface().is_err() {
            return Err(cfg.error(
                None,
                "xdp: no default route to pick an interface from: set xdp.interfaces".to_string(),
            ));
        }
        return Ok(());
    }
    let missing = xdp::XdpSeam::missing_interfaces(&cfg.xdp.interfaces, cfg.xdp.netns.as_deref())
        .map_err(|e| cfg.error(None, e.to_string()))?;
    if let Some(&i) = missing.first() {
        let where_ = cfg
            .xdp
            .netns
            .as_ref()
            .map_or_else(String::new, |n| format!(" in network namespace {n}"));
        return Err(cfg.error(
            cfg.xdp.interface_lines.get(i).copied().flatten(),
            format!(
                "xdp.interfaces: no interface {:?}{where_}: pick one from `ip link show`",
                cfg.xdp.interfaces[i]
            ),
        ));
    }
    Ok(())
}

/// What a started agent tells its caller before serving.
pub struct Ready {
    pub listen: SocketAddr,
    pub pin_dir: PathBuf,
    pub families: Vec<&'static str>,
    pub interfaces: Vec<String>,
    /// What happened to pins of another layout (recreated), one line each.
    pub pin_reports: Vec<String>,
}

/// Runs the agent until `shutdown` resolves; `ready` is called once everything is attached.
pub async fn run(
    cfg: &Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Ready),
) -> Result<(), AgentError> {
    check(cfg)?;
    let fresh = !cfg.pin_dir.exists();
    let lock = pins::lock(&cfg.pin_dir)?;
    let started = start(cfg).await;
    let (token, listener, families, pin_reports) = match started {
        Ok(s) => s,
        Err(e) => {
            // A first start that failed leaves no pin directory behind.
            if fresh {
                let _ = pins::reset(&cfg.pin_dir, &families::pinned_maps());
            }
            return Err(e);
        }
    };
    let mut names = Vec::new();
    for (on, name) in [
        (families.xdp.is_some(), "xdp"),
        (families.exec.is_some(), "exec"),
        (families.syscalls.is_some(), "syscalls"),
        (families.malloc.is_some(), "malloc"),
    ] {
        if on {
            names.push(name);
        }
    }
    ready(&Ready {
        listen: listener.local_addr().unwrap_or(cfg.http.listen),
        pin_dir: cfg.pin_dir.clone(),
        families: names,
        interfaces: families
            .xdp
            .as_ref()
            .map(xdp::XdpSeam::interfaces)
            .unwrap_or_default(),
        pin_reports,
    });
    let outbox = families.outbox.clone();
    let state = Arc::new(http::AgentState {
        families,
        token,
        started: Instant::now(),
    });
    let feed = outbox.map(|o| feed::start(Arc::downgrade(&state), o, cfg.sinks.snapshot_every()));
    let served = http::serve(listener, http::router(state.clone()), shutdown).await;
    if let Some(f) = feed {
        f.abort();
        let _ = f.await;
    }
    // Flush the sinks, then detach every program (the last reference once the server is gone);
    // pins stay. A handler still holding the state (it should not) only costs the flush.
    if let Ok(mut s) = Arc::try_unwrap(state) {
        s.families.stop().await;
    }
    drop(lock);
    served.map_err(AgentError::Serve)
}

/// Everything between taking the lock and serving; on failure the caller cleans up.
async fn start(
    cfg: &Config,
) -> Result<
    (
        String,
        tokio::net::TcpListener,
        families::Families,
        Vec<String>,
    ),
    AgentError,
> {
    let token = token::load_or_create(&cfg.http.token_file)?;
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|cause| AgentError::Listen {
            addr: cfg.http.listen,
            cause,
        })?;
    // The sinks first: a malformed URL, refused credentials or a stream that does not cover our
    // subjects fail the start before anything is attached (unreachable only warns and spools).
    let outbox = outbox::Outbox::start(&cfg.sinks)
        .await
        .map_err(|(name, e)| AgentError::Sink(name, e))?;
    match families::Families::start(cfg, outbox.clone()) {
        Ok((families, pin_reports)) => Ok((token, listener, families, pin_reports)),
        Err(e) => {
            if let Some(o) = outbox {
                o.finish().await;
            }
            Err(e.into())
        }
    }
}

/// Removes the agent's pins under `pin_dir` (refused while an agent runs). Returns what was
/// removed.
pub fn reset(pin_dir: &Path) -> Result<Vec<PathBuf>, pins::PinError> {
    if !pin_dir.exists() {
        return Ok(Vec::new());
    }
    let lock = pins::lock(pin_dir)?;
    let removed = pins::reset(pin_dir, &families::pinned_maps())?;
    drop(lock);
    Ok(removed)
}
