//! Process ids as mapscope's filters mean them: the thread-group id of a running process (what
//! `ps` and `kill` call the pid), so a filter covers every thread of the process; and a handle on
//! one such process that says when it exits.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};

use crate::{Error, Result};

/// A running process held through a pidfd: it refers to that very process, so its exit is seen
/// even if the pid is reused at once, and the fd becomes readable when the process exits.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: u32,
    fd: OwnedFd,
}

impl ProcessHandle {
    /// Opens a pidfd on process `pid` (Linux 5.3).
    pub fn open(pid: u32) -> Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ESRCH) => Error::UnknownPid { pid },
                Some(libc::ENOSYS) => Error::KernelFeature {
                    feature: "pidfd_open (Linux 5.3)",
                    fix: "run mapscope on Linux 5.3 or later",
                },
                _ => Error::io(format!("watching process {pid} (pidfd_open)"), err),
            });
        }
        // SAFETY: the kernel just handed us this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Self { pid, fd })
    }

    /// The process id it was opened with.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited (it may still be a zombie nobody reaped).
    pub fn has_exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }
}

impl AsFd for ProcessHandle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for ProcessHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Checks that `pid` names a running process (not one of its threads) and returns it.
///
/// Done before anything is loaded so a typo becomes one clear message instead of a filter that
/// silently matches nothing.
pub fn check_process(pid: u32) -> Result<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| Error::UnknownPid { pid })?;
    match parse_tgid(&status) {
        Some(tgid) if tgid == pid => Ok(pid),
        Some(tgid) => Err(Error::ThreadId { pid, tgid }),
        None => Err(Error::UnknownPid { pid }),
    }
}

fn parse_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_accepted() {
        assert_eq!(
            check_process(std::process::id()).unwrap(),
            std::process::id()
        );
    }

    #[test]
    fn missing_pid_is_unknown() {
        // pid_max is at most 2^22, so this pid can never exist.
        let pid = 1 << 23;
        let err = check_process(pid).unwrap_err();
        assert!(
            matches!(err, Error::UnknownPid { pid: p } if p == pid),
            "{err}"
        );
        assert!(
            err.to_string().contains("no process with pid 8388608"),
            "{err}"
        );
    }

    #[test]
    fn process_handle_sees_the_exit_of_that_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let handle = ProcessHandle::open(child.id()).unwrap();
        assert_eq!(handle.pid(), child.id());
        assert!(!handle.has_exited());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(handle.has_exited());
        assert!(matches!(
            ProcessHandle::open(1 << 23),
            Err(Error::UnknownPid { .. })
        ));
    }

    #[test]
    fn thread_id_names_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            // Stay alive until the check ran.
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let err = check_process(tid).unwrap_err();
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(
            matches!(err, Error::ThreadId { tgid, .. } if tgid == std::process::id()),
            "{err}"
        );
        assert_eq!(parse_tgid("Name:\tx\nTgid:\t42\nPid:\t43\n"), Some(42));
        assert_eq!(parse_tgid("Name:\tx\n"), None);
    }
}
