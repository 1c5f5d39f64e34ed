//! `--interval` and `--count` for the live views that report every interval, validated before
//! anything is attached so bad input never leaves a program behind.

use std::time::Duration;

use anyhow::bail;
use tokio::time::{Instant, Interval};

use super::shutdown::Shutdown;

/// Longest interval accepted: a day is already past any live view's use, and far below where
/// `Duration` arithmetic could overflow.
const MAX_INTERVAL_SECS: f64 = 86_400.0;

/// `--interval` and `--count`, flattened into every view that reports once per interval.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Seconds between reports (fractions allowed).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub interval: f64,
    /// Stop after this many intervals [default: run until Ctrl-C/SIGTERM].
    #[arg(long)]
    pub count: Option<u64>,
}

impl ScheduleArgs {
    /// Validates the flags into a [`Schedule`].
    pub fn schedule(&self) -> anyhow::Result<Schedule> {
        Schedule::new(self.interval, self.count)
    }
}

/// When to report and when to stop.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    every: Duration,
    count: Option<u64>,
}

impl Schedule {
    /// Checks `--interval` (positive, finite seconds) and `--count` (at least 1 when given).
    pub fn new(interval_secs: f64, count: Option<u64>) -> anyhow::Result<Self> {
        if interval_secs.is_nan() || interval_secs <= 0.0 || interval_secs.is_infinite() {
            bail!(
                "--interval must be a positive number of seconds (e.g. --interval 2), \
                 got {interval_secs}"
            );
        }
        if interval_secs > MAX_INTERVAL_SECS {
            bail!(
                "--interval must be at most {MAX_INTERVAL_SECS} seconds (one day), got {interval_secs}"
            );
        }
        if count == Some(0) {
            bail!("--count must be at least 1 (omit it to run until Ctrl-C)");
        }
        Ok(Self {
            every: Duration::from_secs_f64(interval_secs),
            count,
        })
    }

    /// The loop of every delta view: a snapshot now and one per tick, printing what `render`
    /// makes of each consecutive pair, until `--count` or a signal.
    pub async fn print_deltas<S>(
        self,
        shutdown: &mut Shutdown,
        mut snapshot: impl FnMut() -> anyhow::Result<S>,
        mut render: impl FnMut(&S, &S) -> String,
    ) -> anyhow::Result<()> {
        let mut prev = snapshot()?;
        let mut ticks = self.start();
        while ticks.next(shutdown).await {
            let cur = snapshot()?;
            println!("{}", render(&prev, &cur));
            prev = cur;
        }
        Ok(())
    }

    /// Starts the clock: the first report is due one interval from now.
    pub fn start(self) -> Ticks {
        Ticks {
            ticker: tokio::time::interval_at(Instant::now() + self.every, self.every),
            left: self.count,
        }
    }
}

/// The running clock of a [`Schedule`].
pub struct Ticks {
    ticker: Interval,
    left: Option<u64>,
}

impl Ticks {
    /// Waits for the next report; false once `--count` reports were made or a signal arrived.
    pub async fn next(&mut self, shutdown: &mut Shutdown) -> bool {
        if self.left == Some(0) {
            return false;
        }
        tokio::select! {
            _ = self.ticker.tick() => {}
            _ = shutdown.wait() => return false,
        }
        if let Some(n) = &mut self.left {
            *n -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_interval_and_count() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Schedule::new(bad, None).unwrap_err().to_string();
            assert!(err.starts_with("--interval must be a positive"), "{err}");
        }
        let err = Schedule::new(1e20, None).unwrap_err().to_string();
        assert!(err.starts_with("--interval must be at most 86400"), "{err}");
        let err = Schedule::new(1.0, Some(0)).unwrap_err().to_string();
        assert!(err.starts_with("--count must be at least 1"), "{err}");
        assert!(Schedule::new(0.1, Some(3)).is_ok());
    }
}
