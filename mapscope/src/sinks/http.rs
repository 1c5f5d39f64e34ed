//! Web-service sink: events are POSTed as JSON batches (see [`super::batch`]), in order, at
//! least once, through the shared [`super::pipeline`]. This module is only the HTTP part: the
//! request, and what each answer means.
//!
//! - 2xx: delivered.
//! - 400, 422: the service refuses this batch for its content: kept in `rejected/`, counted, not
//!   resent (it would block everything behind it).
//! - 413: too large: resent in halves; a single event too large is refused as above.
//! - 3xx: a configuration error. Redirects are never followed: reqwest's default policy turns a
//!   POST into a GET on 301/302/303, and the batch would count as delivered while its events
//!   went nowhere. Reported with its Location, and the batch is retried.
//! - Anything else (401, 403, 404, 408, 429, 5xx, connection errors, timeouts after
//!   [`REQUEST_TIMEOUT`]): retried with backoff while the batches wait in the spool, and
//!   reported once per change (a token expires, a collector is being redeployed: the batches
//!   must survive that).

/// The agent's `[sinks.http]` table.
pub mod config;

use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, Url, header::LOCATION};
use serde_json::Value;
use tokio::time::timeout;

pub use super::pipeline::{Reporter, SHUTDOWN_GRACE, SinkStats, stderr_reporter};
use super::{
    pipeline::{Sink, SinkConfig},
    transport::{Failure, Outcome, Transport},
};
use crate::{Error, Result, error::one_line};

/// How long one POST may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the sink (see the CLI's `--post*` flags).
#[derive(Clone, Debug)]
pub struct HttpSinkConfig {
    pub url: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// Events held in memory: waiting to be batched, and batches not (yet) on disk.
    pub queue: usize,
    pub spool_dir: std::path::PathBuf,
    pub spool_max_bytes: u64,
    pub retry_max: Duration,
}

/// Handle to the running sink.
pub struct HttpSink {
    inner: Sink,
}

impl HttpSink {
    /// Validates the URL and the spool, warns if the service is unreachable right now (events
    /// then wait in the spool), and starts delivering. Messages go to stderr.
    pub async fn start(cfg: HttpSinkConfig) -> Result<Self> {
        Self::start_with(cfg, stderr_reporter()).await
    }

    /// [`HttpSink::start`] with the sink's messages sent to `report`.
    pub async fn start_with(cfg: HttpSinkConfig, report: Reporter) -> Result<Self> {
        let url = service_url(&cfg.url).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--post {:?} is not a valid http(s) URL (e.g. http://127.0.0.1:8080/events)",
                cfg.url
            ))
        })?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidArgument(format!("building the HTTP client: {e}")))?;
        let spool_dir = cfg.spool_dir.clone();
        let inner = Sink::start(
            SinkConfig {
                batch_max: cfg.batch_max,
                batch_wait: cfg.batch_wait,
                queue: cfg.queue,
                spool_dir: cfg.spool_dir,
                spool_max_bytes: cfg.spool_max_bytes,
                retry_max: cfg.retry_max,
            },
            HttpTransport {
                client,
                url: url.clone(),
            },
            report.clone(),
        )
        .await?;
        if let Err(why) = reachable(&url).await {
            report(&format!(
                "warning: web service {url} is unreachable ({why}); events will wait in {} and be sent when it is back",
                spool_dir.display()
            ));
        }
        Ok(Self { inner })
    }

    /// Queues one event; waits only while `queue` events are already waiting to be batched.
    pub async fn send(&self, event: Value) -> Result<()> {
        self.inner.send(event).await
    }

    /// Records the kernel's lost-event total, carried in every later batch.
    pub fn set_lost(&self, total: u64) {
        self.inner.set_lost(total);
    }

    /// The running delivery totals (the agent's `/metrics`).
    pub fn live(&self) -> std::sync::Arc<super::pipeline::LiveStats> {
        self.inner.live()
    }

    /// See [`Sink::hurry_handle`](super::pipeline::Sink::hurry_handle).
    pub fn hurry_handle(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.inner.hurry_handle()
    }

    /// Flushes: sends what it can now, leaves the rest in the spool for the next run, reports.
    pub async fn finish(self) -> Result<SinkStats> {
        self.inner.finish().await
    }
}

/// `url` when it is an `http(s)://` URL with a host (what a POST can go to).
pub fn service_url(url: &str) -> Option<Url> {
    Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

/// Cheap start-up check: can we open a TCP connection to the service at all?
async fn reachable(url: &Url) -> std::result::Result<(), String> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    match timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// POSTs a batch as `application/json`.
struct HttpTransport {
    client: reqwest::Client,
    url: Url,
}

impl Transport for HttpTransport {
    fn target(&self) -> String {
        format!("web service {}", self.url)
    }

    fn deliver(&self, body: Bytes) -> impl Future<Output = Outcome> + Send + 'static {
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let url = self.url.clone();
        async move {
            match request.send().await {
                Ok(resp) => {
                    let location = resp
                        .headers()
                        .get(LOCATION)
                        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
                    outcome(&url, resp.status(), location.as_deref())
                }
                Err(e) => {
                    let why = one_line(&e);
                    Outcome::Retry(Failure {
                        detail: format!("web service {url} failed ({why})"),
                        class: why,
                    })
                }
            }
        }
    }
}

/// What an HTTP answer means for the batch (see the module documentation).
fn outcome(url: &Url, status: StatusCode, location: Option<&str>) -> Outcome {
    let class = format!("HTTP {status}");
    let retry = |detail: String| {
        Outcome::Retry(Failure {
            class: class.clone(),
            detail,
        })
    };
    match status.as_u16() {
        200..=299 => Outcome::Delivered,
        400 | 422 => Outcome::Refused(class),
        413 => Outcome::TooLarge(class),
        300..=399 => retry(format!(
            "web service {url} answered {class} redirecting to {}: mapscope does not follow redirects (a POST would be replayed as a GET and its events lost); set --post to the URL that takes the POST",
            location.unwrap_or("(no Location)")
        )),
        401 | 403 => retry(format!(
            "web service {url} answered {class}: it does not accept mapscope's requests (credentials expired or missing? an authenticating proxy?)"
        )),
        404 => retry(format!(
            "web service {url} answered {class}: check the path in --post (or the collector is being redeployed)"
        )),
        _ => retry(format!("web service {url} failed ({class})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let url = Url::parse("http://127.0.0.1:1/events").unwrap();
        let of = |code: u16| outcome(&url, StatusCode::from_u16(code).unwrap(), Some("/x"));
        for ok in [200, 201, 204] {
            assert!(matches!(of(ok), Outcome::Delivered), "{ok}");
        }
        for retry in [
            401, 403, 404, 405, 408, 429, 500, 502, 503, 301, 302, 303, 307, 308,
        ] {
            assert!(matches!(of(retry), Outcome::Retry(_)), "{retry}");
        }
        for refuse in [400, 422] {
            assert!(matches!(of(refuse), Outcome::Refused(_)), "{refuse}");
        }
        assert!(matches!(of(413), Outcome::TooLarge(_)));
        let Outcome::Retry(f) = of(302) else {
            unreachable!()
        };
        assert!(f.detail.contains("redirecting to /x"), "{}", f.detail);
        assert_eq!(f.class, "HTTP 302 Found");
    }
}
