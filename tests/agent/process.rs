//! The agent as the tests run it: a config in a temp dir with its own pin root on bpffs, port
//! and token file; the process killed on drop and its pins removed, even when a test panics.

use std::{
    io::BufRead as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::{harness::BIN, http::free_port};

/// A config and the places it points at.
pub struct Setup {
    dir: tempfile::TempDir,
    /// `/sys/fs/bpf/mapscope-test-<pid>-<tag>`: removed on drop.
    pub pin_root: PathBuf,
    /// The agent's `pin_dir` inside it.
    pub pin_dir: PathBuf,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub token_file: PathBuf,
}

impl Setup {
    /// A config with `extra` TOML appended (family sections; not `[http]` or `pin_dir`).
    pub fn new(tag: &str, extra: &str) -> Self {
        crate::harness::require_root();
        let dir = tempfile::tempdir().unwrap();
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/mapscope-test-{}-{tag}",
            std::process::id()
        ));
        let pin_dir = pin_root.join("agent");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let token_file = dir.path().join("token");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "pin_dir = \"{}\"\n{extra}\n[http]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\n",
                pin_dir.display(),
                token_file.display()
            ),
        )
        .unwrap();
        Self {
            dir,
            pin_root,
            pin_dir,
            config,
            addr,
            token_file,
        }
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `mapscope agent --config <this> ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(["agent", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Every file and directory under the pin root, sorted (empty when it does not exist).
    pub fn pins(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    out.push(e.path());
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.pin_root, &mut out);
        out.sort();
        out
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.run(&["--reset"]);
        let _ = std::fs::remove_dir(&self.pin_root);
    }
}

/// A running agent.
pub struct Agent {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    /// What it printed before it was ready.
    pub banner: Vec<String>,
}

impl Agent {
    /// Starts the agent and waits for its "metrics at" line; panics with its stderr if it exits.
    pub fn start(setup: &Setup) -> Self {
        Self::start_under(setup, &[])
    }

    /// [`Self::start`] with the agent run by `wrapper` (e.g. `setpriv … --`).
    pub fn start_under(setup: &Setup, wrapper: &[String]) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["agent", "--config"])
            .arg(&setup.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Self {
            child: Some(child),
            stderr,
            banner: Vec::new(),
        };
        loop {
            match agent.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let done = line.contains("metrics at http://");
                    agent.banner.push(line);
                    if done {
                        return agent;
                    }
                }
                Err(_) => {
                    let status = agent.child.as_mut().unwrap().try_wait().unwrap();
                    panic!(
                        "agent not ready (exit {status:?}): {}",
                        agent.banner.join("\n")
                    );
                }
            }
        }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM; returns the exit status and the rest of its stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill on a child we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let rest: Vec<String> = self.stderr.try_iter().collect();
        (status, rest.join("\n"))
    }

    /// SIGKILL: no cleanup of any kind runs.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
