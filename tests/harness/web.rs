//! A web service on 127.0.0.1 for the sink tests: records every POSTed JSON body and can be
//! stopped and restarted on the same port to simulate an outage. It can also answer chosen
//! status codes (auth failures, redirects with a Location), refuse bodies over a size with 413,
//! and be slow, so the sink's handling of each is tested against a real HTTP server.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::LOCATION},
    routing::post,
};
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
    /// Answer this status (with this Location, if any) to every POST, recording nothing.
    answer: Option<(StatusCode, Option<String>)>,
    /// Answer 413 to bodies longer than this many bytes.
    max_body: Option<usize>,
    /// POSTs received, whatever the answer.
    posts: usize,
    /// GETs received (a client that follows a redirect by turning its POST into a GET).
    gets: usize,
    /// Size of every body that got 413.
    too_large: Vec<usize>,
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
        // `/moved` is where redirects point: it accepts GETs (as a redirect-following client
        // sends) and POSTs alike.
        let app = Router::new()
            .route("/events", post(record).get(count_get))
            .route("/moved", post(record).get(count_get))
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

    /// Answers `status` to every POST (recording nothing) until [`TestServer::answer_normally`].
    pub fn answer(&self, status: u16) {
        self.bodies.lock().unwrap().answer = Some((StatusCode::from_u16(status).unwrap(), None));
    }

    /// Answers every POST with the redirect `status` pointing at `location`.
    pub fn redirect(&self, status: u16, location: &str) {
        self.bodies.lock().unwrap().answer = Some((
            StatusCode::from_u16(status).unwrap(),
            Some(location.to_string()),
        ));
    }

    /// Back to recording bodies and answering 200.
    pub fn answer_normally(&self) {
        self.bodies.lock().unwrap().answer = None;
    }

    /// Answers 413 to every body longer than `bytes`.
    pub fn max_body(&self, bytes: usize) {
        self.bodies.lock().unwrap().max_body = Some(bytes);
    }

    /// POSTs received so far, whatever they were answered.
    pub fn posts(&self) -> usize {
        self.bodies.lock().unwrap().posts
    }

    /// GETs received so far.
    pub fn gets(&self) -> usize {
        self.bodies.lock().unwrap().gets
    }

    /// Sizes of the bodies answered with 413.
    pub fn too_large(&self) -> Vec<usize> {
        self.bodies.lock().unwrap().too_large.clone()
    }

    /// Every event of every body, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.bodies()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

async fn record(State(inner): State<Bodies>, raw: Bytes) -> (StatusCode, HeaderMap) {
    let delay = {
        let mut inner = inner.lock().unwrap();
        inner.posts += 1;
        inner.delay
    };
    tokio::time::sleep(delay).await;
    let mut inner = inner.lock().unwrap();
    let mut headers = HeaderMap::new();
    if let Some((status, location)) = &inner.answer {
        if let Some(l) = location {
            headers.insert(LOCATION, l.parse().unwrap());
        }
        return (*status, headers);
    }
    if inner.max_body.is_some_and(|max| raw.len() > max) {
        inner.too_large.push(raw.len());
        return (StatusCode::PAYLOAD_TOO_LARGE, headers);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        return (StatusCode::BAD_REQUEST, headers);
    };
    if inner
        .reject
        .as_ref()
        .is_some_and(|r| body.to_string().contains(r.as_str()))
    {
        return (StatusCode::BAD_REQUEST, headers);
    }
    inner.bodies.push(body);
    (StatusCode::OK, headers)
}

async fn count_get(State(inner): State<Bodies>) -> StatusCode {
    inner.lock().unwrap().gets += 1;
    StatusCode::OK
}
