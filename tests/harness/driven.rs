//! A child process driven one byte at a time over its stdin/stdout, for tests that count what a
//! program does in a window: the program writes `r` when it is idle and ready, performs one
//! window of work per command byte, and answers `d` when the window is over (see the protocol
//! comments in `tests/programs/syscalls.c` and `malloc.c`).

use std::{
    io::{Read as _, Write as _},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    time::Duration,
};

/// How long a window may take before the test fails instead of hanging.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(20);

/// A running test program; killed on drop if still alive.
pub struct Driven {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Driven {
    /// Starts `program args…` and waits until it reports ready.
    pub fn spawn(program: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut d = Self {
            child,
            stdin,
            stdout,
        };
        d.expect(b'r');
        d
    }

    /// The child's pid (its tgid: it is single-threaded).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command byte without waiting for an answer.
    pub fn send(&mut self, cmd: u8) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin
            .write_all(&[cmd])
            .expect("writing to the test program");
        stdin.flush().unwrap();
    }

    /// Runs one window: sends `cmd` and waits for the program's `d`.
    pub fn window(&mut self, cmd: u8) {
        self.send(cmd);
        self.expect(b'd');
    }

    /// Closes stdin (the program exits on EOF) and waits for the exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
    }

    /// Sends `cmd` and waits for the program to exit (e.g. after an exec of /bin/true).
    pub fn send_and_wait(mut self, cmd: u8) -> ExitStatus {
        self.send(cmd);
        self.child.wait().unwrap()
    }

    /// Runs `mapscope <view…> --pid PID --json --interval 0.2 --count 100` on this process, then
    /// `windows` windows of `cmd`, then closes its stdin so it exits, and checks the view stopped
    /// by itself (`--count` only bounds a view that failed to notice): a clean exit, the one
    /// stderr line naming the process, fewer reports than `--count`. Returns every report.
    pub fn pid_view_until_exit(
        mut self,
        view: &[&str],
        cmd: u8,
        windows: usize,
    ) -> Vec<serde_json::Value> {
        let pid = self.pid();
        let mut c = Command::new(super::BIN);
        c.args(view)
            .args(["--pid", &pid.to_string(), "--json", "--interval", "0.2"])
            .args(["--count", "100"]);
        let cli = super::JsonView::spawn(c);
        let first = cli.next();
        for _ in 0..windows {
            self.window(cmd);
        }
        assert!(self.finish().success());
        let (status, rest, stderr) = cli.wait();
        assert!(status.success(), "{stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("mapscope: process {pid} exited; stopping")
        );
        let reports: Vec<serde_json::Value> = std::iter::once(first).chain(rest).collect();
        assert!(reports.len() < 100, "ran on after the exit");
        reports
    }

    fn expect(&mut self, want: u8) {
        let mut pfd = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, WINDOW_TIMEOUT.as_millis() as i32) };
        assert!(
            rc == 1,
            "test program silent for {WINDOW_TIMEOUT:?} (poll {rc})"
        );
        let mut b = [0u8];
        self.stdout
            .read_exact(&mut b)
            .expect("test program exited early");
        assert_eq!(b[0], want, "test program answered {:?}", b[0] as char);
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
