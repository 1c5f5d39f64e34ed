//! The agent's `[sinks.http]` table: the same settings as the CLI's `--post*` flags (same
//! defaults), read from TOML and turned into an [`HttpSinkConfig`].

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::HttpSinkConfig;
use crate::{Error, Result};

/// Where the HTTP sink spools by default (the CLI's `--spool-dir` default too).
pub const DEFAULT_SPOOL: &str = "/var/lib/mapscope/spool";

/// `[sinks.http]`. Every field but `url` has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The web service's POST endpoint, `http://` or `https://`.
    pub url: String,
    /// Most events per POST.
    pub batch_max: usize,
    /// Longest an event waits for its batch, in milliseconds.
    pub batch_ms: u64,
    /// Events held in memory before the spool takes them.
    pub queue: usize,
    /// Where batches wait while the service is unreachable (locked by this sink: give the NATS
    /// sink another one).
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// Longest wait between retries, in milliseconds.
    pub retry_max_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_max: 100,
            batch_ms: 500,
            queue: 10_000,
            spool_dir: DEFAULT_SPOOL.into(),
            spool_max_bytes: 64 << 20,
            retry_max_ms: 30_000,
        }
    }
}

impl HttpSettings {
    /// Checks what can be checked without the service; each error is one line naming the fix.
    pub fn check(&self) -> Result<()> {
        if super::service_url(&self.url).is_none() {
            return Err(Error::InvalidArgument(format!(
                "url {:?} is not a valid http(s) URL (e.g. \"http://127.0.0.1:8080/events\")",
                self.url
            )));
        }
        if self.batch_max == 0 || self.queue == 0 {
            return Err(Error::InvalidArgument(
                "batch_max and queue must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The sink's settings.
    pub fn sink_config(&self) -> HttpSinkConfig {
        HttpSinkConfig {
            url: self.url.clone(),
            batch_max: self.batch_max,
            batch_wait: Duration::from_millis(self.batch_ms),
            queue: self.queue,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_bytes,
            retry_max: Duration::from_millis(self.retry_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        let s = |url: &str| HttpSettings {
            url: url.into(),
            ..Default::default()
        };
        s("http://127.0.0.1:8080/events").check().unwrap();
        s("https://collector.example/ingest").check().unwrap();
        for bad in ["", "127.0.0.1:8080", "ftp://x/y", "http://"] {
            let e = s(bad).check().unwrap_err().to_string();
            assert!(e.contains("not a valid http(s) URL"), "{bad}: {e}");
        }
    }
}
