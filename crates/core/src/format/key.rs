//! Key files: the master key wrapped with a password-derived key.
//!
//! A key file is JSON (it must be readable before anything is decrypted):
//! the Argon2id parameters and salt, and `data`, the sealed master key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::crypto::{open_with, random_bytes, seal_with, KdfParams, MasterKey};
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: jiff::Timestamp,
    pub hostname: String,
    pub username: String,
    pub kdf: String,
    #[serde(flatten)]
    pub params: KdfParams,
    /// Base64 of the 32-byte salt.
    pub salt: String,
    /// Base64 of the sealed master key (CBOR inside).
    pub data: String,
}

impl KeyFile {
    /// Wrap `master` with `password`.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<KeyFile> {
        let salt: [u8; 32] = random_bytes();
        let wrapping = params.derive(password, &salt)?;
        let sealed = seal_with(&wrapping, super::ad::KEY, &super::to_cbor(master));
        Ok(KeyFile {
            version: super::VERSION,
            created: jiff::Timestamp::now(),
            hostname: hostname.into(),
            username: username.into(),
            kdf: "argon2id".into(),
            params,
            salt: B64.encode(salt),
            data: B64.encode(sealed),
        })
    }

    /// Unwrap the master key; `WrongPassword` if the password does not fit.
    pub fn unwrap_key(&self, password: &[u8]) -> Result<MasterKey> {
        if self.kdf != "argon2id" {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("unknown key derivation {:?}", self.kdf),
            ));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| Error::corrupted("key file salt is not base64"))?;
        let sealed = B64
            .decode(&self.data)
            .map_err(|_| Error::corrupted("key file data is not base64"))?;
        let wrapping = self.params.derive(password, &salt)?;
        let plain = open_with(&wrapping, super::ad::KEY, &sealed)
            .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password or no key found"))?;
        super::from_cbor(&plain, "master key")
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(data: &[u8]) -> Result<KeyFile> {
        serde_json::from_slice(data)
            .map_err(|e| Error::corrupted(format!("key file is not valid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let master = MasterKey::random();
        let params = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let kf = KeyFile::wrap(&master, b"secret", params, "h", "u").unwrap();
        let back = KeyFile::from_json(&kf.to_json()).unwrap();
        let got = back.unwrap_key(b"secret").unwrap();
        assert_eq!(got.blob_id(b"x"), master.blob_id(b"x"));
        assert_eq!(
            back.unwrap_key(b"wrong").unwrap_err().kind(),
            ErrorKind::WrongPassword
        );
    }
}
