//! The keyed hash and the encryption that governance rules force, with the project's keys.
//!
//! The hash is HMAC-SHA-256 under `keys.hash` (lower-case hex): the same value gives the same
//! token in every product of the project, so tokens still join, and without the key nobody can
//! reverse one by hashing a dictionary of candidates. Encryption is AES-256-GCM under
//! `keys.encrypt` with a fresh random 96-bit nonce per value; the stored text is
//! base64(nonce ‖ ciphertext ‖ tag), decryptable by key holders with `weft policy decrypt`.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NONCE_LEN: usize = 12;

/// The project's secret keys, from governance.yaml's `keys` (usually `${VAR}`s).
#[derive(Clone, Default)]
pub struct Keys {
    pub(crate) hash: Option<Vec<u8>>,
    pub(crate) encrypt: Option<[u8; 32]>,
}

// Never print key material.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("hash", &self.hash.as_ref().map(|_| "<set>"))
            .field("encrypt", &self.encrypt.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Keys {
    pub fn new(hash: Option<Vec<u8>>, encrypt: Option<[u8; 32]>) -> Self {
        Self { hash, encrypt }
    }

    pub fn has_hash(&self) -> bool {
        self.hash.is_some()
    }

    pub fn has_encrypt(&self) -> bool {
        self.encrypt.is_some()
    }

    /// A hasher under `keys.hash`, if set.
    pub fn hasher(&self) -> Option<KeyedHasher> {
        self.hash.clone().map(KeyedHasher)
    }

    /// An encrypter under `keys.encrypt`, if set.
    pub fn cipher(&self) -> Option<Cipher> {
        self.encrypt.map(|key| Cipher(Aes256Gcm::new(&key.into())))
    }
}

/// HMAC-SHA-256 under the project's hash key.
#[derive(Clone)]
pub struct KeyedHasher(Vec<u8>);

impl KeyedHasher {
    /// Lower-case hex of HMAC-SHA-256(key, value).
    pub fn hash_hex(&self, value: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(value);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// AES-256-GCM under the project's encryption key.
#[derive(Clone)]
pub struct Cipher(Aes256Gcm);

impl Cipher {
    /// base64(nonce ‖ ciphertext ‖ tag) of `plain`, under a fresh random nonce.
    pub fn encrypt(&self, plain: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(&nonce, plain)
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// The plain text of a value written by [`Cipher::encrypt`].
    pub fn decrypt(&self, text: &str) -> Result<Vec<u8>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("not base64 ({e})"))?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err("too short to be a weft-encrypted value".into());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        self.0
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| {
                "does not decrypt under this key (another key, or not a weft-encrypted value)"
                    .into()
            })
    }
}

/// An AES-256 key from its text: 64 hex digits or the base64 of 32 bytes.
pub fn parse_key32(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "is neither 64 hex digits nor base64".to_string())?
    };
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "is {} bytes; AES-256 needs 32 (generate one with `openssl rand -hex 32`)",
            b.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2.
        let keys = Keys::new(Some(b"Jefe".to_vec()), None);
        assert_eq!(
            keys.hasher()
                .unwrap()
                .hash_hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn encryption_round_trips_with_a_fresh_nonce_and_refuses_another_key() {
        let key = parse_key32(&"ab".repeat(32)).unwrap();
        let cipher = Keys::new(None, Some(key)).cipher().unwrap();
        let a = cipher.encrypt(b"ann@example.com");
        let b = cipher.encrypt(b"ann@example.com");
        assert_ne!(a, b);
        assert_eq!(cipher.decrypt(&a).unwrap(), b"ann@example.com");
        let other = Keys::new(None, Some([7; 32])).cipher().unwrap();
        assert!(other.decrypt(&a).unwrap_err().contains("does not decrypt"));
        assert!(parse_key32("short").unwrap_err().contains("neither"));
    }
}
