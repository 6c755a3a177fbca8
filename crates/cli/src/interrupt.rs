//! Ctrl-C and SIGTERM, passed by a minimal handler through a pipe to one
//! thread of their own, so that what runs on them is ordinary code.
//!
//! A command that can stop at a consistent point (backup, restore) is
//! asked to, through `strata_core::interrupt`, and says what it left
//! behind. A second signal, or one during any other command, ends the
//! process at once, after removing the locks it holds and saying whether a
//! backup's snapshot was saved. Every repository write is atomic, so that
//! too leaves nothing half written. Exit status 130 either way.

/// A child process to stop with us (a password command), or 0.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Stop `pid` too if the process is interrupted while it runs; 0 forgets.
pub fn watch_child(pid: u32) {
    CHILD.store(
        i32::try_from(pid).unwrap_or(0),
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// The write end of the pipe the signal handler writes to.
static PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE.load(std::sync::atomic::Ordering::SeqCst);
    let byte = signal as u8;
    // SAFETY: write(2) is async-signal-safe; the buffer is on the stack.
    unsafe { libc::write(fd, std::ptr::from_ref(&byte).cast(), 1) };
}

/// Catch SIGINT and SIGTERM with a handler that only writes to a pipe
/// (the self-pipe trick), and start the thread that reads it. Unlike a
/// blocked signal mask, handlers are not inherited by child processes
/// (a password command, ssh), which stay interruptible.
pub fn install(cooperative: bool, what: &'static str) {
    let terminal = Terminal::save();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return; // the default actions (ending the process) stay
    }
    PIPE.store(fds[1], std::sync::atomic::Ordering::SeqCst);
    let read_end = fds[0];
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || take_signals(read_end, cooperative, what, terminal));
    if spawned.is_err() {
        return;
    }
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only calls write(2) on a valid descriptor.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn take_signals(read_end: libc::c_int, cooperative: bool, what: &'static str, terminal: Terminal) {
    let mut asked = false;
    loop {
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local buffer.
        let n = unsafe { libc::read(read_end, std::ptr::from_mut(&mut byte).cast(), 1) };
        if n != 1 {
            continue;
        }
        if cooperative && !asked && strata_core::interrupt::listening() {
            asked = true;
            strata_core::interrupt::request();
            errln!("\nstrata: stopping (Ctrl-C again to stop at once)");
            continue;
        }
        let child = CHILD.load(std::sync::atomic::Ordering::SeqCst);
        if child > 0 {
            // SAFETY: a plain kill(2) of the child we started.
            unsafe { libc::kill(child, libc::SIGTERM) };
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
