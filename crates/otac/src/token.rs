//! Compact JWS encoding and the strict pre-signature parsing of codes.
//!
//! Parsing follows "reject before any signature work": size, shape, base64, a header that is a JSON object with no
//! duplicate members, exactly the members `alg`, `typ` and `kid`, a known `kid` whose pinned algorithm equals `alg`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use std::fmt;

use jsonwebtoken::crypto::CryptoProvider;

use crate::claims::Claims;
use crate::error::OtacError;
use crate::keys::{Key, KeySet};

/// The pure-Rust backend, named directly so that no process-wide provider has to be installed and a build that
/// also enables another backend still behaves the same.
static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

/// Signs `claims` (a [`Claims`], or a borrowed view that serialises as one) with `key` into a compact JWS.
pub(crate) fn encode<C: serde::Serialize>(key: &Key, claims: &C) -> Result<String, OtacError> {
    let encoding = key
        .encoding()
        .ok_or(OtacError::issue("the current key cannot sign"))?;
    let payload =
        serde_json::to_vec(claims).map_err(|_| OtacError::issue("claims do not serialise"))?;
    let header = key.header_b64();
    let mut token = String::with_capacity(header.len() + 2 + payload.len() * 4 / 3 + 100);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signer = (PROVIDER.signer_factory)(&key.algorithm(), encoding)
        .map_err(|_| OtacError::issue("the current key cannot sign"))?;
    let signature = signer
        .try_sign(token.as_bytes())
        .map_err(|_| OtacError::issue("signing failed"))?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// Verifies a code's form, header and signature, then decodes its claims. Claim checks (issuer, time, audience,
/// binding) are the caller's.
pub(crate) fn decode<'k>(
    token: &str,
    keys: &'k KeySet,
    max_len: usize,
) -> Result<(&'k Key, Claims), OtacError> {
    if token.len() > max_len {
        return Err(OtacError::malformed("code exceeds the size limit"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OtacError::malformed("not a compact JWS"));
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(OtacError::malformed("not a compact JWS"));
    }
    let key = match own_header(header_b64, keys) {
        Some(key) => key?,
        None => checked_header(header_b64, keys)?,
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| OtacError::malformed("signature is not base64url"))?;
    let message_len = header_b64.len() + 1 + payload_b64.len();
    let message = &token.as_bytes()[..message_len];
    let verifier = (PROVIDER.verifier_factory)(&key.algorithm(), key.decoding())
        .map_err(|_| OtacError::invalid("key cannot verify"))?;
    verifier
        .verify(message, &signature)
        .map_err(|_| OtacError::invalid("signature does not verify"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| OtacError::malformed("payload is not base64url"))?;
    // RFC 7519: the claims are a JSON object (serde would also read a struct from an array).
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(OtacError::malformed("claims are not a JSON object"));
    }
    let claims: Claims = serde_json::from_slice(&payload)
        .map_err(|_| OtacError::malformed("claims are not valid"))?;
    Ok((key, claims))
}

/// The fast path of the header checks: a header byte for byte the one a key of `keys` signs with (the header of
/// every code this key set issued) is the JSON `{"alg":..,"typ":"otac+jwt","kid":..}` of that key, so decoding
/// and parsing it would give exactly that: the answer of [`checked_header`] without the base64 and JSON work.
/// `None` for any other header, which takes the full checks.
fn own_header<'k>(header_b64: &str, keys: &'k KeySet) -> Option<Result<&'k Key, OtacError>> {
    let issued = keys.iter().find(|k| k.header_b64() == header_b64)?;
    // A kid is printable ASCII without quotes or backslashes, so it reads back from the JSON as it is; a key made
    // in some other way takes the full checks.
    let kid = issued.kid();
    if !kid
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return None;
    }
    // As the full checks: the key found by that kid, whose algorithm the header names.
    let key = keys.find(kid)?;
    Some(if key.alg_name() == issued.alg_name() {
        Ok(key)
    } else {
        Err(OtacError::invalid("algorithm not allowed for this key"))
    })
}

