//! Warming the kernel's metadata caches ahead of the walker.
//!
//! The walker visits directories one at a time, and on a cold cache every
//! `stat` waits for the disk to read an inode: one request in flight at a
//! time. These threads walk the same trees ahead of it, listing directories
//! and stat'ing their entries in parallel, so that by the time the walker
//! gets there the inodes are cached. They only read metadata, change
//! nothing, and stop when the walker is done.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::walk::Excluder;

/// Directories waiting to be prefetched, deepest last so that the order is
/// close to the walker's depth-first order.
pub(super) struct Prefetch<'a> {
    stack: Mutex<Vec<PathBuf>>,
    ready: Condvar,
    busy: AtomicUsize,
    stop: &'a AtomicBool,
    excluder: &'a Excluder,
}

impl<'a> Prefetch<'a> {
    pub(super) fn new(roots: Vec<PathBuf>, stop: &'a AtomicBool, excluder: &'a Excluder) -> Self {
        Prefetch {
            stack: Mutex::new(roots),
            ready: Condvar::new(),
            busy: AtomicUsize::new(0),
            stop,
            excluder,
        }
    }

    /// One prefetching thread's loop.
    pub(super) fn run(&self) {
        while let Some(dir) = self.next() {
            self.visit(&dir);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            self.ready.notify_all();
        }
    }

    fn next(&self) -> Option<PathBuf> {
        let mut stack = self.stack.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(dir) = stack.pop() {
                self.busy.fetch_add(1, Ordering::SeqCst);
                return Some(dir);
            }
            if self.busy.load(Ordering::SeqCst) == 0 {
                return None; // nothing queued and nobody can queue more
            }
            let (guard, _) = self
                .ready
                .wait_timeout(stack, std::time::Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner());
            stack = guard;
        }
    }

    fn visit(&self, dir: &PathBuf) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let Ok(dev) = dir.symlink_metadata().map(|m| m.dev()) else {
            return;
        };
        if self.excluder.pseudo_filesystem(dir, dev).is_some() {
            return;
        }
        let mut subdirs = Vec::new();
        for entry in rd.flatten() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let path = entry.path();
                let other_fs = self.excluder.one_file_system() && meta.dev() != dev;
                if !other_fs && !self.excluder.excludes(&path, &meta) {
                    subdirs.push(path);
                }
            }
        }
        // Reverse name order on the stack: popped in name order, like the walker.
        subdirs.sort_by(|a, b| b.cmp(a));
        self.stack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(subdirs);
    }
}
