//! Printing: sizes, times, tables, JSON, logging setup, and the one place
//! where standard output and standard error are written.
//!
//! A closed output (`strata ls | head`, `strata backup … | true`) must never
//! panic nor change what a command does: a backup still saves its snapshot.
//! So every line goes through [`write_out`] / [`write_err`] (the `outln!`
//! and `errln!` macros): once a stream is closed, output to it stops. A
//! command that only reads then ends at once, killed by SIGPIPE as `cat`
//! or `ls` would be (the shell sees status 141); one that changes the
//! repository or the disk finishes its work and exits with its own code.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
/// Whether the running command only reads (set once by `main`).
static READ_ONLY: AtomicBool = AtomicBool::new(false);

/// `println!` that survives a closed standard output.
macro_rules! outln {
    () => { $crate::output::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that survives a closed standard error.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Declare whether the command about to run only reads.
pub fn set_read_only(read_only: bool) {
    READ_ONLY.store(read_only, Ordering::Relaxed);
}

/// Write to standard output; see the module documentation.
pub fn write_out(args: fmt::Arguments) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Whether writing to standard output failed for a reason other than a
/// reader that went away (a full disk): a command that only reads then
/// failed at its one job.
pub fn stdout_broken() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// Standard output could not be written: stop writing to it. A reader
/// that went away is no error; anything else (a full disk) is said once.
pub fn stdout_failed(e: &std::io::Error) {
    if STDOUT_CLOSED.swap(true, Ordering::Relaxed) {
        return;
    }
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        errln!("strata: warning: cannot write to standard output ({e}); output stops here");
    } else if READ_ONLY.load(Ordering::Relaxed) {
        die_of_sigpipe();
    }
}

/// End the process as a shell tool whose reader went away ends.
pub fn die_of_sigpipe() -> ! {
    // Its locks would otherwise look live to other hosts for a while.
    strata_core::repository::lock::release_all();
    // SAFETY: restoring the default action of SIGPIPE and raising it only
    // affects this process, which is meant to end here.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
}

/// Write to standard error, silently giving up once it is closed.
pub fn write_err(args: fmt::Arguments) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    // Libraries' own logs (the SSH client's on a dropped connection, with
    // its internals) only with -vv: strata reports failures itself.
    let others = if verbose >= 2 && !quiet {
        LevelFilter::DEBUG
    } else {
        LevelFilter::OFF
    };
    let filter = Targets::new()
        .with_target("strata", level)
        .with_default(others);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .without_time()
        .with_target(false)
        .finish()
        .with(filter)
        .init();
}

/// Whether progress bars may be drawn.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// Bytes in binary units: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// A timestamp in the local time zone, to the second.
pub fn local_time(ts: jiff::Timestamp) -> String {
    ts.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Print rows as an aligned table with a header line.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    outln!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1))
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `drwxr-xr-x`-style mode string.
pub fn mode_string(kind: strata_core::format::tree::NodeKind, mode: u32) -> String {
    use strata_core::format::tree::NodeKind as K;
    let t = match kind {
        K::Dir => 'd',
        K::Symlink => 'l',
        K::Fifo => 'p',
        K::Chardev => 'c',
        K::Blockdev => 'b',
        K::Socket => 's',
        K::File => '-',
    };
    let mut s = String::from(t);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (special, set, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

/// A path as text for people, quoted so that it is unambiguous and safe
/// on a terminal (see [`strata_core::format::quote_bytes`]).
pub fn path(p: &std::path::Path) -> String {
    strata_core::format::quote_bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
}

/// A snapshot's paths for text output, each quoted, separated by spaces.
pub fn paths(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| strata_core::format::quote_bytes(&strata_core::format::path_bytes(p)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a snapshot was made of, for text output: its paths, quoted, and
/// its other sources (`mysql:all`, `stream:db.sql`).
pub fn snapshot_sources(s: &strata_core::format::snapshot::Snapshot) -> String {
    let mut parts = vec![paths(&s.paths)];
    parts.extend(
        s.sources
            .iter()
            .map(|src| strata_core::format::quote_bytes(src.as_bytes())),
    );
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// A path for JSON: the text (`\xNN` for bytes that are not UTF-8).
pub fn json_path(p: &std::path::Path) -> String {
    strata_core::format::display_bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
}

/// Beside a JSON text field, its lossless form `FIELD_bytes` (base64)
/// when the bytes are not UTF-8 and the text alone is ambiguous.
pub fn add_bytes(value: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    if std::str::from_utf8(bytes).is_err() {
        value[format!("{field}_bytes")] =
            serde_json::Value::String(strata_core::format::base64_bytes(bytes));
    }
}

/// Report an error or warning about a path on stderr: a JSON object with
/// `--json`, else `kind: path: message`.
pub fn report(json: bool, kind: &str, path: &std::path::Path, message: &str) {
    if json {
        let mut value =
            serde_json::json!({"message_type": kind, "path": json_path(path), kind: message});
        add_bytes(&mut value, "path", path.as_os_str().as_encoded_bytes());
        errln!("{value}");
    } else {
        errln!("{kind}: {}: {message}", self::path(path));
    }
}

/// Print one JSON value on its own line.
pub fn json_line(value: &serde_json::Value) {
    outln!("{value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::format::tree::NodeKind;

    #[test]
    fn sizes_and_modes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::File, 0o2640), "-rw-r-S---");
    }
}
