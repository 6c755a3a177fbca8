//! Ctrl-C and SIGTERM, received by one thread of their own (`sigwait`), so
//! that what runs on them is ordinary code, not a signal handler.
//!
//! A command that can stop at a consistent point (backup, restore) is
//! asked to, through `strata_core::interrupt`, and says what it left
//! behind. A second signal, or one during any other command, ends the
//! process at once, after removing the locks it holds and saying whether a
//! backup's snapshot was saved. Every repository write is atomic, so that
//! too leaves nothing half written. Exit status 130 either way.

/// Block SIGINT and SIGTERM in this thread (every thread started later
/// inherits the mask; child processes start with it cleared) and start the
/// thread that takes them. Call before any other thread starts.
pub fn install(cooperative: bool, what: &'static str) {
    let terminal = Terminal::save();
    // SAFETY: plain libc calls on a local, initialised signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || take_signals(set, cooperative, what, terminal));
    if spawned.is_err() {
        // Without the thread, the default action (ending the process) is
        // better than signals that are never taken.
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

fn take_signals(set: libc::sigset_t, cooperative: bool, what: &'static str, terminal: Terminal) {
    let mut asked = false;
    loop {
        let mut signal = 0;
        // SAFETY: `set` is initialised; `signal` is a valid out pointer.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        if cooperative && !asked && strata_core::interrupt::listening() {
            asked = true;
            strata_core::interrupt::request();
            errln!("\nstrata: stopping (Ctrl-C again to stop at once)");
            continue;
        }
        strata_core::repository::lock::release_all();
        terminal.restore();
        let outcome = match (what, strata_core::interrupt::committed()) {
            ("backup", true) => ": the snapshot was saved",
            ("backup", false) => ": no snapshot was saved",
            _ => "",
        };
        errln!("\nstrata: interrupted{outcome}");
        std::process::exit(130);
    }
}

/// The terminal's settings at start: a password prompt turns echo off,
/// and a process that ends during it must turn it back on.
struct Terminal(Option<libc::termios>);

impl Terminal {
    fn save() -> Terminal {
        // SAFETY: tcgetattr fills the zeroed struct or fails (not a tty).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            Terminal((libc::tcgetattr(0, &mut t) == 0).then_some(t))
        }
    }

    /// Only in the foreground: a background process that sets the
    /// terminal is stopped (SIGTTOU) instead of ending.
    fn restore(&self) {
        if let Some(t) = &self.0 {
            // SAFETY: plain queries; `t` came from tcgetattr on fd 0.
            unsafe {
                if libc::tcgetpgrp(0) == libc::getpgrp() {
                    libc::tcsetattr(0, libc::TCSANOW, t);
                }
            }
        }
    }
}
