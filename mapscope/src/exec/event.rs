//! Decoding the kernel's `ExecEvent` into a typed [`Exec`], and its text and JSON forms.

use std::{
    ffi::CStr,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mapscope_common::exec::{
    ExecEvent, ExecSyscall, FLAG_ARGS_FAULT, FLAG_ARGS_TRUNCATED, FLAG_FILENAME_TRUNCATED,
    FLAG_PPID_UNKNOWN,
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
    pub pid: u32,
    pub tid: u32,
    /// `None` when the kernel could not read the parent (no BTF offsets).
    pub ppid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub filename: String,
    pub filename_truncated: bool,
    pub args: Vec<String>,
    /// An argument was cut short or arguments were left out (too many, or over 4 KiB).
    pub args_truncated: bool,
    /// Reading argv from the process failed part-way; `args` holds what was read.
    pub args_fault: bool,
    /// 0 on success, -errno on failure.
    pub ret: i32,
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
    /// Decodes the raw bytes of one `ExecEvent` (perf samples may carry trailing padding).
    pub fn decode(bytes: &[u8]) -> Result<Self, ShortEvent> {
        let want = size_of::<ExecEvent>();
        if bytes.len() < want {
            return Err(ShortEvent {
                got: bytes.len(),
                want,
            });
        }
        // SAFETY: length checked; ExecEvent is Pod (any bit pattern valid); unaligned read.
        let ev: ExecEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        Ok(Self::from_event(&ev))
    }

    /// Converts a kernel event; strings stop at the first NUL and are decoded lossily.
    pub fn from_event(ev: &ExecEvent) -> Self {
        let args_len = (ev.args_len as usize).min(ev.args.len());
        let args = ev.args[..args_len]
            .split(|&b| b == 0)
            .take(ev.args_count as usize)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Self {
            time_ns: monotonic_to_unix_ns(ev.ktime_ns),
            pid: ev.pid,
            tid: ev.tid,
            ppid: (ev.flags & FLAG_PPID_UNKNOWN == 0).then_some(ev.ppid),
            uid: ev.uid,
            gid: ev.gid,
            comm: c_string(&ev.comm),
            filename: c_string(&ev.filename),
            filename_truncated: ev.flags & FLAG_FILENAME_TRUNCATED != 0,
            args,
            args_truncated: ev.flags & FLAG_ARGS_TRUNCATED != 0,
            args_fault: ev.flags & FLAG_ARGS_FAULT != 0,
            ret: ev.retval,
            syscall: if ev.syscall == ExecSyscall::Execveat as u32 {
                "execveat"
            } else {
                "execve"
            },
        }
    }

    /// The execsnoop-style header for [`Exec::line`].
    pub fn header() -> &'static str {
        "TIME      COMM             PID      PPID     UID      RET  ARGS"
    }

    /// One human-readable line: time, comm, pid, ppid, uid, ret, args (marker when cut).
    pub fn line(&self) -> String {
        let mut args = if self.args.is_empty() {
            self.filename.clone()
        } else {
            self.args.join(" ")
        };
        if self.args_truncated || self.filename_truncated {
            args.push_str(TRUNCATION_MARKER);
        }
        let ppid = self.ppid.map_or_else(|| "?".to_string(), |p| p.to_string());
        format!(
            "{}  {:<16} {:<8} {:<8} {:<8} {:<4} {}",
            clock_time(self.time_ns),
            self.comm,
            self.pid,
            ppid,
            self.uid,
            self.ret,
            args
        )
    }

    /// Writes [`Exec::json`]'s object (same keys, same order) straight to `w`, without building
    /// a `serde_json::Value` (one allocation per field) or going through `Display`.
    pub fn write_json(&self, w: impl std::io::Write) -> serde_json::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            schema: u32,
            #[serde(flatten)]
            exec: &'a Exec,
            time: String,
        }
        serde_json::to_writer(
            w,
            &Line {
                kind: "exec",
                schema: SCHEMA_VERSION,
                exec: self,
                time: rfc3339(self.time_ns),
            },
        )
    }

    /// The JSON object for JSON lines and the web service: the fields plus `type` and `schema`.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "type": "exec", "schema": SCHEMA_VERSION });
        if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
            (v.as_object_mut(), serde_json::to_value(self))
        {
            obj.extend(fields);
            obj.insert("time".into(), rfc3339(self.time_ns).into());
        }
        v
    }
}

fn c_string(bytes: &[u8]) -> String {
    match CStr::from_bytes_until_nul(bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Wall-clock offset of CLOCK_MONOTONIC (what bpf_ktime_get_ns reads), taken once.
fn monotonic_to_unix_ns(ktime_ns: u64) -> u64 {
    static OFFSET: OnceLock<i128> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the struct we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        wall - mono
    });
    (ktime_ns as i128 + offset).max(0) as u64
}

