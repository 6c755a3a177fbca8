//! Repository locks: small sealed objects in `locks/`.
//!
//! Backups, restores and checks take shared locks; `forget` and `prune` take
//! maintenance locks (one maintenance at a time, beside any number of shared
//! holders); `repair` takes an exclusive one, which conflicts with all.
//!
//! A held lock is refreshed every [`LockTiming::refresh`]: a new lock object
//! with the same `origin` replaces the old one. Another host's lock whose
//! time is older than [`LockTiming::stale_after`] is stale, as is a lock of a
//! process of this host that no longer runs; stale locks are removed by the
//! commands that meet them. A holder that has not refreshed for half of
//! `stale_after`, or finds its lock removed, has lost it: [`LockGuard::check`]
//! then fails, and commands check before every write that others rely on
//! (an index, a snapshot, a deletion). Prune's safety argument in
//! docs/design.md rests on this: a lock that others may consider stale is
//! never relied on by its holder.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{ad, open_object, seal_object};
use crate::id::Id;
use crate::storage::{ObjectKind, Storage};

/// What a lock allows others to do at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Reads and additions (backup, restore, check): coexist with all but
    /// exclusive locks.
    Shared,
    /// Deletions planned to be safe beside shared holders (forget, prune):
    /// one at a time.
    Maintenance,
    /// Conflicts with every other lock (repair).
    Exclusive,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    /// When the lock was taken or last refreshed.
    pub time: jiff::Timestamp,
    pub exclusive: bool,
    #[serde(default)]
    pub maintenance: bool,
    /// Random id of the holding, the same across refreshes.
    #[serde(default)]
    pub origin: Option<Id>,
    pub hostname: String,
    /// Boot id and PID namespace of the holder: its PID can be checked only
    /// from the same ones (hosts or containers may share a name).
    #[serde(default)]
    pub machine: Option<String>,
    pub username: String,
    pub pid: u32,
}

/// This process's boot id and PID namespace, where Linux tells them.
fn machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), ns.display()))
}

impl LockInfo {
    pub fn kind(&self) -> LockKind {
        if self.exclusive {
            LockKind::Exclusive
        } else if self.maintenance {
            LockKind::Maintenance
        } else {
            LockKind::Shared
        }
    }

    fn conflicts(&self, other: LockKind) -> bool {
        let mine = self.kind();
        mine == LockKind::Exclusive
            || other == LockKind::Exclusive
            || (mine == LockKind::Maintenance && other == LockKind::Maintenance)
    }

    /// Whether the holder can be taken to be gone.
    fn is_stale(&self, timing: &LockTiming) -> bool {
        let same_machine = self.hostname == crate::hostname()
            && (self.machine.is_none() || self.machine == machine());
        if same_machine && !process_alive(self.pid) {
            return true;
        }
        age(self.time) > timing.stale_after
    }
}

/// How often locks are refreshed and when they count as stale.
#[derive(Clone, Copy, Debug)]
pub struct LockTiming {
    pub refresh: Duration,
    pub stale_after: Duration,
}

impl Default for LockTiming {
    fn default() -> Self {
        LockTiming {
            refresh: Duration::from_secs(5 * 60),
            stale_after: Duration::from_secs(30 * 60),
        }
    }
}

impl LockTiming {
    /// A holder that could not refresh for this long stops relying on its
    /// lock, well before others may call it stale.
    fn lost_after(&self) -> Duration {
        self.stale_after / 2
    }
}

/// How long ago `time` was, by the wall clock (which, unlike the monotonic
/// clock, keeps running while the machine is suspended).
fn age(time: jiff::Timestamp) -> Duration {
    let secs = jiff::Timestamp::now().duration_since(time).as_secs();
    Duration::from_secs(secs.max(0) as u64)
}

/// The locks this process holds, for [`release_all`].
static HELD_LOCKS: Mutex<Vec<std::sync::Weak<Held>>> = Mutex::new(Vec::new());

