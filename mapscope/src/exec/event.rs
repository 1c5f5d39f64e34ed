//! Decoding the kernel's `ExecEvent` into a typed [`Exec`], and its text and JSON forms.

use std::{
    ffi::CStr,
    sync::atomic::{AtomicI64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mapscope_common::exec::{
    ARGS_BUF, ExecHeader, ExecSyscall, FLAG_ARGS_FAULT, FLAG_ARGS_TRUNCATED, FLAG_FILENAME_FAULT,
    FLAG_FILENAME_TRUNCATED, FLAG_PPID_UNKNOWN, HEADER_LEN,
};
use serde::Serialize;

/// Version of the JSON shape of events (and of the web-service envelope around them).
pub const SCHEMA_VERSION: u32 = 1;

/// Shown after a string the kernel had to cut short.
pub const TRUNCATION_MARKER: &str = "...";

/// One exec as user space sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exec {
    /// Wall-clock time of the syscall entry, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Process id in mapscope's pid namespace.
    pub pid: u32,
    /// Thread id that called exec, in mapscope's pid namespace.
    pub tid: u32,
    /// `None` when the kernel could not read the parent (no BTF offsets).
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// The path the kernel opened (successful execs) or the one the caller passed (failed ones).
    pub filename: String,
    pub filename_truncated: bool,
    /// The caller's filename could not be read (failed execs only); `filename` is empty.
    pub filename_fault: bool,
    /// The new image's arguments (successful execs) or the caller's argv (failed ones).
    pub args: Vec<String>,
    /// An argument was cut short or arguments were left out (over 4 KiB, or for failed execs
    /// over 20 arguments or 511 bytes in one).
    pub args_truncated: bool,
    /// Reading the arguments failed; `args` holds what was read before.
    pub args_fault: bool,
    /// 0 on success, -errno on failure.
    pub ret: i32,
    /// `execve`, `execveat`, or `unknown` for a successful exec whose syscall entry was not
    /// seen (a 32-bit caller, an exec started by the kernel or before tracing began).
    pub syscall: &'static str,
}

/// Why a buffer could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("exec event of {got} bytes, expected at least {want}")]
pub struct ShortEvent {
    pub got: usize,
    pub want: usize,
}

impl Exec {
    /// Decodes one event as the kernel sends it: an `ExecHeader` followed by `args_len` bytes
    /// of arguments (perf samples may carry trailing padding).
    pub fn decode(bytes: &[u8]) -> Result<Self, ShortEvent> {
        if bytes.len() < HEADER_LEN {
            return Err(ShortEvent {
                got: bytes.len(),
                want: HEADER_LEN,
            });
        }
        // SAFETY: length checked; ExecHeader is Pod (any bit pattern valid); unaligned read.
        let hdr: ExecHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let want = HEADER_LEN + (hdr.args_len as usize).min(ARGS_BUF);
        let args = bytes.get(HEADER_LEN..want).ok_or(ShortEvent {
            got: bytes.len(),
            want,
        })?;
        Ok(Self::from_parts(&hdr, args))
    }

    /// Converts a kernel header and its argument bytes; strings stop at the first NUL and are
    /// decoded lossily.
    pub fn from_parts(hdr: &ExecHeader, args: &[u8]) -> Self {
        // NUL-terminated arguments back to back; the last one has no NUL when it was cut.
        let args = match args.strip_suffix(&[0]).unwrap_or(args) {
            [] if args.is_empty() => Vec::new(),
            block => block
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        };
        Self {
            time_ns: boot_to_unix_ns(hdr.ktime_ns),
            pid: hdr.pid,
            tid: hdr.tid,
            ppid: (hdr.flags & FLAG_PPID_UNKNOWN == 0).then_some(hdr.ppid),
            uid: hdr.uid,
            gid: hdr.gid,
            comm: c_string(&hdr.comm),
            filename: c_string(&hdr.filename),
            filename_truncated: hdr.flags & FLAG_FILENAME_TRUNCATED != 0,
            filename_fault: hdr.flags & FLAG_FILENAME_FAULT != 0,
            args,
            args_truncated: hdr.flags & FLAG_ARGS_TRUNCATED != 0,
            args_fault: hdr.flags & FLAG_ARGS_FAULT != 0,
            ret: hdr.retval,
            syscall: match hdr.syscall {
                s if s == ExecSyscall::Execve as u32 => "execve",
                s if s == ExecSyscall::Execveat as u32 => "execveat",
                _ => "unknown",
            },
        }
    }

    /// The execsnoop-style header for [`Exec::line`].
    pub fn header() -> &'static str {
        "TIME      COMM             PID      PPID     UID      RET  ARGS"
    }

    /// One human-readable line: time, comm, pid, ppid, uid, ret, args (marker when cut).
    pub fn line(&self) -> String {
        let mut line = Vec::with_capacity(128);
        // Writing into a Vec cannot fail, and every piece written is UTF-8.
        let _ = self.write_line(&mut line);
        String::from_utf8(line).unwrap_or_default()
    }

    /// Writes [`Exec::line`] (without a newline) straight to `w`: no intermediate strings.
    pub fn write_line(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        let ppid = Ppid(self.ppid);
        write!(
            w,
            "{}  {:<16} {:<8} {:<8} {:<8} {:<4} ",
            ClockTime(self.time_ns),
            self.comm,
            self.pid,
            ppid,
            self.uid,
            self.ret,
        )?;
        if self.args.is_empty() {
            w.write_all(self.filename.as_bytes())?;
        }
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                w.write_all(b" ")?;
            }
            w.write_all(a.as_bytes())?;
        }
        if self.args_truncated || self.filename_truncated {
            w.write_all(TRUNCATION_MARKER.as_bytes())?;
        }
        Ok(())
    }

    /// Writes [`Exec::json`]'s object (same keys, same order) straight to `w`, without building
    /// a `serde_json::Value` (one allocation per field) or going through `Display`.
    pub fn write_json(&self, w: impl std::io::Write) -> serde_json::Result<()> {
        serde_json::to_writer(w, &JsonLine::of(self))
    }

    /// The JSON object for JSON lines and the web service: the fields plus `type` and `schema`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(JsonLine::of(self)).unwrap_or_default()
    }
}

