//! Ctrl-C and SIGTERM. A command that can stop at a consistent point
//! (backup, restore) is asked to, through `strata_core::interrupt`, and
//! says what it left behind; a second signal, or one during any other
//! command, ends the process at once (every repository write is atomic,
//! so that too leaves nothing half written). Exit status 130 either way.

use std::sync::atomic::{AtomicBool, Ordering};

static COOPERATIVE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if COOPERATIVE.load(Ordering::SeqCst) && !strata_core::interrupt::requested() {
        strata_core::interrupt::request();
        return;
    }
    let message = b"\nstrata: interrupted\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(130);
    }
}

/// Install the handler for SIGINT and SIGTERM.
pub fn install(cooperative: bool) {
    COOPERATIVE.store(cooperative, Ordering::SeqCst);
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches atomics and calls
        // async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}
