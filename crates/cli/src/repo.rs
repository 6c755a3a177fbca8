//! Finding the repository and its password from flags, environment,
//! a terminal prompt, or the embedded default repository.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use strata_core::crypto::KdfParams;
use strata_core::repository::Repository;
use strata_core::storage::{CachedStorage, LocalStorage, Storage};

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Repository location: a directory path, `s3:https://host/bucket/prefix`,
    /// `s3:bucket/prefix` (AWS), `sftp:user@host:/path` or
    /// `sftp://user@host:port/path`. Without it, the default repository
    /// (created by the first `backup`) is used.
    #[arg(
        short = 'r',
        long = "repo",
        env = "STRATA_REPOSITORY",
        global = true,
        value_name = "REPO"
    )]
    pub repo: Option<PathBuf>,
    /// Read the password from the first line of this file.
    #[arg(long, env = "STRATA_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the password.
    #[arg(
        long,
        env = "STRATA_PASSWORD_COMMAND",
        global = true,
        value_name = "COMMAND"
    )]
    pub password_command: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more (-vv: debug output, with the storage libraries' own logs).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// Where the repository is and whether it is the built-in default.
pub struct Location {
    pub path: PathBuf,
    pub is_default: bool,
}

fn default_dir() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("strata").join("repository"))
        .ok_or_else(|| {
            anyhow!(
                "cannot find a data directory for the default repository: set HOME or give --repo"
            )
        })
}

fn default_password_file() -> Result<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("strata").join("default-repository.password"))
        .ok_or_else(|| anyhow!("cannot find a config directory: set HOME or give --repo"))
}

pub fn location(global: &GlobalArgs) -> Result<Location> {
    match &global.repo {
        Some(p) => {
            let s = p.to_string_lossy();
            if strata_remote::is_remote(&s) {
                // refused early, with a message naming the right form
                strata_remote::parse(&s)?;
            }
            Ok(Location {
                path: p.clone(),
                is_default: false,
            })
        }
        None => Ok(Location {
            path: default_dir()?,
            is_default: true,
        }),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// The most a password file or command may hold: a password is a line.
const PASSWORD_LIMIT: u64 = 4096;
/// How long a password command may take (it may ask for a passphrase).
const PASSWORD_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The password from the configured sources, in order: password file,
/// password command, `STRATA_PASSWORD`, the default repository's generated
/// password file, a prompt on a terminal. An empty password is refused,
/// naming where it came from.
pub fn password(global: &GlobalArgs, loc: &Location, prompt: &str) -> Result<String> {
    let (pw, source) = password_and_source(global, loc, prompt)?;
    if pw.is_empty() {
        return Err(strata_core::Error::invalid(format!(
            "the password from {source} is empty: give the repository's password"
        ))
        .into());
    }
    Ok(pw)
}

fn password_and_source(
    global: &GlobalArgs,
    loc: &Location,
    prompt: &str,
) -> Result<(String, String)> {
    if let Some(file) = &global.password_file {
        let source = format!("password file {}", file.display());
        let text = read_limited(std::fs::File::open(file), &source)?;
        return Ok((first_line(&text), source));
    }
    if let Some(cmd) = &global.password_command {
        return Ok((
            run_password_command(cmd)?,
            format!("password command {cmd:?}"),
        ));
    }
    if let Ok(p) = std::env::var("STRATA_PASSWORD") {
        return Ok((p, "STRATA_PASSWORD".into()));
    }
    if loc.is_default {
        let file = default_password_file()?;
        if file.exists() {
            let source = format!("password file {}", file.display());
            let text = read_limited(std::fs::File::open(&file), &source)?;
            return Ok((first_line(&text), source));
        }
    }
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(prompt).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Interrupted {
                anyhow::Error::new(strata_core::Error::new(
                    strata_core::ErrorKind::Interrupted,
                    "interrupted at the password prompt",
                ))
            } else {
                anyhow::Error::new(e).context("cannot read the password from the terminal")
            }
        })?;
        return Ok((pw, "the prompt".into()));
    }
    bail!("no password given: use --password-file, --password-command, STRATA_PASSWORD_FILE or STRATA_PASSWORD")
}

/// Read at most [`PASSWORD_LIMIT`] bytes: more is not a password file.
fn read_limited(file: std::io::Result<std::fs::File>, source: &str) -> Result<String> {
    use std::io::Read;
    let mut text = Vec::new();
    file.and_then(|f| f.take(PASSWORD_LIMIT + 1).read_to_end(&mut text))
        .with_context(|| format!("cannot read {source}"))?;
    if text.len() as u64 > PASSWORD_LIMIT {
        bail!("{source} holds more than {PASSWORD_LIMIT} bytes: it should hold the password on its first line");
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Run a password command: its first line, read with a size limit and a
/// time limit (a command that hangs or prints forever is stopped).
fn run_password_command(cmd: &str) -> Result<String> {
    use std::io::Read;
    // Not in a process group of its own: a command that asks for a
    // passphrase on the terminal must stay in the foreground (it opens
    // /dev/tty). Standard input is not its: it may be the data of
    // `backup --stdin`, which a command such as `ssh` would read.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run password command {cmd:?}"))?;
    crate::interrupt::watch_child(child.id());
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let read = stdout.map(|s| s.take(PASSWORD_LIMIT + 1).read_to_end(&mut text));
        let _ = tx.send((read.map(|r| r.is_ok()).unwrap_or(false), text));
    });
    let outcome = rx.recv_timeout(PASSWORD_COMMAND_TIMEOUT);
    let (read_ok, text) = match outcome {
        Ok(got) => got,
        Err(_) => {
            stop(&mut child);
            bail!(
                "password command {cmd:?} did not finish within {} s",
                PASSWORD_COMMAND_TIMEOUT.as_secs()
            );
        }
    };
    if text.len() as u64 > PASSWORD_LIMIT {
        stop(&mut child);
        bail!("password command {cmd:?} printed more than {PASSWORD_LIMIT} bytes: it should print the password on one line");
    }
    let status = child
        .wait()
        .with_context(|| format!("password command {cmd:?}"));
    crate::interrupt::watch_child(0);
    let status = status?;
    if !status.success() || !read_ok {
        bail!("password command {cmd:?} failed with {status}");
    }
    Ok(first_line(&String::from_utf8_lossy(&text)))
}

