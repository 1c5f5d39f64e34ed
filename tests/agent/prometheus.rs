//! A real Prometheus (Debian's `prometheus`) on 127.0.0.1 with a temp data dir, scraping the
//! agent every second; killed on drop, even when the test panics.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::http::{self, free_port, urlencode};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second, and waits until it is ready.
    pub fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: mapscope\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus (scripts/setup.sh installs it)");
        let p = Self {
            child,
            addr,
            _dir: dir,
        };
        let ready = crate::harness::wait_until(Duration::from_secs(30), || {
            http::request(addr, "GET", "/-/ready", &[], None).is_ok_and(|r| r.status == 200)
        });
        assert!(ready, "prometheus never became ready: {}", p.log());
        p
    }

    /// Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant-vector result of `promql` as (labels, value) pairs.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let r = http::get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(promql)),
        );
        let j = r.json();
        assert_eq!(j["status"], "success", "{promql}: {}", r.body);
        j["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"].clone(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// The single value of `promql`, once it exists and equals `want` (waiting for scrapes).
    pub fn wait_for(&self, promql: &str, want: f64) -> f64 {
        let mut last = None;
        crate::harness::wait_until(Duration::from_secs(30), || {
            let r = self.query(promql);
            last = r.first().map(|(_, v)| *v);
            r.len() == 1 && last == Some(want)
        });
        last.unwrap_or_else(|| panic!("prometheus has no sample for {promql}: {}", self.log()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
