//! Log lines go to standard error through one background thread.
//!
//! hookrelay logs one line per accepted event and per delivery attempt. Written
//! straight to stderr, that is one `write` system call per line on the request
//! path, under stderr's lock. Here a line is formatted by env_logger as before and
//! appended to a shared buffer; the `hookrelay-log` thread writes whatever has
//! gathered in one call. A line logged when the thread is idle is written at
//! once; after each write the thread lets lines gather for [`GATHER`], so under
//! load a write carries many lines and nobody wakes the thread per line. The
//! buffer is bounded: when stderr cannot keep up, logging waits instead of
//! growing memory. [`flush`] writes everything out (the binary calls it before
//! exiting).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Above this many buffered bytes, logging waits for the writer thread.
const MAX_BUFFERED: usize = 1 << 20;
/// After a write, lines gather this long before the next one.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The writer thread is writing or gathering: it looks at the buffer again
    /// without being woken.
    writing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when there is something to write.
    ready: Condvar,
    /// Signalled when the writer has written a batch.
    written: Condvar,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The `Write` env_logger formats into: appends to the shared buffer.
struct Pipe(Arc<Shared>);

impl Write for Pipe {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.buf.len() >= MAX_BUFFERED {
            st = self.0.written.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        // The writer thread only sleeps when the buffer is empty and it is not
        // writing; otherwise it looks again when done, so no wake-up is needed.
        let wake = st.buf.is_empty() && !st.writing;
        st.buf.extend_from_slice(bytes);
        drop(st);
        if wake {
            self.0.ready.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn writer_thread(shared: Arc<Shared>) {
    let mut out = Vec::new();
    loop {
        {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            while st.buf.is_empty() {
                st = shared.ready.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            std::mem::swap(&mut st.buf, &mut out);
            st.writing = true;
        }
        // Nothing useful can be done if stderr is gone.
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&out);
        let _ = stderr.flush();
        drop(stderr);
        out.clear();
        shared.written.notify_all();
        std::thread::sleep(GATHER);
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.buf.is_empty() {
            st.writing = false;
            drop(st);
            shared.written.notify_all();
        }
    }
}

/// Sets up env_logger (`RUST_LOG`, default `info`; `RUST_LOG_STYLE`) writing
/// through the log thread. Falls back to plain stderr if the thread cannot start.
pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    let shared = Arc::new(Shared::default());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("hookrelay-log".into())
            .spawn(move || writer_thread(shared))
    };
    if thread.is_ok() && SHARED.set(shared.clone()).is_ok() {
        let color = match std::env::var("RUST_LOG_STYLE").as_deref() {
            Ok("always") => true,
            Ok("never") => false,
            _ => std::io::stderr().is_terminal(),
        };
        // The line is written by `line` with or without colour; env_logger passes
        // it through as it is instead of scanning it for escapes to strip.
        builder.write_style(env_logger::WriteStyle::Always);
        builder.format(move |out, record| line(out, record, color));
        builder.target(env_logger::Target::Pipe(Box::new(Pipe(shared))));
    }
    builder.init();
}

thread_local! {
    /// The last second formatted on this thread and its text: a timestamp is
    /// formatted once per second per thread, not once per line. A `Cell` of a
    /// copy: nothing stays borrowed while the message is formatted (which may log).
    static STAMP: std::cell::Cell<(u64, [u8; 20])> = const {
        std::cell::Cell::new((u64::MAX, [b'-'; 20]))
    };
}

/// `2026-11-23T10:00:00Z` for unix second `secs`, cached per thread.
fn stamp(secs: u64) -> [u8; 20] {
    let fresh = || {
        let t = i64::try_from(secs)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .unwrap_or_default();
        let mut text = [b'-'; 20];
        let formatted = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        if formatted.len() == text.len() {
            text.copy_from_slice(formatted.as_bytes());
        }
        text
    };
    STAMP
        .try_with(|cell| match cell.get() {
            (s, text) if s == secs => text,
            _ => {
                let text = fresh();
                cell.set((secs, text));
                text
            }
        })
        // Logging while the thread is being torn down: no cache.
        .unwrap_or_else(|_| fresh())
}

/// A message with its control characters escaped (`\u{1b}`, `\n`): text from
/// payloads reaches the log, and must neither inject terminal escapes nor split a
/// line in two.
struct Clean<'a>(&'a std::fmt::Arguments<'a>);

impl std::fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Escaping<'a, 'b>(&'a mut std::fmt::Formatter<'b>);
        impl std::fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let mut rest = s;
                while let Some(i) = rest.find(|c: char| c.is_control() && c != '\t') {
                    self.0.write_str(&rest[..i])?;
                    let c = rest[i..].chars().next().unwrap_or_default();
                    write!(self.0, "{}", c.escape_default())?;
                    rest = &rest[i + c.len_utf8()..];
                }
                self.0.write_str(rest)
            }
        }
        std::fmt::write(&mut Escaping(f), *self.0)
    }
}

