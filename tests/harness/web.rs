//! A web service on 127.0.0.1 for the sink tests: records every POSTed JSON body and can be
//! stopped and restarted on the same port to simulate an outage.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

type Bodies = Arc<Mutex<Vec<Value>>>;

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

    /// Every POSTed body, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Every event of every body, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.bodies()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

async fn record(State(bodies): State<Bodies>, Json(body): Json<Value>) -> &'static str {
    bodies.lock().unwrap().push(body);
    "ok"
}
