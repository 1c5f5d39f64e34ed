//! Process ids as mapscope's filters mean them: the thread-group id of a running process (what
//! `ps` and `kill` call the pid), so a filter covers every thread of the process.

use crate::{Error, Result};

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
