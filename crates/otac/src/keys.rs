//! Signing and verification keys.
//!
//! A [`KeySet`] holds one current key, used to sign new codes, and any number of previous keys that still verify
//! codes signed before a rotation. Each key is pinned to one algorithm: the token's `alg` header must match the
//! algorithm of the key its `kid` names, it never selects one.
//!
//! Algorithms: HS256, HS384 and HS512 (shared secrets), RS256 and PS256 (RSA, 2048 to 8192 bits), ES256 (P-256)
//! and EdDSA (Ed25519). Asymmetric keys load from PEM ([`Key::rs256_pem`], [`Key::public_pem`], ...) or from a
//! JWK ([`Key::from_jwk`], [`KeySet::from_jwks`]); a key set publishes its public keys as a JWKS document
//! ([`KeySet::jwks`]). HMAC keys are never published and never loaded from a JWK.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// The pure-Rust backend, named directly: no process-wide provider is consulted.
static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

/// One key: a `kid`, the single algorithm it is used with, and key material.
///
/// A key signs when it holds private material (an HMAC secret or a private key), and verifies in any case.
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
    /// Key for the keyed hashes of caller bindings, derived from an HMAC secret; none for asymmetric keys.
    binding_key: Option<[u8; 32]>,
    /// The public key of an asymmetric key, as published in a JWK.
    public: Option<PublicKey>,
}

/// The public part of an asymmetric key, with the JWK members of RFC 7518 §6.
#[derive(Clone, PartialEq, Eq)]
enum PublicKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// A P-256 point.
    P256 { x: [u8; 32], y: [u8; 32] },
    /// An Ed25519 public key.
    Ed25519 { x: [u8; 32] },
}

impl PublicKey {
    fn rsa(n: &[u8], e: &[u8]) -> Result<Self, ConfigError> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = match n.first() {
            Some(first) => n.len() * 8 - first.leading_zeros() as usize,
            None => 0,
        };
        if bits < 2048 {
            return Err(ConfigError::BadKey("RSA keys need at least 2048 bits"));
        }
        if bits > 8192 {
            return Err(ConfigError::BadKey(
                "RSA keys over 8192 bits are not supported",
            ));
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err(ConfigError::BadKey("RSA modulus is even"));
        }
        // The exponent the verifier accepts: odd, 3 ..= 2^33 - 1.
        let exponent =
            (e.len() <= 8).then(|| e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        match exponent {
            Some(v) if v >= 3 && v & 1 == 1 && v < (1 << 33) => {}
            _ => return Err(ConfigError::BadKey("unusable RSA public exponent")),
        }
        Ok(Self::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    fn p256(x: &[u8], y: &[u8]) -> Result<Self, ConfigError> {
        match (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) {
            (Ok(x), Ok(y)) => Ok(Self::P256 { x, y }),
            _ => Err(ConfigError::BadKey("not a P-256 public key")),
        }
    }

    fn ed25519(x: &[u8]) -> Result<Self, ConfigError> {
        <[u8; 32]>::try_from(x)
            .map(|x| Self::Ed25519 { x })
            .map_err(|_| ConfigError::BadKey("not an Ed25519 public key"))
    }

    fn decoding_key(&self) -> DecodingKey {
        match self {
            Self::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            Self::P256 { x, y } => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                DecodingKey::from_ec_der(&point)
            }
            Self::Ed25519 { x } => DecodingKey::from_ed_der(x),
        }
    }

    /// The required members in lexicographic order (RFC 7638 §3.2), as `(name, value)`.
    fn members(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Rsa { n, e } => vec![
                ("e", URL_SAFE_NO_PAD.encode(e)),
                ("kty", "RSA".to_owned()),
                ("n", URL_SAFE_NO_PAD.encode(n)),
            ],
            Self::P256 { x, y } => vec![
                ("crv", "P-256".to_owned()),
                ("kty", "EC".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(x)),
                ("y", URL_SAFE_NO_PAD.encode(y)),
            ],
            Self::Ed25519 { x } => vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(x)),
            ],
        }
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256(canonical JSON of the required members)).
    fn thumbprint(&self) -> String {
        let mut canonical = String::from("{");
        for (i, (name, value)) in self.members().into_iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            // Names and values are ASCII without quotes or backslashes (base64url, fixed names).
            canonical.push('"');
            canonical.push_str(name);
            canonical.push_str("\":\"");
            canonical.push_str(&value);
            canonical.push('"');
        }
        canonical.push('}');
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .field("signs", &self.inner.encoding.is_some())
            .finish_non_exhaustive()
    }
}

