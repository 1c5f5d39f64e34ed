//! Workload of scripts/bench/nats-sink.sh: pushes N exec-shaped events through one sink and
//! prints the events per second from the first event to the last one delivered (`finish`).
//!
//! `sink_rate nats URL N SPOOL` publishes into JetStream (a fresh stream per run is the
//! script's job); `sink_rate http N SPOOL` posts to a receiver it runs on 127.0.0.1 (axum,
//! answering 200 after parsing the batch), the peer row of the benchmark.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use mapscope::sinks::{
    http::{HttpSink, HttpSinkConfig},
    nats::{NatsConfig, NatsSink},
};
use serde_json::{Value, json};

fn event(i: u64) -> Value {
    json!({"type": "exec", "schema": 1, "time": "2026-11-23T10:00:00.000000000Z",
        "time_ns": 1_800_000_000_000_000_000u64 + i, "pid": 1000 + i % 30000, "tid": 1000,
        "ppid": 1, "uid": 0, "gid": 0, "comm": "bench", "filename": "/usr/bin/true",
        "filename_truncated": false, "args": ["/usr/bin/true", format!("n-{i}")],
        "args_truncated": false, "args_fault": false, "ret": 0, "syscall": "execve"})
}

async fn receive(State(n): State<Arc<AtomicU64>>, body: Bytes) -> &'static str {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let k = v["events"].as_array().map_or(0, Vec::len) as u64;
    n.fetch_add(k, Ordering::Relaxed);
    "ok"
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let quiet: mapscope::sinks::http::Reporter = Arc::new(|m| eprintln!("sink: {m}"));
    let (n, rate) = match a.get(1).map(String::as_str) {
        Some("nats") => {
            let n: u64 = a[3].parse().unwrap();
            let sink = NatsSink::start_with(
                NatsConfig {
                    url: a[2].clone(),
                    spool_dir: a[4].clone().into(),
                    ..NatsConfig::default()
                },
                quiet,
            )
            .await
            .unwrap();
            let t0 = Instant::now();
            for i in 0..n {
                sink.send(event(i)).await.unwrap();
            }
            let s = sink.finish().await.unwrap();
            assert_eq!(s.delivered, n, "{s:?}");
            (n, n as f64 / t0.elapsed().as_secs_f64())
        }
        Some("http") => {
            let n: u64 = a[2].parse().unwrap();
            let got = Arc::new(AtomicU64::new(0));
            let app = Router::new()
                .route("/events", post(receive))
                .with_state(Arc::clone(&got));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            let sink = HttpSink::start_with(
                HttpSinkConfig {
                    url: format!("http://{addr}/events"),
                    batch_max: 100,
                    batch_wait: Duration::from_millis(200),
                    queue: 10_000,
                    spool_dir: a[3].clone().into(),
                    spool_max_bytes: 64 << 20,
                    retry_max: Duration::from_secs(30),
                },
                quiet,
            )
            .await
            .unwrap();
            let t0 = Instant::now();
            for i in 0..n {
                sink.send(event(i)).await.unwrap();
            }
            let s = sink.finish().await.unwrap();
            assert_eq!((s.delivered, got.load(Ordering::Relaxed)), (n, n), "{s:?}");
            (n, n as f64 / t0.elapsed().as_secs_f64())
        }
        _ => panic!("usage: sink_rate nats URL N SPOOL | sink_rate http N SPOOL"),
    };
    println!("{{\"events\": {n}, \"events_per_s\": {rate:.1}}}");
}
