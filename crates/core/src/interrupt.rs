//! A request to stop, made once for the whole process (by the program's
//! Ctrl-C handler) and honoured by the long-running engines at points where
//! stopping leaves everything consistent: a backup stops before its
//! snapshot is written and removes its lock and unfinished packs; a
//! restore removes its temporary files, so each file is old or new.
//!
//! A library cannot own signal handlers, so the program sets the flag;
//! an engine that sees it returns an error of kind `Interrupted`.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, ErrorKind, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static COMMITTED: AtomicBool = AtomicBool::new(false);
static LISTENING: AtomicBool = AtomicBool::new(false);

/// Note that an engine that honours [`request`] is running: before this
/// (asking for a password, deriving the key) a stop cannot be honoured,
/// and the program should end at once instead.
pub fn listen() {
    LISTENING.store(true, Ordering::SeqCst);
}

pub fn listening() -> bool {
    LISTENING.load(Ordering::SeqCst)
}

/// Note that the command's result is durable (a backup's snapshot is
/// written): stopping now loses nothing.
pub fn mark_committed() {
    COMMITTED.store(true, Ordering::SeqCst);
}

pub fn committed() -> bool {
    COMMITTED.load(Ordering::SeqCst)
}

/// Ask running engines to stop. Safe to call from a signal handler.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once a stop was requested.
pub fn check() -> Result<()> {
    if requested() {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}
