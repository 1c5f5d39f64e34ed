//! Ctrl-C and SIGTERM as one future, so every live view stops the same way and drops (detaches)
//! its programs on the way out. The handlers stay installed: a view that drains on the way out
//! waits on [`Shutdown::wait`] again, so a second signal ends the drain at once.

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

/// Resolves when SIGINT or SIGTERM arrives.
pub struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers; do this before attaching anything.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        })
    }

    /// Waits for either signal.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