/// Stop a password command (what it started in turn may outlive it, but
/// no longer holds strata up: the output is not waited for).
fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
    crate::interrupt::watch_child(0);
}

/// Where a remote repository's metadata is cached: `STRATA_CACHE_DIR` or
/// the user's cache directory, one subdirectory per location; none with
/// `STRATA_NO_CACHE`.
fn cache_dir(location: &str) -> Option<PathBuf> {
    if std::env::var_os("STRATA_NO_CACHE").is_some() {
        return None;
    }
    let base = std::env::var_os("STRATA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("strata")))?;
    let key = strata_core::Id::of_object(location.as_bytes()).to_hex();
    Some(base.join(&key[..16]))
}

/// The storage of a location: remote for `s3:` and `sftp:` (behind the
/// local cache), else a directory.
pub fn storage(loc: &Location) -> Result<Arc<dyn Storage>> {
    storage_with(loc, Cache::Use)
}

/// Whether a command may read a remote repository's metadata from the cache.
#[derive(Clone, Copy, PartialEq)]
pub enum Cache {
    Use,
    /// Commands that verify the repository read what the storage holds.
    Bypass,
}

fn storage_with(loc: &Location, cache: Cache) -> Result<Arc<dyn Storage>> {
    if let Some(s) = loc.path.to_str().filter(|s| strata_remote::is_remote(s)) {
        let remote = strata_remote::RemoteStorage::new(strata_remote::parse(s)?)?;
        let dir = cache_dir(s).filter(|_| cache == Cache::Use);
        return Ok(match dir {
            Some(dir) => Arc::new(CachedStorage::new(remote, dir)),
            None => Arc::new(remote),
        });
    }
    Ok(Arc::new(LocalStorage::new(&loc.path)))
}

/// Open the configured repository.
pub fn open(global: &GlobalArgs) -> Result<Arc<Repository>> {
    open_with(global, Cache::Use)
}

/// Open the configured repository, reading remote metadata from the cache
/// or, for commands that verify it, from the storage itself.
pub fn open_with(global: &GlobalArgs, cache: Cache) -> Result<Arc<Repository>> {
    let loc = location(global)?;
    let storage = storage_with(&loc, cache)?;
    // Look for the repository before asking for its password.
    if let Err(e) = Repository::ensure_exists(storage.as_ref()) {
        if e.kind() == strata_core::ErrorKind::RepositoryNotFound && loc.is_default {
            return Err(strata_core::Error::new(
                e.kind(),
                "no repository yet: run `strata backup PATH` to create the default one, \
                 or give a repository with -r/--repo or STRATA_REPOSITORY",
            )
            .into());
        }
        return Err(e.into());
    }
    let pw = password(global, &loc, "enter password for repository: ")?;
    let repo = Repository::open(storage, pw.as_bytes())?;
    Ok(Arc::new(repo))
}

/// Open the configured repository; if none is configured and the default
/// one does not exist yet, create it (with a generated password unless
/// one was given) and say so.
pub fn open_or_create_default(global: &GlobalArgs) -> Result<Arc<Repository>> {
    let loc = location(global)?;
    if !loc.is_default || loc.path.join("config").exists() {
        return open(global);
    }
    let explicit = global.password_file.is_some()
        || global.password_command.is_some()
        || std::env::var_os("STRATA_PASSWORD").is_some();
    let pw = if explicit {
        password(global, &loc, "")?
    } else {
        let pw = hex::encode(strata_core::crypto::random_bytes::<24>());
        save_password_file(&default_password_file()?, &pw)?;
        pw
    };
    // Private from the start: the repository's files take their modes
    // from this directory's (see the local storage).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&loc.path)
        .with_context(|| format!("cannot create {}", loc.path.display()))?;
    let repo = Repository::init(storage(&loc)?, pw.as_bytes(), KdfParams::default())?;
    errln!(
        "strata: no repository configured; created the default repository at {}",
        loc.path.display()
    );
    if !explicit {
        errln!(
            "strata: its password was generated and saved in {} — keep a copy somewhere safe: without it the backups cannot be read",
            default_password_file()?.display()
        );
    }
    Ok(Arc::new(repo))
}

fn save_password_file(path: &Path, pw: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create password file {} (remove it if it is stale)",
                path.display()
            )
        })?;
    writeln!(f, "{pw}")
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Snapshot filter options shared by commands that select snapshots.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags: `a,b` needs both; repeat for either.
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// With `latest`: the newest snapshot at or before this time
    /// (`2026-11-20`, `2026-11-20 10:00`, RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
    /// With `latest`: pass over snapshots that cannot be read (damaged)
    /// and take the newest readable one, with a warning.
    #[arg(long)]
    pub allow_damaged: bool,
}

impl FilterArgs {
    pub fn filter(&self) -> Result<strata_core::select::Filter> {
        let before = self
            .before
            .as_deref()
            .map(strata_core::select::parse_time)
            .transpose()?;
        Ok(strata_core::select::Filter {
            hosts: self.hosts.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
            before,
            allow_damaged: self.allow_damaged,
        })
    }
}