/// `[2026-11-23T10:00:00Z INFO  hookrelay::http::ingest] message`: env_logger's
/// default layout, written without its per-line formatting machinery.
fn line(out: &mut impl Write, record: &log::Record, color: bool) -> std::io::Result<()> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stamp = stamp(secs);
    let stamp = std::str::from_utf8(&stamp).unwrap_or("-");
    let level = record.level();
    let (on, off) = match (color, level) {
        (false, _) => ("", ""),
        (true, log::Level::Error) => ("\x1b[31m", "\x1b[0m"),
        (true, log::Level::Warn) => ("\x1b[33m", "\x1b[0m"),
        (true, log::Level::Info) => ("\x1b[32m", "\x1b[0m"),
        (true, log::Level::Debug) => ("\x1b[34m", "\x1b[0m"),
        (true, log::Level::Trace) => ("\x1b[36m", "\x1b[0m"),
    };
    writeln!(
        out,
        "[{stamp} {on}{level:<5}{off} {}] {}",
        record.target(),
        Clean(record.args())
    )
}

/// Waits until every line logged so far is written to stderr.
pub fn flush() {
    let Some(shared) = SHARED.get() else {
        return;
    };
    let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    while !st.buf.is_empty() || st.writing {
        st = shared.written.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_env_loggers_layout() {
        let args = format_args!("accepted event {}", 7);
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("hookrelay::http::ingest")
            .build();
        let mut out = Vec::new();
        line(&mut out, &record, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (stamp, rest) = text.strip_prefix('[').unwrap().split_once(' ').unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{text}"
        );
        assert!(stamp.ends_with('Z') && stamp.len() == 20, "{text}");
        assert_eq!(rest, "INFO  hookrelay::http::ingest] accepted event 7\n");

        let mut out = Vec::new();
        line(&mut out, &record, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(" \x1b[32mINFO \x1b[0m hookrelay::http::ingest] "),
            "{text}"
        );
    }

    #[test]
    fn control_characters_in_messages_are_escaped() {
        let event = "backup\x1b[2J.failed\nforged line\ttab ✓";
        let args = format_args!("accepted event from sb: {event}");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("t")
            .build();
        for color in [false, true] {
            let mut out = Vec::new();
            line(&mut out, &record, color).unwrap();
            let text = String::from_utf8(out).unwrap();
            let want = "] accepted event from sb: backup\\u{1b}[2J.failed\\nforged line\ttab ✓\n";
            assert!(text.ends_with(want), "{text:?}");
            assert_eq!(text.matches('\n').count(), 1);
        }
    }

    #[test]
    fn pipe_buffers_what_it_is_given_and_wakes_the_writer() {
        let shared = Arc::new(Shared::default());
        let mut pipe = Pipe(shared.clone());
        pipe.write_all(b"one\n").unwrap();
        pipe.write_all(b"two\n").unwrap();
        assert_eq!(shared.state.lock().unwrap().buf, b"one\ntwo\n");
    }
}