/// Remove every lock this process holds, for a process about to end
/// without unwinding (a second Ctrl-C): its locks would otherwise stay
/// until found stale. Called from an ordinary thread, never a signal
/// handler. The guards are left alone; the process must end after this.
pub fn release_all() {
    let held: Vec<Arc<Held>> = lock(&HELD_LOCKS)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    for h in held {
        // Not while a refresh replaces it; but a write stuck in retries must
        // not keep the process from ending: give up after two seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let busy = loop {
            match h.busy.try_lock() {
                Ok(guard) => break Some(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => break Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::sync::TryLockError::WouldBlock) => break None,
            }
        };
        let name = lock(&h.name).clone();
        if !name.is_empty() {
            let _ = h.storage.remove(ObjectKind::Lock, &name);
        }
        drop(busy);
    }
}

/// State shared between a guard and its refresher thread.
struct Held {
    storage: Arc<dyn Storage>,
    key: MasterKey,
    info: Mutex<LockInfo>,
    name: Mutex<String>,
    /// Held while refreshing or checking, so a check never looks for the
    /// object a refresh is replacing.
    busy: Mutex<()>,
    lost: AtomicBool,
    timing: LockTiming,
}

/// Holds a lock until dropped, refreshing it in the background.
pub struct LockGuard {
    held: Arc<Held>,
    stop: Option<crossbeam_channel::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    /// Fails when the lock was lost: removed by another process, or not
    /// refreshed for long enough that others may consider it stale.
    pub fn check(&self) -> Result<()> {
        let _busy = lock(&self.held.busy);
        let since = age(lock(&self.held.info).time);
        let lost = |why: String| {
            self.held.lost.store(true, Ordering::SeqCst);
            Err(Error::new(
                ErrorKind::Locked,
                format!("lost the repository lock ({why}); stopping before writing anything others would rely on"),
            ))
        };
        if self.held.lost.load(Ordering::SeqCst) {
            return lost("removed by another process".into());
        }
        if since > self.held.timing.lost_after() {
            return lost(format!("not refreshed for {}s", since.as_secs()));
        }
        let name = lock(&self.held.name).clone();
        match self.held.storage.read(ObjectKind::Lock, &name) {
            Err(e) if e.kind() == ErrorKind::Missing => lost("removed by another process".into()),
            other => other.map(|_| ()),
        }
    }

