//! Signing and verification keys.
//!
//! A [`KeySet`] holds one current key, used to sign new codes, and any number of previous keys that still verify
//! codes signed before a rotation. Each key is pinned to one algorithm: the token's `alg` header must match the
//! algorithm of the key its `kid` names, it never selects one.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

use crate::error::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// One key: a `kid`, the single algorithm it is used with, and key material.
///
/// `Debug` shows the `kid` and the algorithm only.
#[derive(Clone)]
pub struct Key {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    kid: String,
    alg: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    /// base64url of the protected header `{"alg":..,"typ":"otac+jwt","kid":..}`, computed once.
    header_b64: String,
    /// Key for the keyed hashes of caller bindings, derived from the secret.
    binding_key: [u8; 32],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HS256 key. The secret must be at least 32 bytes; the `kid` is derived from it, so services sharing a
    /// secret issue interchangeable codes.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(Algorithm::HS256, secret.as_ref(), 32)
    }

    /// An HS384 key (secret at least 48 bytes).
    pub fn hs384(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(Algorithm::HS384, secret.as_ref(), 48)
    }

    /// An HS512 key (secret at least 64 bytes).
    pub fn hs512(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::hmac(Algorithm::HS512, secret.as_ref(), 64)
    }

    /// A fresh random HS256 key, for development and tests.
    pub fn generate_hs256() -> Result<Self, ConfigError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| ConfigError::BadKey("no system randomness"))?;
        Self::hs256(secret)
    }

    /// The same key under an explicit `kid` (printable ASCII, at most 64 bytes).
    pub fn with_kid(self, kid: impl Into<String>) -> Result<Self, ConfigError> {
        let kid = kid.into();
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::BadKey(
                "kid must be 1 to 64 printable ASCII characters",
            ));
        }
        let inner = &*self.inner;
        Ok(Self::assemble(
            kid,
            inner.alg,
            inner.encoding.clone(),
            inner.decoding.clone(),
            inner.binding_key,
        ))
    }

    fn hmac(alg: Algorithm, secret: &[u8], min: usize) -> Result<Self, ConfigError> {
        if secret.len() < min {
            return Err(ConfigError::WeakSecret {
                alg: alg_name(alg),
                min,
            });
        }
        let encoding =
            EncodingKey::from_secret(secret).map_err(|_| ConfigError::BadKey("bad HMAC secret"))?;
        let decoding =
            DecodingKey::from_secret(secret).map_err(|_| ConfigError::BadKey("bad HMAC secret"))?;
        let kid = URL_SAFE_NO_PAD.encode(&derive(secret, b"otac kid v1")[..9]);
        let binding_key = derive(secret, b"otac binding v1");
        Ok(Self::assemble(
            kid,
            alg,
            Some(encoding),
            decoding,
            binding_key,
        ))
    }

    fn assemble(
        kid: String,
        alg: Algorithm,
        encoding: Option<EncodingKey>,
        decoding: DecodingKey,
        binding_key: [u8; 32],
    ) -> Self {
        let header = format!(
            r#"{{"alg":"{}","typ":"{}","kid":"{}"}}"#,
            alg_name(alg),
            crate::TOKEN_TYPE,
            kid
        );
        Self {
            inner: Arc::new(KeyInner {
                kid,
                alg,
                encoding,
                decoding,
                header_b64: URL_SAFE_NO_PAD.encode(header),
                binding_key,
            }),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The one algorithm this key is used with.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    pub(crate) fn alg_name(&self) -> &'static str {
        alg_name(self.inner.alg)
    }

    pub(crate) fn encoding(&self) -> Option<&EncodingKey> {
        self.inner.encoding.as_ref()
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.inner.decoding
    }

    pub(crate) fn header_b64(&self) -> &str {
        &self.inner.header_b64
    }

    fn binding_key(&self) -> &[u8; 32] {
        &self.inner.binding_key
    }
}

/// HMAC-SHA256(secret, label): a one-way derivation so that the `kid` and the binding key reveal nothing of the
/// signing secret and differ from each other.
fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

pub(crate) const fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Keys are only built by this module, for the algorithms above.
        _ => "unsupported",
    }
}

