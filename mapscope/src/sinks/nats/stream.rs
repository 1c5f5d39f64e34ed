//! The stream the events go into: created if missing, and an existing one only checked (its
//! subjects must cover `<prefix>.<host>.*`): its owner's settings win.

use std::time::Duration;

use async_nats::jetstream::{
    self, ErrorCode,
    context::{CreateStreamErrorKind, GetStreamErrorKind},
    stream,
};

use super::subject;
use crate::sinks::transport::Failure;

/// Why the stream is not usable.
#[derive(Debug)]
pub enum StreamTrouble {
    /// Worth retrying: the server did not answer.
    Unanswered(String),
    /// A configuration to fix: no JetStream, subjects not covered, creation refused.
    Config(String),
}

impl StreamTrouble {
    fn message(&self) -> &str {
        match self {
            Self::Unanswered(m) | Self::Config(m) => m,
        }
    }
}

/// The stream mapscope wants, and whether it was found or made in this run.
pub struct Ensure {
    pub config: stream::Config,
    /// The subjects this host publishes to, as a pattern (`<prefix>.<host>.*`).
    pub ours: String,
    pub done: bool,
}

impl Ensure {
    /// What to create if missing.
    pub fn new(
        name: &str,
        subjects: Vec<String>,
        ours: String,
        retention: stream::RetentionPolicy,
        max_age: Duration,
        duplicate_window: Duration,
        replicas: usize,
    ) -> Self {
        Self {
            config: stream::Config {
                name: name.to_string(),
                subjects,
                retention,
                max_age,
                duplicate_window,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                description: Some("mapscope events (created by mapscope)".into()),
                ..Default::default()
            },
            ours,
            done: false,
        }
    }

    /// Finds or creates the stream once; a failure is retried at the next batch.
    pub async fn ensure(&mut self, js: &jetstream::Context) -> Result<(), Failure> {
        if self.done {
            return Ok(());
        }
        match self.check(js).await {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(t) => Err(Failure {
                class: t.message().to_string(),
                detail: t.message().to_string(),
            }),
        }
    }

    /// Finds the stream and checks its subjects, or creates it.
    pub async fn check(&self, js: &jetstream::Context) -> Result<(), StreamTrouble> {
        let name = &self.config.name;
        match js.get_stream(name).await {
            Ok(mut s) => {
                let subjects = s.cached_info().config.subjects.clone();
                if subjects.iter().any(|f| subject::covers(f, &self.ours)) {
                    return Ok(());
                }
                let _ = s.info().await;
                Err(StreamTrouble::Config(format!(
                    "NATS stream {name} takes subjects {subjects:?}, which do not cover {}: add it to the stream's subjects (nats stream edit {name} --subjects ...) or choose another --nats-stream or --nats-prefix",
                    self.ours
                )))
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    self.create(js).await
                }
                GetStreamErrorKind::JetStream(j) => Err(jetstream_trouble(name, &j)),
                GetStreamErrorKind::Request => Err(request_trouble(name, &e.to_string())),
                _ => Err(StreamTrouble::Config(format!(
                    "NATS stream {name:?}: {e} (pick another --nats-stream)"
                ))),
            },
        }
    }

    async fn create(&self, js: &jetstream::Context) -> Result<(), StreamTrouble> {
        let name = &self.config.name;
        match js.create_stream(self.config.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.kind() {
                CreateStreamErrorKind::JetStream(j) => jetstream_trouble(name, &j),
                CreateStreamErrorKind::JetStreamUnavailable => no_jetstream(),
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::Response => {
                    StreamTrouble::Unanswered(format!(
                        "NATS did not answer creating stream {name} ({e})"
                    ))
                }
                _ => StreamTrouble::Config(format!("creating NATS stream {name} failed: {e}")),
            }),
        }
    }
}

fn no_jetstream() -> StreamTrouble {
    StreamTrouble::Config(
        "the NATS server has no JetStream for this account: start nats-server with -js (or enable jetstream in its config)".into(),
    )
}

fn jetstream_trouble(name: &str, j: &jetstream::Error) -> StreamTrouble {
    let code = j.error_code();
    if code == ErrorCode::JETSTREAM_NOT_ENABLED
        || code == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
    {
        return no_jetstream();
    }
    StreamTrouble::Config(format!(
        "NATS refused stream {name}: {j} (fix the stream settings or choose another --nats-stream)"
    ))
}

/// A request without an answer: no JetStream (no responders) is a configuration error, the rest
/// is a server not answering yet.
fn request_trouble(name: &str, e: &str) -> StreamTrouble {
    if e.contains("no responders") {
        no_jetstream()
    } else {
        StreamTrouble::Unanswered(format!("NATS did not answer about stream {name} ({e})"))
    }
}