    /// The id that stays the same across refreshes of this lock.
    pub fn origin(&self) -> Option<Id> {
        lock(&self.held.info).origin
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Held {
    fn write(&self, info: &LockInfo) -> Result<String> {
        let sealed = seal_object(&self.key, ad::LOCK, info, 0);
        let name = Id::of_object(&sealed).to_hex();
        self.storage.write(ObjectKind::Lock, &name, &sealed)?;
        Ok(name)
    }

    /// Replace the lock object by one with a fresh time.
    fn refresh(&self) -> Result<()> {
        let _busy = lock(&self.busy);
        let old = lock(&self.name).clone();
        match self.storage.read(ObjectKind::Lock, &old) {
            Err(e) if e.kind() == ErrorKind::Missing => {
                self.lost.store(true, Ordering::SeqCst);
                return Err(Error::new(ErrorKind::Locked, "the lock was removed"));
            }
            other => other.map(|_| ())?,
        }
        let mut info = lock(&self.info).clone();
        info.time = jiff::Timestamp::now();
        let name = self.write(&info)?;
        *lock(&self.name) = name;
        *lock(&self.info) = info;
        self.storage.remove(ObjectKind::Lock, &old)
    }
}

fn refresh_loop(held: Arc<Held>, stop: crossbeam_channel::Receiver<()>) {
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
        stop.recv_timeout(held.timing.refresh)
    {
        if let Err(e) = held.refresh() {
            tracing::warn!("could not refresh the repository lock: {e}");
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = lock(&self.held.name).clone();
        if let Err(e) = self.held.storage.remove(ObjectKind::Lock, &name) {
            tracing::warn!("could not remove lock {name}: {e}");
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

/// A lock object as found in storage.
pub struct FoundLock {
    pub name: String,
    /// `None` when it cannot be read (damaged, or sealed with another key).
    pub info: Option<LockInfo>,
}

impl FoundLock {
    /// The holding's id; a lock without one (or unreadable) is named by its
    /// object name, which is then its only identity.
    pub fn origin(&self) -> Id {
        self.info
            .as_ref()
            .and_then(|i| i.origin)
            .or_else(|| Id::from_hex(&self.name).ok())
            .unwrap_or(Id([0; 32]))
    }
}

/// Every lock in the repository except stale ones, which are removed.
pub(crate) fn live_locks(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    timing: &LockTiming,
) -> Result<Vec<FoundLock>> {
    // A holder refreshing between our list and read writes its new object
    // before removing the old: listing again is sure to find it.
    for _ in 0..20 {
        if let Some(found) = read_locks(storage, key, timing)? {
            return Ok(found);
        }
    }
    Err(Error::new(
        ErrorKind::Locked,
        "locks keep changing while being read; try again",
    ))
}

/// One listing of the locks; `None` if one vanished while being read.
fn read_locks(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    timing: &LockTiming,
) -> Result<Option<Vec<FoundLock>>> {
    let mut out = Vec::new();
    for other in storage.list(ObjectKind::Lock)? {
        let info = match storage.read(ObjectKind::Lock, &other.name) {
            Ok(data) => open_object::<LockInfo>(key, ad::LOCK, &data, "lock").ok(),
            Err(e) if e.kind() == ErrorKind::Missing => return Ok(None),
            // Damaged (or not a file): an unknown lock, like one that fails
            // to decode; `unlock --remove-all` removes it.
            Err(e) if e.kind() == ErrorKind::Corrupted => None,
            Err(e) => return Err(e),
        };
        if let Some(i) = info.as_ref().filter(|i| i.is_stale(timing)) {
            tracing::info!(
                "removing stale lock {} of PID {} on {} (last refreshed {})",
                other.name,
                i.pid,
                i.hostname,
                i.time
            );
            storage.remove(ObjectKind::Lock, &other.name)?;
            continue;
        }
        out.push(FoundLock {
            name: other.name,
            info,
        });
    }
    Ok(Some(out))
}

pub(crate) fn acquire(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    kind: LockKind,
    timing: LockTiming,
) -> Result<LockGuard> {
    let info = LockInfo {
        time: jiff::Timestamp::now(),
        exclusive: kind == LockKind::Exclusive,
        maintenance: kind == LockKind::Maintenance,
        origin: Some(Id(rand::random())),
        hostname: crate::hostname(),
        machine: machine(),
        username: crate::username(),
        pid: std::process::id(),
    };
    let held = Arc::new(Held {
        storage: storage.clone(),
        key: key.clone(),
        info: Mutex::new(info.clone()),
        name: Mutex::new(String::new()),
        busy: Mutex::new(()),
        lost: AtomicBool::new(false),
        timing,
    });
    // Registered before the object is written, and written while `busy`
    // is held: `release_all` then either waits for the name or finds none
    // written yet, so no lock of this process can escape it.
    let name = {
        let _busy = lock(&held.busy);
        {
            let mut all = lock(&HELD_LOCKS);
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&held));
        }
        let name = held.write(&info)?;
        *lock(&held.name) = name.clone();
        name
    };
    let (stop, stopped) = crossbeam_channel::bounded(0);
    let refresher = {
        let held = held.clone();
        std::thread::spawn(move || refresh_loop(held, stopped))
    };
    let guard = LockGuard {
        held,
        stop: Some(stop),
        refresher: Some(refresher),
    };
    for other in live_locks(storage, key, &timing)? {
        if other.name == name {
            continue;
        }
        let Some(theirs) = other.info else { continue };
        if info.conflicts(theirs.kind()) {
            return Err(conflict(&theirs, &other.name));
        }
    }
    Ok(guard)
}

fn conflict(theirs: &LockInfo, name: &str) -> Error {
    let how = match theirs.kind() {
        LockKind::Exclusive => "exclusively ",
        LockKind::Maintenance => "for maintenance ",
        LockKind::Shared => "",
    };
    Error::new(
        ErrorKind::Locked,
        format!(
            "repository is locked {how}by PID {} on {} (last refreshed {}); if that process is gone, run `strata unlock --remove-all` (lock {name})",
            theirs.pid, theirs.hostname, theirs.time
        ),
    )
}

/// Remove stale locks (of dead processes of this host, or not refreshed
/// for too long), or every lock with `all` (for locks known to be dead).
/// Returns the names removed.
pub(crate) fn remove_stale(
    storage: &Arc<dyn Storage>,
    key: &MasterKey,
    timing: &LockTiming,
    all: bool,
) -> Result<Vec<String>> {
    let before: Vec<String> = storage
        .list(ObjectKind::Lock)?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let live: Vec<String> = if all {
        Vec::new()
    } else {
        live_locks(storage, key, timing)?
            .into_iter()
            .map(|l| l.name)
            .collect()
    };
    let mut removed = Vec::new();
    for name in before.into_iter().filter(|n| !live.contains(n)) {
        storage.remove(ObjectKind::Lock, &name)?;
        removed.push(name);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn setup() -> (Arc<dyn Storage>, MasterKey) {
        (Arc::new(MemoryStorage::new()), MasterKey::random())
    }

    const FAST: LockTiming = LockTiming {
        refresh: Duration::from_millis(20),
        stale_after: Duration::from_secs(3600),
    };

    #[test]
    fn kinds_conflict_as_documented() {
        let (s, k) = setup();
        let t = LockTiming::default();
        let shared = acquire(&s, &k, LockKind::Shared, t).unwrap();
        let maint = acquire(&s, &k, LockKind::Maintenance, t).unwrap();
        assert!(acquire(&s, &k, LockKind::Maintenance, t).is_err());
        assert!(acquire(&s, &k, LockKind::Exclusive, t).is_err());
        let _second_shared = acquire(&s, &k, LockKind::Shared, t).unwrap();
        drop((shared, maint));
    }

    #[test]
    fn refresh_keeps_the_origin_and_replaces_the_object() {
        let (s, k) = setup();
        let guard = acquire(&s, &k, LockKind::Shared, FAST).unwrap();
        let first = s.list(ObjectKind::Lock).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let later = s.list(ObjectKind::Lock).unwrap();
        assert_eq!(later.len(), 1, "the old object is removed on refresh");
        assert_ne!(first[0].name, later[0].name);
        let found = live_locks(&s, &k, &FAST).unwrap();
        assert_eq!(found[0].origin(), guard.origin().unwrap());
        guard.check().unwrap();
        drop(guard);
        assert!(s.list(ObjectKind::Lock).unwrap().is_empty());
    }

    #[test]
    fn a_removed_lock_is_lost_and_check_fails() {
        let (s, k) = setup();
        let guard = acquire(&s, &k, LockKind::Shared, FAST).unwrap();
        for l in s.list(ObjectKind::Lock).unwrap() {
            s.remove(ObjectKind::Lock, &l.name).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
        let err = guard.check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked);
    }

    #[test]
    fn old_locks_of_other_hosts_are_stale() {
        let (s, k) = setup();
        let old = LockInfo {
            time: jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3 * 3600),
            exclusive: true,
            maintenance: false,
            origin: None,
            hostname: "elsewhere.invalid".into(),
            machine: None,
            username: "u".into(),
            pid: 1,
        };
        s.write(ObjectKind::Lock, "aa", &seal_object(&k, ad::LOCK, &old, 0))
            .unwrap();
        let fresh = LockInfo {
            time: jiff::Timestamp::now(),
            ..old
        };
        s.write(
            ObjectKind::Lock,
            "bb",
            &seal_object(&k, ad::LOCK, &fresh, 0),
        )
        .unwrap();
        let live = live_locks(&s, &k, &LockTiming::default()).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].name, "bb");
        assert_eq!(s.list(ObjectKind::Lock).unwrap().len(), 1);
        // the fresh exclusive lock of the other host still blocks
        assert!(acquire(&s, &k, LockKind::Shared, LockTiming::default()).is_err());
    }
}