/// The JSON form of an event: `type` and `schema`, the fields, then `time` (RFC 3339).
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: u32,
    #[serde(flatten)]
    exec: &'a Exec,
    time: Rfc3339,
}

impl<'a> JsonLine<'a> {
    fn of(exec: &'a Exec) -> Self {
        Self {
            kind: "exec",
            schema: SCHEMA_VERSION,
            exec,
            time: Rfc3339(exec.time_ns),
        }
    }
}

/// Unix nanoseconds serialized as an RFC 3339 string (microseconds, UTC), written in place.
struct Rfc3339(u64);

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(
            UNIX_EPOCH + Duration::from_nanos(self.0),
        ))
    }
}

/// A ppid for the text view: `?` when unknown.
struct Ppid(Option<u32>);

impl std::fmt::Display for Ppid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(p) => std::fmt::Display::fmt(&p, f),
            None => f.pad("?"),
        }
    }
}

/// `HH:MM:SS` (UTC) of Unix nanoseconds, for the text view.
struct ClockTime(u64);

impl std::fmt::Display for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let day_s = (self.0 / 1_000_000_000) % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}",
            day_s / 3600,
            day_s / 60 % 60,
            day_s % 60
        )
    }
}

fn c_string(bytes: &[u8]) -> String {
    match CStr::from_bytes_until_nul(bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Nanoseconds to add to CLOCK_BOOTTIME (what `bpf_ktime_get_boot_ns` reads) for the Unix
/// time; 0 until first set. Boot time keeps counting through suspend, and [`refresh_clock`]
/// re-reads the offset each interval, so a clock step or a resume is followed within one.
static BOOT_TO_UNIX: AtomicI64 = AtomicI64::new(0);

/// Re-reads the offset between CLOCK_BOOTTIME and the wall clock; call once per interval.
pub fn refresh_clock() {
    BOOT_TO_UNIX.store(boot_offset(), Ordering::Relaxed);
}

fn boot_offset() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let boot = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    wall - boot
}

fn boot_to_unix_ns(ktime_ns: u64) -> u64 {
    let mut offset = BOOT_TO_UNIX.load(Ordering::Relaxed);
    if offset == 0 {
        offset = boot_offset();
        BOOT_TO_UNIX.store(offset, Ordering::Relaxed);
    }
    (ktime_ns as i64).saturating_add(offset).max(0) as u64
}

#[cfg(test)]
mod tests {
    use mapscope_common::exec::{COMM_LEN, ExecEvent, FILENAME_LEN};

    use super::*;

    fn event(args: &[&[u8]], flags: u32) -> Box<ExecEvent> {
        // SAFETY: ExecEvent is Pod; all-zero is a valid value.
        let mut ev: Box<ExecEvent> = Box::new(unsafe { std::mem::zeroed() });
        let h = &mut ev.hdr;
        h.pid = 42;
        h.tid = 43;
        h.ppid = 1;
        h.uid = 1000;
        h.gid = 100;
        h.retval = -2;
        h.flags = flags;
        h.syscall = ExecSyscall::Execveat as u32;
        h.comm[..4].copy_from_slice(b"true");
        h.filename[..9].copy_from_slice(b"/bin/true");
        let mut off = 0;
        for a in args {
            ev.args[off..off + a.len()].copy_from_slice(a);
            off += a.len() + 1;
        }
        ev.hdr.args_count = args.len() as u32;
        ev.hdr.args_len = off as u32;
        ev
    }

    /// The bytes the kernel sends: the header and the used arguments only.
    fn sent(ev: &ExecEvent) -> Vec<u8> {
        // SAFETY: viewing a Pod struct as bytes.
        let all = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(ev).cast::<u8>(), size_of::<ExecEvent>())
        };
        all[..HEADER_LEN + ev.hdr.args_len as usize].to_vec()
    }

    fn decode(ev: &ExecEvent) -> Exec {
        Exec::decode(&sent(ev)).unwrap()
    }

    #[test]
    fn decodes_fields_and_args() {
        let e = decode(&event(&[b"/bin/true", b"", b"x y"], 0));
        assert_eq!(
            (e.pid, e.tid, e.ppid, e.uid, e.gid, e.ret),
            (42, 43, Some(1), 1000, 100, -2)
        );
        assert_eq!(e.comm, "true");
        assert_eq!(e.filename, "/bin/true");
        assert_eq!(e.args, ["/bin/true", "", "x y"]);
        assert_eq!(e.syscall, "execveat");
        assert!(!e.args_truncated && !e.filename_truncated && !e.args_fault && !e.filename_fault);
        assert!(decode(&event(&[], 0)).args.is_empty());
        assert_eq!(decode(&event(&[b""], 0)).args, [""]);
    }

    #[test]
    fn decode_checks_length_and_accepts_padding() {
        let ev = event(&[b"a"], 0);
        let mut padded = sent(&ev);
        assert_eq!(padded.len(), HEADER_LEN + 2, "only the used bytes are sent");
        padded.extend([0u8; 6]);
        assert_eq!(Exec::decode(&padded).unwrap().args, ["a"]);
        assert_eq!(
            Exec::decode(&padded[..100]),
            Err(ShortEvent {
                got: 100,
                want: HEADER_LEN
            })
        );
        assert_eq!(
            Exec::decode(&padded[..HEADER_LEN + 1]),
            Err(ShortEvent {
                got: HEADER_LEN + 1,
                want: HEADER_LEN + 2
            })
        );
    }

    #[test]
    fn a_block_cut_mid_argument_keeps_the_partial_one() {
        let mut ev = event(&[b"/bin/true", b"abcdef"], FLAG_ARGS_TRUNCATED);
        ev.hdr.args_len -= 3; // "abcd" without its NUL
        let e = decode(&ev);
        assert_eq!(e.args, ["/bin/true", "abcd"]);
        assert!(e.args_truncated);
    }

    #[test]
    fn invalid_utf8_is_lossy_and_unterminated_strings_are_kept() {
        let mut ev = event(&[b"ok\xff"], FLAG_PPID_UNKNOWN | FLAG_FILENAME_FAULT);
        ev.hdr.comm = [b'c'; COMM_LEN];
        ev.hdr.filename = [b'f'; FILENAME_LEN];
        let e = decode(&ev);
        assert_eq!(e.args, ["ok\u{fffd}"]);
        assert_eq!(e.comm.len(), COMM_LEN);
        assert_eq!(e.filename.len(), FILENAME_LEN);
        assert_eq!(e.ppid, None);
        assert!(e.filename_fault);
    }

    #[test]
    fn unseen_syscall_is_unknown() {
        let mut ev = event(&[b"x"], 0);
        ev.hdr.syscall = ExecSyscall::Unseen as u32;
        assert_eq!(decode(&ev).syscall, "unknown");
    }

    #[test]
    fn boot_time_maps_to_now() {
        refresh_clock();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the struct we own.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(boot_to_unix_ns(boot).abs_diff(now) < 1_000_000_000);
    }

    #[test]
    fn line_marks_truncation() {
        let e = decode(&event(&[b"/bin/true", b"aaa"], FLAG_ARGS_TRUNCATED));
        let line = e.line();
        assert!(line.ends_with("/bin/true aaa..."), "{line}");
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..6], ["true", "42", "1", "1000", "-2"]);
    }

    #[test]
    fn line_shows_utc_clock_and_unknown_ppid() {
        let mut e = decode(&event(&[], FLAG_PPID_UNKNOWN));
        e.time_ns = (19_000 * 86_400 + 3_600 + 2 * 60 + 3) * 1_000_000_000 + 999;
        assert_eq!(
            e.line(),
            "01:02:03  true             42       ?        1000     -2   /bin/true"
        );
        assert!(
            e.json()["time"]
                .as_str()
                .unwrap()
                .starts_with("2022-01-08T01:02:03.000000"),
            "{}",
            e.json()["time"]
        );
    }

    #[test]
    fn write_json_is_json_to_string() {
        let e = decode(&event(&[b"/bin/true", b"a\"b"], FLAG_PPID_UNKNOWN));
        let mut buf = Vec::new();
        e.write_json(&mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), e.json().to_string());
    }

    #[test]
    fn json_has_type_schema_and_fields() {
        let j = decode(&event(&[b"/bin/true"], FLAG_ARGS_TRUNCATED)).json();
        assert_eq!(j["type"], "exec");
        assert_eq!(j["schema"], SCHEMA_VERSION);
        assert_eq!(j["pid"], 42);
        assert_eq!(j["ret"], -2);
        assert_eq!(j["args"][0], "/bin/true");
        assert_eq!(j["args_truncated"], true);
        assert_eq!(j["filename_fault"], false);
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }
}