/// The PEM label of the first block, e.g. `PRIVATE KEY`.
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

fn expect_label(pem: &[u8], allowed: &[&str], message: &'static str) -> Result<(), ConfigError> {
    match pem_label(pem) {
        Some(label) if allowed.contains(&label) => Ok(()),
        _ => Err(ConfigError::BadKey(message)),
    }
}

const PRIVATE_PKCS8: &str = "PRIVATE KEY";
const PUBLIC_SPKI: &str = "PUBLIC KEY";

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

    /// An RS256 signing key from a PEM RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, at least
    /// 2048 bits). The `kid` is the RFC 7638 thumbprint of the public key.
    pub fn rs256_pem(private_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::rsa_private(Algorithm::RS256, private_pem.as_ref())
    }

    /// A PS256 (RSASSA-PSS) signing key from a PEM RSA private key, as [`Key::rs256_pem`]. An RS256 and a PS256 key
    /// of the same RSA key pair are two keys with the same thumbprint: give one of them another `kid` with
    /// [`with_kid`](Key::with_kid) to hold both in one set.
    pub fn ps256_pem(private_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::rsa_private(Algorithm::PS256, private_pem.as_ref())
    }

    /// An ES256 signing key from a PEM P-256 private key in PKCS#8 form (`PRIVATE KEY`, as `openssl genpkey`
    /// writes it).
    pub fn es256_pem(private_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = private_pem.as_ref();
        expect_label(
            pem,
            &[PRIVATE_PKCS8],
            "expected a PKCS#8 PEM private key (PRIVATE KEY)",
        )?;
        let encoding = EncodingKey::from_ec_pem(pem)
            .map_err(|_| ConfigError::BadKey("not a PEM EC private key"))?;
        let (curve, x, y) = (PROVIDER.key_utils.ec_pub_components_from_private_key)(
            encoding.as_bytes(),
            Algorithm::ES256,
        )
        .map_err(|_| ConfigError::BadKey("not a P-256 private key"))?;
        if curve != EllipticCurve::P256 {
            return Err(ConfigError::BadKey("not a P-256 private key"));
        }
        Self::asymmetric(Algorithm::ES256, Some(encoding), PublicKey::p256(&x, &y)?)
    }

    /// An EdDSA signing key from a PEM Ed25519 private key in PKCS#8 form (`PRIVATE KEY`).
    pub fn ed25519_pem(private_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = private_pem.as_ref();
        expect_label(
            pem,
            &[PRIVATE_PKCS8],
            "expected a PKCS#8 PEM private key (PRIVATE KEY)",
        )?;
        let encoding = EncodingKey::from_ed_pem(pem)
            .map_err(|_| ConfigError::BadKey("not a PEM Ed25519 private key"))?;
        let x = (PROVIDER.key_utils.ed_pub_components_from_private_key)(
            encoding.as_bytes(),
            &EllipticCurve::Ed25519,
        )
        .map_err(|_| ConfigError::BadKey("not an Ed25519 private key"))?;
        Self::asymmetric(Algorithm::EdDSA, Some(encoding), PublicKey::ed25519(&x)?)
    }

    /// A verify-only key for `alg` (RS256, PS256, ES256 or EdDSA) from a PEM public key (`PUBLIC KEY`, or
    /// `RSA PUBLIC KEY` for RSA). Its `kid` is the RFC 7638 thumbprint, as on the signing side.
    pub fn public_pem(alg: Algorithm, public_pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem = public_pem.as_ref();
        let public = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                expect_label(
                    pem,
                    &[PUBLIC_SPKI, "RSA PUBLIC KEY"],
                    "expected a PEM public key (PUBLIC KEY)",
                )?;
                let decoding = DecodingKey::from_rsa_pem(pem)
                    .map_err(|_| ConfigError::BadKey("not a PEM RSA public key"))?;
                let der = decoding
                    .try_get_as_bytes()
                    .map_err(|_| ConfigError::BadKey("not a PEM RSA public key"))?;
                let (n, e) = (PROVIDER.key_utils.rsa_pub_components_from_public_key)(der)
                    .map_err(|_| ConfigError::BadKey("not a PEM RSA public key"))?;
                PublicKey::rsa(&n, &e)?
            }
            Algorithm::ES256 => {
                expect_label(
                    pem,
                    &[PUBLIC_SPKI],
                    "expected a PEM public key (PUBLIC KEY)",
                )?;
                let decoding = DecodingKey::from_ec_pem(pem)
                    .map_err(|_| ConfigError::BadKey("not a PEM EC public key"))?;
                match decoding.try_get_as_bytes() {
                    Ok([0x04, point @ ..]) if point.len() == 64 => {
                        PublicKey::p256(&point[..32], &point[32..])?
                    }
                    _ => {
                        return Err(ConfigError::BadKey("not an uncompressed P-256 public key"));
                    }
                }
            }
            Algorithm::EdDSA => {
                expect_label(
                    pem,
                    &[PUBLIC_SPKI],
                    "expected a PEM public key (PUBLIC KEY)",
                )?;
                let decoding = DecodingKey::from_ed_pem(pem)
                    .map_err(|_| ConfigError::BadKey("not a PEM Ed25519 public key"))?;
                let x = decoding
                    .try_get_as_bytes()
                    .map_err(|_| ConfigError::BadKey("not a PEM Ed25519 public key"))?;
                PublicKey::ed25519(x)?
            }
            _ => {
                return Err(ConfigError::BadKey(
                    "public keys are RS256, PS256, ES256 or EdDSA",
                ));
            }
        };
        Self::asymmetric(alg, None, public)
    }

    /// A verify-only key from one JWK (a JSON object): `kty` `RSA` with `alg` `RS256` or `PS256`, `EC` with
    /// `crv` `P-256` and `alg` `ES256`, or `OKP` with `crv` `Ed25519` and `alg` `EdDSA`. `kid` and `alg` are
    /// required; `use`, when present, must be `sig`, and `key_ops`, when present, must include `verify`. Private
    /// members (`d`, RSA primes) and symmetric (`oct`) keys are refused: secrets never travel in a JWK.
    pub fn from_jwk(jwk: &Value) -> Result<Self, ConfigError> {
        let obj = jwk
            .as_object()
            .ok_or(ConfigError::BadKey("a JWK is a JSON object"))?;
        let text = |name: &str| -> Result<Option<&str>, ConfigError> {
            match obj.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(ConfigError::BadKey("a JWK member has the wrong JSON type")),
            }
        };
        let kty = text("kty")?.ok_or(ConfigError::BadKey("JWK without kty"))?;
        if kty == "oct" || obj.contains_key("k") {
            return Err(ConfigError::BadKey(
                "symmetric (oct) keys are never accepted from a JWK",
            ));
        }
        if ["d", "p", "q", "dp", "dq", "qi", "oth"]
            .iter()
            .any(|m| obj.contains_key(*m))
        {
            return Err(ConfigError::BadKey(
                "JWK holds private key material: publish public keys only",
            ));
        }
        let kid = text("kid")?.ok_or(ConfigError::BadKey("JWK without kid"))?;
        let alg_name = text("alg")?.ok_or(ConfigError::BadKey("JWK without alg"))?;
        if text("use")?.is_some_and(|u| u != "sig") {
            return Err(ConfigError::BadKey("JWK is not for signatures (use)"));
        }
        if let Some(ops) = obj.get("key_ops") {
            let verifies = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verifies {
                return Err(ConfigError::BadKey("JWK key_ops do not include verify"));
            }
        }
        let bytes = |name: &str| -> Result<Vec<u8>, ConfigError> {
            let value = text(name)?.ok_or(ConfigError::BadKey("JWK lacks a key member"))?;
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| ConfigError::BadKey("JWK key member is not base64url"))
        };
        let (alg, public) = match (kty, alg_name) {
            ("RSA", "RS256") => (
                Algorithm::RS256,
                PublicKey::rsa(&bytes("n")?, &bytes("e")?)?,
            ),
            ("RSA", "PS256") => (
                Algorithm::PS256,
                PublicKey::rsa(&bytes("n")?, &bytes("e")?)?,
            ),
            ("EC", "ES256") => {
                if text("crv")? != Some("P-256") {
                    return Err(ConfigError::BadKey("ES256 JWK must have crv P-256"));
                }
                (
                    Algorithm::ES256,
                    PublicKey::p256(&bytes("x")?, &bytes("y")?)?,
                )
            }
            ("OKP", "EdDSA") => {
                if text("crv")? != Some("Ed25519") {
                    return Err(ConfigError::BadKey("EdDSA JWK must have crv Ed25519"));
                }
                (Algorithm::EdDSA, PublicKey::ed25519(&bytes("x")?)?)
            }
            _ => {
                return Err(ConfigError::BadKey(
                    "unsupported JWK kty/alg (RSA RS256|PS256, EC ES256, OKP EdDSA)",
                ));
            }
        };
        Self::asymmetric(alg, None, public)?.with_kid(kid)
    }

    /// The same key under an explicit `kid` (printable ASCII, at most 64 bytes).
    pub fn with_kid(self, kid: impl Into<String>) -> Result<Self, ConfigError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let inner = &*self.inner;
        Ok(Self::assemble(
            kid,
            inner.alg,
            inner.encoding.clone(),
            inner.decoding.clone(),
            inner.binding_key,
            inner.public.clone(),
        ))
    }

    /// The same key without its signing half: it verifies codes but never signs. For an HMAC key this only stops
    /// this process from signing with it (the secret is the verifying key too).
    pub fn verify_only(&self) -> Self {
        if self.inner.encoding.is_none() {
            return self.clone();
        }
        let inner = &*self.inner;
        Self::assemble(
            inner.kid.clone(),
            inner.alg,
            None,
            inner.decoding.clone(),
            inner.binding_key,
            inner.public.clone(),
        )
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
            Some(binding_key),
            None,
        ))
    }

    fn rsa_private(alg: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        expect_label(
            pem,
            &[PRIVATE_PKCS8, "RSA PRIVATE KEY"],
            "expected a PEM private key (PRIVATE KEY or RSA PRIVATE KEY)",
        )?;
        let encoding = EncodingKey::from_rsa_pem(pem)
            .map_err(|_| ConfigError::BadKey("not a PEM RSA private key"))?;
        let (n, e) = (PROVIDER.key_utils.rsa_pub_components_from_private_key)(encoding.as_bytes())
            .map_err(|_| ConfigError::BadKey("not a PEM RSA private key"))?;
        Self::asymmetric(alg, Some(encoding), PublicKey::rsa(&n, &e)?)
    }

    /// An asymmetric key; the public key is checked by building a verifier for it (point on the curve, ...).
    fn asymmetric(
        alg: Algorithm,
        encoding: Option<EncodingKey>,
        public: PublicKey,
    ) -> Result<Self, ConfigError> {
        let decoding = public.decoding_key();
        (PROVIDER.verifier_factory)(&alg, &decoding)
            .map_err(|_| ConfigError::BadKey("public key does not fit the algorithm"))?;
        if let Some(encoding) = &encoding {
            (PROVIDER.signer_factory)(&alg, encoding)
                .map_err(|_| ConfigError::BadKey("private key does not fit the algorithm"))?;
        }
        Ok(Self::assemble(
            public.thumbprint(),
            alg,
            encoding,
            decoding,
            None,
            Some(public),
        ))
    }

    fn assemble(
        kid: String,
        alg: Algorithm,
        encoding: Option<EncodingKey>,
        decoding: DecodingKey,
        binding_key: Option<[u8; 32]>,
        public: Option<PublicKey>,
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
                public,
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

    /// Whether this key can sign (holds an HMAC secret or a private key).
    pub fn can_sign(&self) -> bool {
        self.inner.encoding.is_some()
    }

    /// Whether this is an asymmetric key (RS256, PS256, ES256, EdDSA), whose public half can be published.
    pub fn is_asymmetric(&self) -> bool {
        self.inner.public.is_some()
    }

    /// The public JWK of an asymmetric key (`kty`, `kid`, `alg`, `use: "sig"` and the public members); `None` for
    /// HMAC keys, which are never published.
    pub fn public_jwk(&self) -> Option<Value> {
        let public = self.inner.public.as_ref()?;
        let mut jwk = Map::new();
        for (name, value) in public.members() {
            jwk.insert(name.to_owned(), Value::String(value));
        }
        jwk.insert("kid".to_owned(), Value::String(self.inner.kid.clone()));
        jwk.insert("alg".to_owned(), Value::String(self.alg_name().to_owned()));
        jwk.insert("use".to_owned(), Value::String("sig".to_owned()));
        Some(Value::Object(jwk))
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url) of an asymmetric key's public key, whatever its `kid`.
    pub fn thumbprint(&self) -> Option<String> {
        self.inner.public.as_ref().map(PublicKey::thumbprint)
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

    fn binding_key(&self) -> Option<&[u8; 32]> {
        self.inner.binding_key.as_ref()
    }
}

fn check_kid(kid: &str) -> Result<(), ConfigError> {
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
    Ok(())
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
/// old one ([`KeySet::rotate`]); once every code signed with the old key has expired (the workflow's code lifetime
/// plus leeway), drop it ([`KeySet::without`]). With asymmetric keys and separate verifying services, publish the
/// next key first (as a previous key, so it is in [`jwks`](KeySet::jwks)) and rotate to it once every verifier
/// has loaded it.
///
/// Caller bindings are hashed with a binding key of the set. When the first current key is an HMAC key, it is
/// derived from its secret and kept across [`rotate`](KeySet::rotate), so that rotation does not break bindings of
/// codes in flight. Asymmetric and verify-only sets have no shared secret: set one with
/// [`with_binding_secret`](KeySet::with_binding_secret) (the same on every service of the workflow), or workflows
/// with a caller binding other than [`Binding::none`](crate::Binding::none) refuse to build.
#[derive(Clone)]
pub struct KeySet {
    current: Key,
    previous: Vec<Key>,
    binding_key: Option<[u8; 32]>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("current", &self.current)
            .field("previous", &self.previous)
            .field("binding_secret", &self.binding_key.is_some())
            .finish()
    }
}

/// Stands in for a missing binding key: random, per process. Workflows that bind refuse to build without a binding
/// key; should anything still be hashed without one (a state fingerprint attached on a service whose own workflow
/// has no state-bound step), the hash is unpredictable and matches nowhere else: it fails closed.
fn ephemeral_binding_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No system randomness: still unknown to code holders, and never equal to a configured key.
            let seed = format!(
                "{:?} {} {:p}",
                std::time::SystemTime::now(),
                std::process::id(),
                &key
            );
            key = Sha256::digest(seed.as_bytes()).into();
        }
        key
    })
}