/// The keys of a workflow: one current signing key and the previous keys that still verify.
///
/// Rotation without downtime: build a new set whose current key is the new one and whose previous keys include the
/// old one ([`KeySet::rotate`]); once every code signed with the old key has expired (the workflow's code lifetime),
/// drop it.
///
/// Caller bindings are hashed with a binding key of the set, derived from the first current key and kept across
/// [`rotate`](KeySet::rotate), so that rotation does not break bindings of codes in flight. Set it explicitly with
/// [`with_binding_secret`](KeySet::with_binding_secret) when services hold only public keys.
#[derive(Clone)]
pub struct KeySet {
    current: Key,
    previous: Vec<Key>,
    binding_key: [u8; 32],
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("current", &self.current)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// A set with one key, used to sign and verify.
    pub fn new(current: Key) -> Self {
        Self {
            binding_key: *current.binding_key(),
            current,
            previous: Vec::new(),
        }
    }

    /// Sets the secret caller bindings are hashed with (at least 32 bytes). Every service of a workflow must use
    /// the same one.
    pub fn with_binding_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(ConfigError::WeakSecret {
                alg: "binding secret",
                min: 32,
            });
        }
        self.binding_key = derive(secret, b"otac binding v1");
        Ok(self)
    }

    pub(crate) fn binding_key(&self) -> &[u8; 32] {
        &self.binding_key
    }

    /// Adds a key that still verifies codes but no longer signs new ones.
    pub fn with_previous(mut self, key: Key) -> Result<Self, ConfigError> {
        if self.find(key.kid()).is_some() {
            return Err(ConfigError::DuplicateKid(key.kid().to_owned()));
        }
        self.previous.push(key);
        Ok(self)
    }

    /// Makes `new` the current key; the old current key moves to the previous keys.
    pub fn rotate(self, new: Key) -> Result<Self, ConfigError> {
        let KeySet {
            current,
            previous,
            binding_key,
        } = self;
        let mut set = KeySet::new(new).with_previous(current)?;
        for key in previous {
            set = set.with_previous(key)?;
        }
        set.binding_key = binding_key;
        Ok(set)
    }

    /// Removes a previous key by `kid`; codes signed with it stop verifying.
    pub fn without(mut self, kid: &str) -> Self {
        self.previous.retain(|k| k.kid() != kid);
        self
    }

    /// The key new codes are signed with.
    pub fn current(&self) -> &Key {
        &self.current
    }

    /// All keys that verify, current first.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(self.previous.iter())
    }

    /// The key with this `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&Key> {
        self.iter().find(|k| k.kid() == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secret_is_refused() {
        assert_eq!(
            Key::hs256([7u8; 31]).unwrap_err(),
            ConfigError::WeakSecret {
                alg: "HS256",
                min: 32
            }
        );
        assert!(Key::hs384([7u8; 47]).is_err());
        assert!(Key::hs512([7u8; 63]).is_err());
        assert!(Key::hs256([7u8; 32]).is_ok());
    }

    #[test]
    fn kid_is_derived_from_the_secret() {
        let a = Key::hs256([1u8; 32]).unwrap();
        let b = Key::hs256([1u8; 32]).unwrap();
        let c = Key::hs256([2u8; 32]).unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), c.kid());
        assert_ne!(a.binding_key(), c.binding_key());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = Key::hs256(b"a-very-secret-value-that-is-long-enough").unwrap();
        let shown = format!("{key:?} {:?}", KeySet::new(key.clone()));
        assert!(!shown.contains("a-very-secret"));
        assert!(shown.contains(key.kid()));
    }

    #[test]
    fn duplicate_kid_is_refused() {
        let key = Key::hs256([1u8; 32]).unwrap();
        assert!(matches!(
            KeySet::new(key.clone()).with_previous(key),
            Err(ConfigError::DuplicateKid(_))
        ));
    }

    #[test]
    fn explicit_kid_is_validated() {
        let key = Key::hs256([1u8; 32]).unwrap();
        assert!(key.clone().with_kid("2026-12").is_ok());
        assert!(key.clone().with_kid("").is_err());
        assert!(key.with_kid("bad\"kid").is_err());
    }
}
