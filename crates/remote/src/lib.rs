//! # strata-remote
//!
//! Repositories on S3-compatible object stores and SFTP servers, behind the
//! engine's [`Storage`] trait. Both are built on OpenDAL, whose blocking API
//! runs on a small tokio runtime owned by each storage; its retry layer
//! retries transient failures (timeouts, 5xx, throttling, dropped
//! connections) with jittered exponential backoff and never permanent ones
//! (not found, access denied), and its timeout layer bounds every call.
//!
//! Contracts that differ from the local backend, and how they are met:
//! - S3 `PUT` is atomic, so objects are written in one request.
//! - SFTP writes are not: objects are written to a `.tmp-` name in the same
//!   directory and renamed into place (OpenSSH's atomic rename).
//! - Streamed writers collect the object in memory (packs are 16 MiB) and
//!   upload it on `finish`, so nothing is visible before it is complete.

mod url;

use std::sync::Arc;
use std::time::Duration;

use opendal::blocking::Operator;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use strata_core::storage::{BufferWriter, ObjectInfo, ObjectKind, ObjectWriter, Storage};
use strata_core::{Error, ErrorKind, Result};

pub use url::{is_remote, parse, Remote};

/// A repository in an object store or on an SFTP server.
#[derive(Clone)]
pub struct RemoteStorage {
    // Declared before the runtime: dropped first, while it can still run.
    op: Operator,
    _runtime: Arc<tokio::runtime::Runtime>,
    location: String,
    /// Write to a temporary name and rename (SFTP), or write in place (S3).
    rename_into_place: bool,
}

/// Open remote storage for a `s3:` or `sftp:` repository location.
pub fn open(location: &str) -> Result<Arc<dyn Storage>> {
    Ok(Arc::new(RemoteStorage::new(parse(location)?)?))
}

impl RemoteStorage {
    pub fn new(remote: Remote) -> Result<RemoteStorage> {
        // The HTTP client S3 uses; installing it again is a no-op.
        opendal::install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| {
                Error::with_source(ErrorKind::Io, "cannot start the network runtime", e)
            })?;
        let _entered = runtime.enter();
        let location = remote.display();
        refuse_unreachable_local(&remote, &location)?;
        let rename_into_place = matches!(remote, Remote::Sftp { .. });
        let op = remote
            .operator()
            .map_err(|e| convert(e, &location))?
            // Innermost: a call waiting out a retry's backoff holds no slot.
            .layer(ConcurrentLimitLayer::new(connections()?))
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(5)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_jitter()
                    .with_notify(|e: opendal::layers::RetryEvent| {
                        // One line per retry, not the error's backtrace
                        // (refused local connections fail before this).
                        tracing::warn!(
                            "{:?} failed ({}: {}); retry {} in {:.1}s",
                            e.op,
                            e.err.kind(),
                            e.err.message(),
                            e.attempt,
                            e.retry_after.as_secs_f64()
                        );
                    }),
            );
        let op = Operator::new(op).map_err(|e| convert(e, &location))?;
        Ok(RemoteStorage {
            op,
            _runtime: Arc::new(runtime),
            location,
            rename_into_place,
        })
    }

    fn err(&self, e: opendal::Error, path: &str) -> Error {
        convert(
            e,
            &format!("{}/{path}", self.location.trim_end_matches('/')),
        )
    }

    /// Upload `data` to `path` (an `opendal::Buffer` is shared, not copied,
    /// when a call is made again).
    fn put(&self, path: &str, data: &opendal::Buffer) -> Result<()> {
        self.again(|| self.op.write(path, data.clone()))
            .map(|_| ())
            .map_err(|e| self.err(e, path))
    }

    /// [`Storage::write`] of bytes already owned.
    fn store(&self, kind: ObjectKind, name: &str, data: opendal::Buffer) -> Result<()> {
        let path = kind.path_of(name);
        if !self.rename_into_place {
            return self.put(&path, &data);
        }
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let tmp = format!(
            "{dir}/.tmp-{name}-{}",
            hex::encode(rand::random::<[u8; 8]>())
        );
        let result =
            self.put(&tmp, &data)
                .and_then(|()| match self.again(|| self.op.rename(&tmp, &path)) {
                    // A rename that was made again after its reply was lost
                    // finds no temporary file: the object is already in place.
                    Err(e)
                        if e.kind() == opendal::ErrorKind::NotFound
                            && self
                                .op
                                .stat(&path)
                                .is_ok_and(|m| m.content_length() == data.len() as u64) =>
                    {
                        Ok(())
                    }
                    other => other.map(|_| ()).map_err(|e| self.err(e, &path)),
                });
        if result.is_err() {
            let _ = self.op.delete(&tmp);
        }
        result
    }

    /// Run `call`, and over SFTP run it again, up to three times in all,
    /// when it failed for a reason that may be a dropped connection.
    /// OpenDAL's retry layer retries an SFTP read or write on the same file
    /// handle, which a dropped connection has made useless for good; a new
    /// call takes a new connection (the pool drops the broken one).
    fn again<T>(&self, call: impl Fn() -> opendal::Result<T>) -> opendal::Result<T> {
        let mut attempt = 1;
        loop {
            match call() {
                Err(e)
                    if self.rename_into_place
                        && attempt < SFTP_ATTEMPTS
                        && e.kind() == opendal::ErrorKind::Unexpected =>
                {
                    tracing::warn!(
                        "{} ({}); trying again on a new connection",
                        e.kind(),
                        e.message()
                    );
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}

/// Calls over SFTP, each with its own retries (see `RemoteStorage::again`).
const SFTP_ATTEMPTS: u32 = 3;

/// Requests in flight at once: `STRATA_CONNECTIONS`, or 8.
fn connections() -> Result<usize> {
    match std::env::var("STRATA_CONNECTIONS") {
        Err(_) => Ok(DEFAULT_CONNECTIONS),
        Ok(v) => v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            Error::invalid(format!(
                "STRATA_CONNECTIONS={v:?} is not a positive number of connections"
            ))
        }),
    }
}

/// Enough to hide round trips behind each other when restoring; more only
/// adds load on the server (docs/benchmarks.md).
const DEFAULT_CONNECTIONS: usize = 8;

/// A server on this machine that refuses connections is not running: say
/// so at once instead of retrying for seconds. (Remote hosts may be
/// restarting; their failures are retried as usual.)
fn refuse_unreachable_local(remote: &Remote, location: &str) -> Result<()> {
    use std::net::ToSocketAddrs;
    let Some((host, port)) = remote.address() else {
        return Ok(());
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return Ok(()); // name resolution is the client's to report
    };
    let local: Vec<_> = addrs.filter(|a| a.ip().is_loopback()).collect();
    if local.is_empty() {
        return Ok(());
    }
    let refused = local.iter().all(|a| {
        std::net::TcpStream::connect_timeout(a, Duration::from_secs(2))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    if refused {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{location}: nothing listens on {host}:{port} (connection refused): start the server, or check the address"
            ),
        ));
    }
    Ok(())
}

