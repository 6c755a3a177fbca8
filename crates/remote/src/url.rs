//! Repository locations for remote storage, parsed before anything connects.
//!
//! - `s3:https://host[:port]/bucket[/prefix]`: an S3-compatible store at that
//!   endpoint, with path-style requests (MinIO, Ceph, Garage, SeaweedFS);
//! - `s3:bucket[/prefix]`: AWS S3, region from `AWS_DEFAULT_REGION` or
//!   `AWS_REGION`;
//! - `sftp:[user@]host:/path` and `sftp://[user@]host[:port]/path`.
//!
//! Credentials come from the environment as other tools use them:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_PROFILE`; SSH keys, agent and `~/.ssh/config` through `ssh`, with
//! `STRATA_SFTP_KEY` naming a private key file to use.

use opendal::Operator;
use strata_core::{Error, Result};

/// A parsed remote location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    S3 {
        /// `None` for AWS itself.
        endpoint: Option<String>,
        bucket: String,
        prefix: String,
    },
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
}

/// Whether a repository location names remote storage.
pub fn is_remote(location: &str) -> bool {
    location.starts_with("s3:") || location.starts_with("sftp:")
}

pub fn parse(location: &str) -> Result<Remote> {
    if let Some(rest) = location.strip_prefix("s3:") {
        return parse_s3(rest, location);
    }
    if let Some(rest) = location.strip_prefix("sftp://") {
        return parse_sftp_url(rest, location);
    }
    if let Some(rest) = location.strip_prefix("sftp:") {
        return parse_sftp_short(rest, location);
    }
    Err(Error::invalid(format!(
        "{location} is not a remote location: use s3:https://host/bucket/prefix, s3:bucket/prefix, sftp:user@host:/path or sftp://user@host:port/path"
    )))
}

fn parse_s3(rest: &str, whole: &str) -> Result<Remote> {
    let (endpoint, path) = match rest.split_once("://") {
        Some((scheme @ ("http" | "https"), after)) => {
            let (host, path) = after.split_once('/').unwrap_or((after, ""));
            (Some(format!("{scheme}://{host}")), path)
        }
        Some((scheme, _)) => {
            return Err(Error::invalid(format!(
                "{whole}: the endpoint must be http:// or https://, not {scheme}://"
            )))
        }
        None => (None, rest),
    };
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!(
            "{whole}: no bucket given (s3:https://host/BUCKET/prefix or s3:BUCKET/prefix)"
        )));
    }
    Ok(Remote::S3 {
        endpoint,
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

fn split_user(s: &str) -> (Option<String>, &str) {
    match s.split_once('@') {
        Some((user, host)) => (Some(user.to_string()), host),
        None => (None, s),
    }
}

fn parse_sftp_url(rest: &str, whole: &str) -> Result<Remote> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = split_user(authority);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => {
            let port = p
                .parse()
                .map_err(|_| Error::invalid(format!("{whole}: {p:?} is not a port number")))?;
            (h, Some(port))
        }
        None => (hostport, None),
    };
    sftp(
        user,
        host,
        port,
        &format!("/{}", path.trim_start_matches('/')),
        whole,
    )
}

fn parse_sftp_short(rest: &str, whole: &str) -> Result<Remote> {
    let (authority, path) = rest
        .split_once(':')
        .ok_or_else(|| Error::invalid(format!("{whole}: expected sftp:user@host:/path")))?;
    let (user, host) = split_user(authority);
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "{whole}: give the repository's absolute path on the server (sftp:{authority}:/path)"
        )));
    }
    sftp(user, host, None, path, whole)
}

fn sftp(
    user: Option<String>,
    host: &str,
    port: Option<u16>,
    path: &str,
    whole: &str,
) -> Result<Remote> {
    if host.is_empty() || path.trim_matches('/').is_empty() {
        return Err(Error::invalid(format!(
            "{whole}: needs a host and a path other than / (sftp:user@host:/srv/backup)"
        )));
    }
    Ok(Remote::Sftp {
        user,
        host: host.to_string(),
        port,
        path: path.trim_end_matches('/').to_string(),
    })
}

fn region() -> Option<String> {
    ["AWS_DEFAULT_REGION", "AWS_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
}

impl Remote {
    /// The location as shown in messages (never with secrets: there are
    /// none in these URLs).
    pub fn display(&self) -> String {
        match self {
            Remote::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let base = endpoint
                    .as_deref()
                    .map_or(String::new(), |e| format!("{e}/"));
                format!("s3:{base}{bucket}/{prefix}")
            }
            Remote::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let user = user.as_deref().map_or(String::new(), |u| format!("{u}@"));
                let port = port.map_or(String::new(), |p| format!(":{p}"));
                format!("sftp://{user}{host}{port}{path}")
            }
        }
    }

    /// An OpenDAL operator for this location (not connected yet).
    /// The host and port a connection goes to, where strata can tell
    /// (an S3 endpoint given as a URL, an SFTP server; not AWS itself).
    pub(crate) fn address(&self) -> Option<(String, u16)> {
        match self {
            Remote::S3 {
                endpoint: Some(e), ..
            } => {
                let (scheme, rest) = e.split_once("://")?;
                let hostport = rest.split('/').next()?;
                let default = if scheme == "https" { 443 } else { 80 };
                match hostport.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                        Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?))
                    }
                    _ => Some((hostport.trim_matches(['[', ']']).to_string(), default)),
                }
            }
            Remote::S3 { endpoint: None, .. } => None,
            Remote::Sftp { host, port, .. } => Some((host.clone(), port.unwrap_or(22))),
        }
    }

    pub(crate) fn operator(&self) -> std::result::Result<Operator, opendal::Error> {
        match self {
            Remote::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let mut b = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"));
                b = match endpoint {
                    Some(e) => b
                        .endpoint(e)
                        .region(&region().unwrap_or_else(|| "us-east-1".into())),
                    None => {
                        let b = b.enable_virtual_host_style();
                        match region() {
                            Some(r) => b.region(&r),
                            None => b,
                        }
                    }
                };
                Operator::new(b)
            }
            Remote::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let endpoint = match port {
                    Some(p) => format!("ssh://{host}:{p}"),
                    None => format!("ssh://{host}"),
                };
                let mut b = opendal::services::Sftp::default()
                    .endpoint(&endpoint)
                    .root(path);
                if let Some(u) = user {
                    b = b.user(u);
                }
                if let Ok(key) = std::env::var("STRATA_SFTP_KEY") {
                    b = b.key(&key);
                }
                Operator::new(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_as_documented() {
        assert_eq!(
            parse("s3:https://minio.local:9000/bucket/some/prefix").unwrap(),
            Remote::S3 {
                endpoint: Some("https://minio.local:9000".into()),
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            parse("s3:bucket").unwrap(),
            Remote::S3 {
                endpoint: None,
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse("sftp:backup@host.example:/srv/repo/").unwrap(),
            Remote::Sftp {
                user: Some("backup".into()),
                host: "host.example".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            parse("sftp://host.example:2222/srv/repo").unwrap(),
            Remote::Sftp {
                user: None,
                host: "host.example".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        let shown = parse("sftp://u@h:22/a/b").unwrap().display();
        assert_eq!(shown, "sftp://u@h:22/a/b");
    }

    #[test]
    fn bad_locations_say_what_to_write() {
        for bad in [
            "s3:",
            "s3:ftp://host/bucket",
            "sftp:host:relative/path",
            "sftp://host:notaport/x",
            "sftp:host:/",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), strata_core::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
