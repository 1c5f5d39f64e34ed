//! What the sink layer needs from a transport (HTTP today, NATS JetStream next): hand over one
//! encoded batch and say how that went. Everything else (batching, order, retry, spool, crash
//! accounting) is the transport-independent [`super::pipeline`].

use std::future::Future;

use bytes::Bytes;

/// How one delivery attempt ended, in terms the pipeline acts on.
#[derive(Debug)]
pub enum Outcome {
    /// The service has the batch.
    Delivered,
    /// Not taken now, but may be later (service down, overloaded, misconfigured, credentials
    /// expired): the batch stays first in line and is retried with backoff.
    Retry(Failure),
    /// The service refuses this batch for its content and always will: kept aside in the
    /// spool's `rejected/`, counted, never resent.
    Refused(String),
    /// The batch is too large for the service: the pipeline resends it in halves; a single
    /// event too large is refused.
    TooLarge(String),
}

/// Why an attempt failed. Reports go out once per change of `class`, not once per retry.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Short and stable across retries of the same problem (e.g. `HTTP 401 Unauthorized`).
    pub class: String,
    /// The whole story, with what to fix (printed once when the class changes).
    pub detail: String,
}

impl Failure {
    /// A failure whose report is just its class.
    pub fn plain(class: impl Into<String>) -> Self {
        let class = class.into();
        Self {
            detail: class.clone(),
            class,
        }
    }
}

/// A way to hand a batch to a service.
pub trait Transport: Send + Sync + 'static {
    /// Where batches go, for messages (e.g. `web service http://…/events`).
    fn target(&self) -> String;
    /// One attempt to deliver `body`. The future runs on its own task, so it owns what it needs.
    fn deliver(&self, body: Bytes) -> impl Future<Output = Outcome> + Send + 'static;
}