/// OpenDAL errors as the engine's: missing objects are `Missing`, the rest
/// `Io` (the retry layer has already retried what was transient).
fn convert(e: opendal::Error, what: &str) -> Error {
    let text = e.to_string();
    if text.contains("signing http request") || text.contains("loading credential") {
        return Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{what}: no S3 credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            ),
        );
    }
    let (kind, hint) = match e.kind() {
        opendal::ErrorKind::NotFound => (ErrorKind::Missing, ""),
        opendal::ErrorKind::ConfigInvalid => (
            ErrorKind::InvalidInput,
            " (check the location, the bucket's existence and the AWS_* settings)",
        ),
        opendal::ErrorKind::PermissionDenied => (
            ErrorKind::Io,
            " (check the credentials and their rights on this location)",
        ),
        _ => (
            ErrorKind::Io,
            " (check the address and that the server is reachable; transient failures were retried)",
        ),
    };
    Error::with_source(kind, format!("{what}{hint}"), e)
}

fn is_listed(name: &str) -> bool {
    !name.is_empty() && !name.starts_with(".tmp-")
}

impl Storage for RemoteStorage {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn create(&self) -> Result<()> {
        if self.rename_into_place {
            for kind in ObjectKind::ALL.into_iter().filter(|k| !k.dir().is_empty()) {
                let dir = format!("{}/", kind.dir());
                self.op.create_dir(&dir).map_err(|e| self.err(e, &dir))?;
            }
            Ok(())
        } else {
            // Object stores have no directories; the bucket must exist.
            self.op.check().map_err(|e| self.err(e, ""))
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>> {
        if kind == ObjectKind::Config {
            return match self.op.stat("config") {
                Ok(meta) => Ok(vec![ObjectInfo {
                    name: "config".into(),
                    size: meta.content_length(),
                }]),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(self.err(e, "config")),
            };
        }
        let dir = format!("{}/", kind.dir());
        let entries = match self.again(|| {
            self.op.list_options(
                &dir,
                opendal::options::ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
        }) {
            Ok(entries) => entries,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e, &dir)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode() == opendal::EntryMode::FILE)
            .filter_map(|e| {
                let name = e.path().rsplit('/').next()?.to_string();
                is_listed(&name).then(|| ObjectInfo {
                    name,
                    size: e.metadata().content_length(),
                })
            })
            .collect())
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let path = kind.path_of(name);
        self.again(|| self.op.read(&path))
            .map(|b| b.to_vec())
            .map_err(|e| self.err(e, &path))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        let path = kind.path_of(name);
        if length == 0 {
            return self
                .op
                .stat(&path)
                .map(|_| Vec::new())
                .map_err(|e| self.err(e, &path));
        }
        let read = self.again(|| {
            self.op.read_options(
                &path,
                opendal::options::ReadOptions {
                    range: (offset..offset + length).into(),
                    ..Default::default()
                },
            )
        });
        let data = match read {
            Ok(b) => b.to_vec(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Err(self.err(e, &path)),
            // Past the end (HTTP 416, or a short read over SFTP) is damage,
            // as the contract says; anything else is an I/O failure.
            Err(e) => {
                let size = self
                    .op
                    .stat(&path)
                    .map_err(|e| self.err(e, &path))?
                    .content_length();
                if offset + length > size {
                    return Err(Error::corrupted(format!(
                        "object {name} is too short: wanted {length} bytes at offset {offset}, it has {size}"
                    )));
                }
                return Err(self.err(e, &path));
            }
        };
        if data.len() as u64 != length {
            return Err(Error::corrupted(format!(
                "object {name} is too short: wanted {length} bytes at offset {offset}, got {}",
                data.len()
            )));
        }
        Ok(data)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> Result<()> {
        self.store(kind, name, opendal::Buffer::from(data.to_vec()))
    }

    fn remove(&self, kind: ObjectKind, name: &str) -> Result<()> {
        let path = kind.path_of(name);
        match self.op.delete(&path) {
            Err(e) if e.kind() != opendal::ErrorKind::NotFound => Err(self.err(e, &path)),
            _ => Ok(()),
        }
    }

    fn create_writer(&self, kind: ObjectKind) -> Result<Box<dyn ObjectWriter>> {
        let storage = self.clone();
        Ok(Box::new(BufferWriter::new(
            move |name: &str, data: Vec<u8>| storage.store(kind, name, data.into()),
        )))
    }
}
