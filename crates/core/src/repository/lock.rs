//! Repository locks: small sealed objects in `locks/`.
//!
//! Backups, restores and checks take shared locks; maintenance that deletes
//! data takes an exclusive one. A lock conflicts with any lock of another
//! process when either is exclusive. Locks are removed when the guard drops;
//! a killed process leaves its lock behind, which a later `unlock` removes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{ad, open_object, seal_object};
use crate::id::Id;
use crate::storage::{ObjectKind, Storage};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub time: jiff::Timestamp,
    pub exclusive: bool,
    pub hostname: String,
    pub username: String,
    pub pid: u32,
}

/// Holds a lock until dropped.
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    name: String,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.storage.remove(ObjectKind::Lock, &self.name) {
            tracing::warn!("could not remove lock {}: {e}", self.name);
        }
    }
}

/// Whether a process with this id runs on this machine.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

pub(crate) fn acquire(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    exclusive: bool,
) -> Result<LockGuard> {
    let info = LockInfo {
        time: jiff::Timestamp::now(),
        exclusive,
        hostname: crate::hostname(),
        username: crate::username(),
        pid: std::process::id(),
    };
    let sealed = seal_object(key, ad::LOCK, &info, 0);
    let name = Id::of_object(&sealed).to_hex();
    storage.write(ObjectKind::Lock, &name, &sealed)?;
    let guard = LockGuard {
        storage: storage.clone(),
        name: name.clone(),
    };
    for other in storage.list(ObjectKind::Lock)? {
        if other.name == name {
            continue;
        }
        let Ok(data) = storage.read(ObjectKind::Lock, &other.name) else {
            continue;
        };
        let Ok(theirs) = open_object::<LockInfo>(key, ad::LOCK, &data, "lock") else {
            continue;
        };
        if theirs.hostname == info.hostname && !process_alive(theirs.pid) {
            // Left by a process of this host that no longer runs (killed,
            // crashed): it holds nothing, so it is removed.
            tracing::info!("removing stale lock {} of PID {}", other.name, theirs.pid);
            let _ = storage.remove(ObjectKind::Lock, &other.name);
            continue;
        }
        if exclusive || theirs.exclusive {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "repository is locked {} by PID {} on {} since {}; if that process is gone, run `strata unlock --remove-all` (lock {})",
                    if theirs.exclusive { "exclusively" } else { "" },
                    theirs.pid,
                    theirs.hostname,
                    theirs.time,
                    other.name
                ),
            ));
        }
    }
    Ok(guard)
}

/// Remove locks: those of processes of this host that no longer run, or
/// every lock with `all` (for locks of other hosts known to be dead).
/// Returns the names removed.
pub(crate) fn remove_stale(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    all: bool,
) -> Result<Vec<String>> {
    let host = crate::hostname();
    let mut removed = Vec::new();
    for info in storage.list(ObjectKind::Lock)? {
        let stale = all || {
            let lock = storage
                .read(ObjectKind::Lock, &info.name)
                .and_then(|d| open_object::<LockInfo>(key, ad::LOCK, &d, "lock"));
            matches!(lock, Ok(l) if l.hostname == host && !process_alive(l.pid))
        };
        if stale {
            storage.remove(ObjectKind::Lock, &info.name)?;
            removed.push(info.name);
        }
    }
    Ok(removed)
}