/// The full header checks: base64url, a JSON object without duplicate members, only `alg`, `typ`, `kid`, the
/// code type, a known kid, and the algorithm pinned to that key.
fn checked_header<'k>(header_b64: &str, keys: &'k KeySet) -> Result<&'k Key, OtacError> {
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| OtacError::malformed("header is not base64url"))?;
    let header = parse_header(&header_json)?;
    if header.forbidden {
        return Err(OtacError::invalid("header member not allowed"));
    }
    if header.typ.as_deref() != Some(crate::TOKEN_TYPE) {
        return Err(OtacError::invalid("wrong typ"));
    }
    let kid = header.kid.ok_or(OtacError::invalid("no kid"))?;
    let key = keys.find(&kid).ok_or(OtacError::invalid("unknown kid"))?;
    // The key pins the algorithm; the header must name exactly that one (so `none` and key confusion never verify).
    if header.alg.as_deref() != Some(key.alg_name()) {
        return Err(OtacError::invalid("algorithm not allowed for this key"));
    }
    Ok(key)
}

/// Decodes the claims without verifying anything. For diagnostics only.
pub(crate) fn decode_unverified(token: &str) -> Option<Claims> {
    let payload_b64 = token.split('.').nth(1)?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
    serde_json::from_slice(&payload).ok()
}

#[derive(Default)]
struct Header {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    /// Any member other than `alg`, `typ`, `kid` (`jku`, `x5u`, `jwk`, `crit`, ...).
    forbidden: bool,
}

fn parse_header(json: &[u8]) -> Result<Header, OtacError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let header = (&mut de).deserialize_map(HeaderVisitor).map_err(|_| {
        OtacError::malformed("header is not a JSON object without duplicate members")
    })?;
    de.end()
        .map_err(|_| OtacError::malformed("trailing data after the header"))?;
    Ok(header)
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut header = Header::default();
        let mut seen: Vec<String> = Vec::with_capacity(3);
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom("duplicate header member"));
            }
            match name.as_str() {
                "alg" => header.alg = Some(map.next_value()?),
                "typ" => header.typ = Some(map.next_value()?),
                "kid" => header.kid = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    header.forbidden = true;
                }
            }
            seen.push(name);
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_rules() {
        assert!(parse_header(br#"{"alg":"HS256","typ":"otac+jwt","kid":"k"}"#).is_ok());
        let dup = parse_header(br#"{"alg":"HS256","alg":"none","kid":"k"}"#);
        assert_eq!(dup.err().map(|e| e.code()), Some("otac_malformed"));
        assert!(parse_header(br#"[1]"#).is_err());
        assert!(parse_header(br#"{"alg":1}"#).is_err());
        assert!(parse_header(br#"{"alg":"HS256"} x"#).is_err());
        assert!(
            parse_header(br#"{"alg":"HS256","jku":"https://x"}"#)
                .unwrap()
                .forbidden
        );
    }

    #[test]
    fn own_headers_take_the_fast_path_to_the_same_key() {
        let keys = KeySet::new(Key::hs256([3u8; 32]).unwrap())
            .with_previous(Key::hs256([4u8; 32]).unwrap().with_kid("old").unwrap())
            .unwrap();
        for key in keys.iter() {
            let fast = own_header(key.header_b64(), &keys).unwrap().unwrap();
            let full = checked_header(key.header_b64(), &keys).unwrap();
            assert_eq!(fast.kid(), key.kid());
            assert_eq!(full.kid(), key.kid());
        }
        // Any other header, even one that means the same, takes the full checks.
        let spaced = b64(&format!(
            r#"{{"alg":"HS256", "typ":"otac+jwt","kid":"{}"}}"#,
            keys.current().kid()
        ));
        assert!(own_header(&spaced, &keys).is_none());
        assert_eq!(
            checked_header(&spaced, &keys).unwrap().kid(),
            keys.current().kid()
        );
        let other = KeySet::new(Key::hs256([5u8; 32]).unwrap());
        assert!(own_header(other.current().header_b64(), &keys).is_none());
    }

    #[test]
    fn shape_rules() {
        let keys = KeySet::new(Key::hs256([3u8; 32]).unwrap());
        let code = |t: &str| decode(t, &keys, 4096).err().map(|e| e.code());
        assert_eq!(code("a.b"), Some("otac_malformed"));
        assert_eq!(code("a.b.c.d"), Some("otac_malformed"));
        assert_eq!(code("..."), Some("otac_malformed"));
        assert_eq!(code("!!.b.c"), Some("otac_malformed"));
        assert_eq!(code(&"a".repeat(5000)), Some("otac_malformed"));
        let none = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"none","typ":"otac+jwt","kid":"x"}"#),
            b64("{}")
        );
        assert_eq!(code(&none), Some("otac_invalid"));
    }
}