impl KeySet {
    /// A set with one key, used to sign (if it can) and verify.
    pub fn new(current: Key) -> Self {
        Self {
            binding_key: current.binding_key().copied(),
            current,
            previous: Vec::new(),
        }
    }

    /// A set that only verifies, e.g. in a service that consumes codes another service issues: every key loses its
    /// signing half ([`Key::verify_only`]), and an [`Issuer`](crate::Issuer) of a workflow with this set fails to
    /// build. The first key stands as the current one. At least one key; `kid`s must be unique.
    pub fn verify_only(keys: impl IntoIterator<Item = Key>) -> Result<Self, ConfigError> {
        let mut keys = keys.into_iter();
        let first = keys.next().ok_or(ConfigError::NoKeys)?;
        let mut set = Self::new(first.verify_only());
        for key in keys {
            set = set.with_previous(key.verify_only())?;
        }
        Ok(set)
    }

    /// A verify-only set from a JWKS document (`{"keys":[...]}`, as [`jwks`](KeySet::jwks) writes it), given as
    /// bytes. Every key must pass [`Key::from_jwk`] (which refuses private and symmetric keys, and keys without
    /// `kid` or `alg`), `kid`s must be unique, and there must be at least one key. Nothing is ever fetched.
    pub fn from_jwks(document: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let doc: Value = serde_json::from_slice(document.as_ref())
            .map_err(|_| ConfigError::BadJwks("not a JSON document"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(ConfigError::BadJwks("no \"keys\" array"))?;
        if keys.is_empty() {
            return Err(ConfigError::BadJwks("no keys"));
        }
        let mut parsed = Vec::with_capacity(keys.len());
        for (index, jwk) in keys.iter().enumerate() {
            let key = Key::from_jwk(jwk).map_err(|err| match err {
                ConfigError::BadKey(reason) => ConfigError::BadJwk { index, reason },
                other => other,
            })?;
            parsed.push(key);
        }
        Self::verify_only(parsed)
    }

    /// [`from_jwks`](KeySet::from_jwks) from a file.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let document =
            std::fs::read(path).map_err(|_| ConfigError::BadJwks("cannot read the JWKS file"))?;
        Self::from_jwks(document)
    }

    /// The public JWKS document of every asymmetric key of the set, current first, each with `kid`, `alg` and
    /// `use: "sig"`. HMAC keys are never published. Serve it to verifying services (e.g. with
    /// `otac_axum::jwks_router`) or write it to a file they load with [`from_jwks`](KeySet::from_jwks).
    pub fn jwks(&self) -> Value {
        let keys = self.iter().filter_map(Key::public_jwk).collect();
        let mut doc = Map::new();
        doc.insert("keys".to_owned(), Value::Array(keys));
        Value::Object(doc)
    }

    /// Sets the secret caller bindings (and state fingerprints) are hashed with (at least 32 bytes). Every service
    /// of a workflow must use the same one. Needed for bound workflows whose set starts with an asymmetric or
    /// verify-only key.
    pub fn with_binding_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(ConfigError::WeakSecret {
                alg: "binding secret",
                min: 32,
            });
        }
        self.binding_key = Some(derive(secret, b"otac binding v1"));
        Ok(self)
    }

    pub(crate) fn binding_key(&self) -> &[u8; 32] {
        self.binding_key
            .as_ref()
            .unwrap_or_else(|| ephemeral_binding_key())
    }

    /// Whether caller bindings can be hashed: an HMAC first key or an explicit binding secret.
    pub(crate) fn has_binding_key(&self) -> bool {
        self.binding_key.is_some()
    }

    /// Whether the current key can sign new codes.
    pub(crate) fn can_sign(&self) -> bool {
        self.current.can_sign()
    }

    /// Adds a key that still verifies codes (or will: the next key, published before a rotation) but does not sign
    /// new ones.
    pub fn with_previous(mut self, key: Key) -> Result<Self, ConfigError> {
        if self.find(key.kid()).is_some() {
            return Err(ConfigError::DuplicateKid(key.kid().to_owned()));
        }
        self.previous.push(key);
        Ok(self)
    }

    /// Makes `new` the current key; the old current key moves to the previous keys. A previous key with the same
    /// `kid` (the next key, published ahead) is replaced by `new`. The binding key stays.
    pub fn rotate(self, new: Key) -> Result<Self, ConfigError> {
        let KeySet {
            current,
            mut previous,
            binding_key,
        } = self;
        previous.retain(|k| k.kid() != new.kid());
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

    /// The key new codes are signed with (in a verify-only set, the first key, which cannot sign).
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

    #[test]
    fn pem_labels() {
        assert_eq!(
            pem_label(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label(b"no pem here"), None);
    }

    #[test]
    fn rsa_public_key_checks() {
        let mut n = vec![0xffu8; 256];
        n[0] = 0x80;
        assert!(PublicKey::rsa(&n, &[1, 0, 1]).is_ok());
        // Leading zeros do not count, and are not published.
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        assert!(
            PublicKey::rsa(&padded, &[0, 1, 0, 1]).unwrap()
                == PublicKey::rsa(&n, &[1, 0, 1]).unwrap()
        );
        assert!(PublicKey::rsa(&n[1..], &[1, 0, 1]).is_err(), "2040 bits");
        assert!(PublicKey::rsa(&n, &[1]).is_err(), "e = 1");
        assert!(PublicKey::rsa(&n, &[2]).is_err(), "even e");
        assert!(PublicKey::rsa(&n, &[2, 0, 0, 0, 1]).is_err(), "e >= 2^33");
        let mut even = n.clone();
        even[255] = 0xfe;
        assert!(PublicKey::rsa(&even, &[1, 0, 1]).is_err());
    }

    #[test]
    fn key_set_without_hmac_key_has_no_binding_key() {
        let set = KeySet::new(Key::hs256([1u8; 32]).unwrap());
        assert!(set.has_binding_key() && set.can_sign());
        let verify = KeySet::verify_only([Key::hs256([1u8; 32]).unwrap()]).unwrap();
        assert!(!verify.can_sign());
        assert_eq!(verify.binding_key(), set.binding_key());
        assert!(KeySet::verify_only([]).is_err());
    }

    #[test]
    fn a_missing_binding_key_is_never_a_predictable_one() {
        let public = Key::hs256([1u8; 32]).unwrap();
        let mut set = KeySet::new(public);
        set.binding_key = None;
        assert!(!set.has_binding_key());
        assert_ne!(set.binding_key(), &[0u8; 32]);
        assert_eq!(
            set.binding_key(),
            set.clone().binding_key(),
            "stable in a process"
        );
        let with = set.with_binding_secret([3u8; 32]).unwrap();
        assert!(with.has_binding_key());
        assert_eq!(with.binding_key(), &derive(&[3u8; 32], b"otac binding v1"));
    }
}
