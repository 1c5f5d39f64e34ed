//! A web service on 127.0.0.1 for the sink tests: records every POSTed JSON body and can be
//! stopped and restarted on the same port to simulate an outage.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

/// What the server has received and how it behaves.
#[derive(Default)]
struct Inner {
    bodies: Vec<Value>,
    /// Wait this long before answering (and before recording: an aborted request leaves no trace).
    delay: Duration,
    /// Answer 400 to any body whose text contains this.
    reject: Option<String>,
}

type Bodies = Arc<Mutex<Inner>>;

pub struct TestServer {
    pub addr: SocketAddr,
    bodies: Bodies,
    stop: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let mut s = Self {
            addr: ([127, 0, 0, 1], 0).into(),
            bodies: Bodies::default(),
            stop: None,
        };
        s.listen().await;
        s
    }

    /// A loopback address with nothing listening on it (for "service down" tests).
    pub async fn unused_addr() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    /// A server that will listen on `addr` once [`TestServer::restart`] is called.
    pub fn stopped_at(addr: SocketAddr) -> Self {
        Self {
            addr,
            bodies: Bodies::default(),
            stop: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind test server");
        self.addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/events", post(record))
            .with_state(Arc::clone(&self.bodies));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.stop = Some((tx, task));
    }

    /// Stops listening; requests fail with "connection refused" until restarted.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    /// Every accepted body, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().bodies.clone()
    }

    /// Makes every answer take `delay` (a slow service).
    pub fn set_delay(&self, delay: Duration) {
        self.bodies.lock().unwrap().delay = delay;
    }

    /// Refuses (HTTP 400) every body containing `needle`.
    pub fn reject_containing(&self, needle: &str) {
        self.bodies.lock().unwrap().reject = Some(needle.to_string());
    }

    /// Every event of every body, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.bodies()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

async fn record(State(inner): State<Bodies>, Json(body): Json<Value>) -> StatusCode {
    let delay = inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut inner = inner.lock().unwrap();
    if inner
        .reject
        .as_ref()
        .is_some_and(|r| body.to_string().contains(r.as_str()))
    {
        return StatusCode::BAD_REQUEST;
    }
    inner.bodies.push(body);
    StatusCode::OK
}
