//! Errors of the strata engine.
//!
//! Policy: the library returns one typed [`Error`] whose [`ErrorKind`] callers
//! can match on (the CLI maps kinds to exit codes). Every message names the
//! object or path concerned and, where the user can act, says what to do.
//! The enum is `#[non_exhaustive]` so new kinds can be added without breaking
//! callers. `anyhow` is for the binary only.

use std::fmt;
use std::path::Path;

/// What class of failure happened; stable enough to map to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The repository does not exist at the given location.
    RepositoryNotFound,
    /// The repository exists already (on `init`).
    RepositoryExists,
    /// No key of the repository opens with the given password.
    WrongPassword,
    /// Another process holds a conflicting lock.
    Locked,
    /// An object is damaged: failed authentication, bad length, bad encoding.
    Corrupted,
    /// Something a snapshot needs is missing from the repository.
    Missing,
    /// The user asked for something impossible (bad selector, bad pattern…).
    InvalidInput,
    /// An operating-system or storage I/O error.
    Io,
    /// The repository uses a format version this program does not know.
    UnsupportedVersion,
    /// The user asked to stop (Ctrl-C); see [`crate::interrupt`].
    Interrupted,
    /// A program the backup or restore ran failed (a dump command, a
    /// database client); the message has its exit status and error output.
    CommandFailed,
}

/// The engine's error: a kind, a message for humans, and an optional cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn corrupted(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupted, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    pub fn command(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::CommandFailed, message)
    }

    pub fn missing(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Missing, message)
    }

    /// An I/O error on a local path.
    pub fn io(path: &Path, what: &str, err: std::io::Error) -> Self {
        Error::with_source(
            ErrorKind::Io,
            format!("{what} {}: {err}", path.display()),
            err,
        )
    }

    /// Whether an object is damaged or gone (as opposed to storage that
    /// cannot be reached): another copy may still be read.
    pub fn is_damage(&self) -> bool {
        matches!(self.kind, ErrorKind::Corrupted | ErrorKind::Missing)
    }

    /// Whether this is a failure to write to storage that refuses writes:
    /// a read-only filesystem, or no permission to write.
    pub fn is_read_only(&self) -> bool {
        let io = self
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            )
        })
    }

    /// Prefix the message with more context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::with_source(ErrorKind::Io, err.to_string(), err)
    }
}
