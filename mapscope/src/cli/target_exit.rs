//! `--pid` views (`syscalls`, `malloc`) end when their process exits: counting on would only
//! print zeros, or worse, count a new process that reuses the pid. The last, partial interval
//! is still printed, then one line on stderr says why the view stopped; the exit status is 0,
//! as `perf stat -p` and `strace -p` end when their process does.

use anyhow::Context as _;
use mapscope::tgid::ProcessHandle;
use tokio::io::{Interest, unix::AsyncFd};

use super::{schedule::Schedule, shutdown::Shutdown};

/// The process a view watches, if it has one.
pub struct TargetExit {
    handle: Option<AsyncFd<ProcessHandle>>,
}

impl TargetExit {
    /// Watches `pid` (opened before anything is attached); `None` watches nothing.
    pub fn watch(pid: Option<u32>) -> anyhow::Result<Self> {
        let handle = match pid {
            Some(pid) => {
                let handle = ProcessHandle::open(pid)?;
                // SAFETY: the handle owns its pidfd and keeps it open, unchanged, while it lives.
                let fd = unsafe { AsyncFd::register_with_interest(handle, Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)
                    .context("registering the process watch")?;
                Some(fd)
            }
            None => None,
        };
        Ok(Self { handle })
    }

    /// Resolves with the pid when the watched process exits; never without one.
    async fn exited(&self) -> u32 {
        match &self.handle {
            Some(fd) => loop {
                if let Ok(mut guard) = fd.readable().await {
                    if guard.get_inner().has_exited() {
                        return guard.get_inner().pid();
                    }
                    guard.clear_ready();
                }
            },
            None => std::future::pending().await,
        }
    }

    /// [`Schedule::print_deltas`] that also stops when the watched process exits, after
    /// printing the interval that ends there.
    pub async fn print_deltas<S>(
        &self,
        schedule: Schedule,
        shutdown: &mut Shutdown,
        mut snapshot: impl FnMut() -> anyhow::Result<S>,
        mut render: impl FnMut(&S, &S) -> String,
    ) -> anyhow::Result<()> {
        let mut prev = snapshot()?;
        let mut ticks = schedule.start();
        loop {
            tokio::select! {
                more = ticks.next(shutdown) => {
                    if !more {
                        return Ok(());
                    }
                }
                pid = self.exited() => {
                    let cur = snapshot()?;
                    println!("{}", render(&prev, &cur));
                    eprintln!("mapscope: process {pid} exited; stopping");
                    return Ok(());
                }
            }
            let cur = snapshot()?;
            println!("{}", render(&prev, &cur));
            prev = cur;
        }
    }
}
