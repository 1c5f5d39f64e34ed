//! `mapscope tail --nats URL`: the fleet's events from JetStream, as the exec table with a HOST
//! column or as JSON lines (the payloads as published, one per line).
//!
//! It reads through an ordered consumer: ephemeral (the server forgets it when tail exits),
//! acknowledgement-free, in stream order, recreated by the client on a gap. A terminal viewer
//! should neither leave state on the server nor take events away from real consumers (a durable
//! consumer on a work-queue stream would), and two terminals each get their own cursor.
//! `--all` starts at the first event the stream keeps; the default shows new events only.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use clap::Args;
use futures_util::StreamExt as _;
use mapscope::{
    exec::Exec,
    sinks::nats::{self, NatsConfig, publish::SEQ_HEADER},
};
use serde_json::Value;

use super::{nats_args::NatsAuthArgs, shutdown::Shutdown};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// NATS server URL (nats:// or tls://; comma-separated for a cluster).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// Subject filter: every host's events by default; e.g. mapscope.web1.* or mapscope.*.exec.
    #[arg(long, value_name = "SUBJECT", default_value = "mapscope.>")]
    subject: String,
    /// The stream to read (default: the one whose subjects cover --subject).
    #[arg(long, value_name = "NAME")]
    stream: Option<String>,
    /// Start at the oldest event the stream keeps instead of new events only.
    #[arg(long)]
    all: bool,
    /// Print the events as JSON lines (exactly as published) instead of a table.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    auth: NatsAuthArgs,
}

/// Runs the consumer until Ctrl-C or `--count`.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let mut cfg = NatsConfig {
        url: args.nats.clone(),
        ..NatsConfig::default()
    };
    args.auth.apply(&mut cfg);
    let client = nats::connect(&cfg).await?;
    let shown = nats::shown(&nats::servers(&cfg.url)?);
    let js = jetstream::new(client);
    let name = match &args.stream {
        Some(n) => n.clone(),
        None => js.stream_by_subject(args.subject.clone()).await.map_err(|e| {
            anyhow::anyhow!(
                "no JetStream stream on NATS {shown} takes {:?} ({e}): check --subject, or name the stream with --stream",
                args.subject
            )
        })?,
    };
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow::anyhow!("NATS stream {name:?} on {shown}: {e} (check --stream)"))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: args.subject.clone(),
            deliver_policy: if args.all {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating a consumer on stream {name} for {}", args.subject))?;
    let mut messages = consumer
        .messages()
        .await
        .with_context(|| format!("reading stream {name}"))?;
    let mut shutdown = Shutdown::install()?;
    if !args.json {
        println!("{:<16} {}", "HOST", Exec::header());
    }
    let mut shown_events = 0u64;
    loop {
        if args.count.is_some_and(|n| shown_events >= n) {
            break;
        }
        let msg = tokio::select! {
            m = messages.next() => m,
            _ = shutdown.wait() => break,
        };
        let Some(msg) = msg else { break };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself; say so once per error and go on.
                eprintln!("mapscope: reading {name}: {e}; resuming");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if args.json {
            println!("{}", String::from_utf8_lossy(&msg.payload));
        } else {
            let host = msg
                .subject
                .split('.')
                .rev()
                .nth(1)
                .unwrap_or("?")
                .to_string();
            let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            match exec_of(&v) {
                Some(ev) => println!("{host:<16} {}", ev.line()),
                None => {
                    let seq = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(SEQ_HEADER))
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    println!("{host:<16} {} seq {seq}: {v}", msg.subject);
                }
            }
        }
        shown_events += 1;
    }
    Ok(())
}

/// An exec event back from its JSON form (the `--json` schema), for the table.
fn exec_of(v: &Value) -> Option<Exec> {
    if v.get("type")?.as_str()? != "exec" {
        return None;
    }
    let u32_of = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as u32);
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Some(Exec {
        time_ns: v.get("time_ns")?.as_u64()?,
        pid: u32_of("pid")?,
        tid: u32_of("tid").unwrap_or(0),
        ppid: u32_of("ppid"),
        uid: u32_of("uid")?,
        gid: u32_of("gid").unwrap_or(0),
        comm: str_of("comm"),
        filename: str_of("filename"),
        filename_truncated: flag("filename_truncated"),
        filename_fault: flag("filename_fault"),
        args: v
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        args_truncated: flag("args_truncated"),
        args_fault: flag("args_fault"),
        ret: v.get("ret").and_then(Value::as_i64).unwrap_or(0) as i32,
        syscall: if str_of("syscall") == "execveat" {
            "execveat"
        } else {
            "execve"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_json_round_trips_to_the_same_line() {
        let ev = Exec {
            time_ns: 7,
            pid: 42,
            tid: 42,
            ppid: Some(1),
            uid: 1000,
            gid: 1000,
            comm: "true".into(),
            filename: "/bin/true".into(),
            filename_truncated: false,
            filename_fault: true,
            args: vec!["/bin/true".into(), "x".into()],
            args_truncated: false,
            args_fault: false,
            ret: -2,
            syscall: "execveat",
        };
        let back = exec_of(&ev.json()).unwrap();
        assert_eq!(back, ev);
        assert!(exec_of(&serde_json::json!({"type": "xdp"})).is_none());
    }
}
