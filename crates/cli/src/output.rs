//! Printing: sizes, times, tables, JSON, logging setup.

use std::io::IsTerminal;

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
/// `singular` for one, `plural` otherwise ("1 snapshot", "2 snapshots").
pub fn plural<'a>(n: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

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
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    println!(
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

/// A path as text: UTF-8 where valid, `\xNN` escapes for other bytes, so
/// names that are not UTF-8 are shown exactly rather than replaced.
pub fn path(p: &std::path::Path) -> String {
    strata_core::format::display_bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
}

/// Report an error or warning about a path on stderr: a JSON object with
/// `--json`, else `kind: path: message`.
pub fn report(json: bool, kind: &str, path: &std::path::Path, message: &str) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({"message_type": kind, "path": self::path(path), kind: message})
        );
    } else {
        eprintln!("{kind}: {}: {message}", self::path(path));
    }
}

/// Print one JSON value on its own line.
pub fn json_line(value: &serde_json::Value) {
    println!("{value}");
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