fn rfc3339(unix_ns: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_nanos(unix_ns)).to_string()
}

/// `HH:MM:SS` (UTC) for the text view.
fn clock_time(unix_ns: u64) -> String {
    let s = rfc3339(unix_ns);
    s.get(11..19).unwrap_or("??:??:??").to_string()
}

#[cfg(test)]
mod tests {
    use mapscope_common::exec::{ARGS_BUF, COMM_LEN, FILENAME_LEN};

    use super::*;

    fn event(args: &[&[u8]], flags: u32) -> Box<ExecEvent> {
        // SAFETY: ExecEvent is Pod; all-zero is a valid value.
        let mut ev: Box<ExecEvent> = Box::new(unsafe { std::mem::zeroed() });
        ev.pid = 42;
        ev.tid = 43;
        ev.ppid = 1;
        ev.uid = 1000;
        ev.gid = 100;
        ev.retval = -2;
        ev.flags = flags;
        ev.syscall = ExecSyscall::Execveat as u32;
        ev.comm[..4].copy_from_slice(b"true");
        ev.filename[..9].copy_from_slice(b"/bin/true");
        let mut off = 0;
        for a in args {
            ev.args[off..off + a.len()].copy_from_slice(a);
            off += a.len() + 1;
        }
        ev.args_count = args.len() as u32;
        ev.args_len = off as u32;
        ev
    }

    #[test]
    fn decodes_fields_and_args() {
        let ev = event(&[b"/bin/true", b"", b"x y"], 0);
        let e = Exec::from_event(&ev);
        assert_eq!(
            (e.pid, e.tid, e.ppid, e.uid, e.gid, e.ret),
            (42, 43, Some(1), 1000, 100, -2)
        );
        assert_eq!(e.comm, "true");
        assert_eq!(e.filename, "/bin/true");
        assert_eq!(e.args, ["/bin/true", "", "x y"]);
        assert_eq!(e.syscall, "execveat");
        assert!(!e.args_truncated && !e.filename_truncated && !e.args_fault);
    }

    #[test]
    fn decode_from_bytes_checks_length_and_accepts_padding() {
        let ev = event(&[b"a"], 0);
        // SAFETY: viewing a Pod struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&*ev as *const ExecEvent).cast::<u8>(),
                size_of::<ExecEvent>(),
            )
        };
        let mut padded = bytes.to_vec();
        padded.extend([0u8; 4]);
        assert_eq!(Exec::decode(&padded).unwrap().args, ["a"]);
        assert_eq!(
            Exec::decode(&bytes[..100]),
            Err(ShortEvent {
                got: 100,
                want: size_of::<ExecEvent>()
            })
        );
    }

    #[test]
    fn invalid_utf8_is_lossy_and_unterminated_strings_are_kept() {
        let mut ev = event(&[b"ok\xff"], FLAG_PPID_UNKNOWN);
        ev.comm = [b'c'; COMM_LEN];
        ev.filename = [b'f'; FILENAME_LEN];
        let e = Exec::from_event(&ev);
        assert_eq!(e.args, ["ok\u{fffd}"]);
        assert_eq!(e.comm.len(), COMM_LEN);
        assert_eq!(e.filename.len(), FILENAME_LEN);
        assert_eq!(e.ppid, None);
    }

    #[test]
    fn args_len_beyond_buffer_is_clamped() {
        let mut ev = event(&[b"a"], 0);
        ev.args_len = u32::MAX;
        ev.args_count = 1;
        assert_eq!(Exec::from_event(&ev).args, ["a"]);
        assert_eq!(ev.args.len(), ARGS_BUF);
    }

    #[test]
    fn line_marks_truncation() {
        let e = Exec::from_event(&event(&[b"/bin/true", b"aaa"], FLAG_ARGS_TRUNCATED));
        let line = e.line();
        assert!(line.ends_with("/bin/true aaa..."), "{line}");
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[1..6], ["true", "42", "1", "1000", "-2"]);
    }

    #[test]
    fn write_json_is_json_to_string() {
        let e = Exec::from_event(&event(&[b"/bin/true", b"a\"b"], FLAG_PPID_UNKNOWN));
        let mut buf = Vec::new();
        e.write_json(&mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), e.json().to_string());
    }

    #[test]
    fn json_has_type_schema_and_fields() {
        let j = Exec::from_event(&event(&[b"/bin/true"], FLAG_ARGS_TRUNCATED)).json();
        assert_eq!(j["type"], "exec");
        assert_eq!(j["schema"], SCHEMA_VERSION);
        assert_eq!(j["pid"], 42);
        assert_eq!(j["ret"], -2);
        assert_eq!(j["args"][0], "/bin/true");
        assert_eq!(j["args_truncated"], true);
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }
}
