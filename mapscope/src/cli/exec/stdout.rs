//! Block-buffered stdout for the event views: lines collect in memory and go out in one write(2)
//! per burst of events. Rust's own stdout is line-buffered even into a file or a pipe, which
//! costs a write(2) per event.

use std::io::Write as _;

/// Past this many buffered bytes a line is written out at once, burst or not.
const FLUSH_AT: usize = 64 << 10;

/// Lines waiting for [`Lines::flush`]. Once a write fails (EPIPE: the reader went away; Rust
/// ignores SIGPIPE) stdout counts as closed: later lines are dropped and every call reports it,
/// so the caller ends the run instead of writing into the void. Dropping flushes, so nothing
/// printed is lost on any way out.
pub struct Lines {
    buf: Vec<u8>,
    open: bool,
}

impl Lines {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            open: true,
        }
    }

    /// Appends one line written by `write` (without its newline); false once stdout is closed.
    pub fn line(&mut self, write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> bool {
        if !self.open {
            return false;
        }
        let start = self.buf.len();
        if write(&mut self.buf).is_err() {
            // Only a serializer error can get here (writing into a Vec cannot fail): drop the
            // partial line, keep the others.
            self.buf.truncate(start);
            return true;
        }
        self.buf.push(b'\n');
        self.buf.len() < FLUSH_AT || self.flush()
    }

    /// Appends a line of text.
    pub fn text(&mut self, line: impl std::fmt::Display) -> bool {
        self.line(|b| write!(b, "{line}"))
    }

    /// Writes out what is buffered; false once stdout is closed.
    pub fn flush(&mut self) -> bool {
        if !self.open {
            return false;
        }
        if self.buf.is_empty() {
            return true;
        }
        let mut out = std::io::stdout().lock();
        // One write(2) for the whole burst: the buffer ends with a newline, so Rust's line
        // buffering passes it straight through.
        self.open = out.write_all(&self.buf).and_then(|()| out.flush()).is_ok();
        self.buf.clear();
        self.open
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.flush();
    }
}
