//! Caller binding: who a code was issued to.
//!
//! The issuing side records who the caller is; the verifying side recomputes it from the new request and compares.
//! A code carries only a keyed hash (HMAC-SHA256) of the binding value, never the value itself.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{COOKIE, HeaderName};
use http::request::Parts;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// An authenticated principal that an authentication layer put into the request extensions.
///
/// Implement it for your principal type and bind with [`Binding::principal`].
pub trait Principal: Clone + Send + Sync + 'static {
    /// A stable identifier of the principal (user id, client id). Hashed before it goes into a code.
    fn binding_id(&self) -> Cow<'_, str>;
}

type PartsFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// How codes are bound to their caller. Chosen per workflow; "no binding" is [`Binding::none`], never a default.
#[derive(Clone)]
pub struct Binding(pub(crate) BindingKind);

#[derive(Clone)]
pub(crate) enum BindingKind {
    None,
    Subject,
    Header(HeaderName),
    Cookie(Arc<str>),
    Extension(fn(&http::Extensions) -> Option<String>),
    Custom(Arc<PartsFn>),
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            BindingKind::None => f.write_str("Binding::None"),
            BindingKind::Subject => f.write_str("Binding::Subject"),
            BindingKind::Header(name) => write!(f, "Binding::Header({name})"),
            BindingKind::Cookie(name) => write!(f, "Binding::Cookie({name})"),
            BindingKind::Extension(_) => f.write_str("Binding::Principal"),
            BindingKind::Custom(_) => f.write_str("Binding::Custom"),
        }
    }
}

impl Binding {
    /// No caller binding: whoever holds the code may use it. An explicit choice for flows where possession is the
    /// only proof there is.
    pub fn none() -> Self {
        Self(BindingKind::None)
    }

    /// Bound to a subject the issuing step's handler names (e.g. the user id whose email it just verified), with
    /// [`OtacClaims::subject`](crate::OtacClaims::subject). Later codes of the run keep the subject. A handler that
    /// names no subject gets no code (fail closed); step N+1's handler can check a candidate with
    /// [`VerifiedOtac::subject_is`](crate::VerifiedOtac::subject_is).
    pub fn subject() -> Self {
        Self(BindingKind::Subject)
    }

    /// Bound to the value of a request header (e.g. a device id). A missing or repeated header binds to nothing and
    /// fails closed.
    pub fn header(name: HeaderName) -> Self {
        Self(BindingKind::Header(name))
    }

    /// Bound to the value of a cookie (e.g. a session id). A missing or repeated cookie fails closed.
    pub fn cookie(name: impl Into<String>) -> Self {
        Self(BindingKind::Cookie(name.into().into()))
    }

    /// Bound to the authenticated principal `P` that an authentication layer put into the request extensions.
    pub fn principal<P: Principal>() -> Self {
        fn lookup<P: Principal>(ext: &http::Extensions) -> Option<String> {
            ext.get::<P>().map(|p| p.binding_id().into_owned())
        }
        Self(BindingKind::Extension(lookup::<P>))
    }

    /// Bound to whatever a closure derives from the request (`None` fails closed).
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self(BindingKind::Custom(Arc::new(f)))
    }

    /// Whether the binding value comes from the request itself (header, cookie, principal, closure).
    pub(crate) fn is_request_derived(&self) -> bool {
        !matches!(self.0, BindingKind::None | BindingKind::Subject)
    }

    /// The binding value of a request, for request-derived bindings.
    pub(crate) fn value<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, [u8]>> {
        match &self.0 {
            BindingKind::None | BindingKind::Subject => None,
            BindingKind::Header(name) => {
                let mut values = parts.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) if !v.is_empty() => Some(Cow::Borrowed(v.as_bytes())),
                    _ => None,
                }
            }
            BindingKind::Cookie(name) => cookie(parts, name).map(|v| Cow::Borrowed(v.as_bytes())),
            BindingKind::Extension(lookup) => {
                lookup(&parts.extensions).map(|v| Cow::Owned(v.into_bytes()))
            }
            BindingKind::Custom(f) => f(parts).map(|v| Cow::Owned(v.into_bytes())),
        }
    }
}

/// What the `Cookie` headers hold under one name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieLookup<'a> {
    Absent,
    One(&'a str),
    Many,
}

/// The cookie named `name` in `headers` (quotes around the value removed).
pub(crate) fn find_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> CookieLookup<'a> {
    let mut found = CookieLookup::Absent;
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            let Some((n, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if n == name {
                if found != CookieLookup::Absent {
                    return CookieLookup::Many;
                }
                found = CookieLookup::One(v.trim_matches('"'));
            }
        }
    }
    found
}

/// The single cookie named `name`; none when absent, empty or present more than once.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    match find_cookie(&parts.headers, name) {
        CookieLookup::One(v) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// base64url(HMAC-SHA256(key, label || workflow || 0 || value)).
fn keyed_hash(key: &[u8; 32], label: &[u8], workflow: &str, value: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(label);
    mac.update(workflow.as_bytes());
    mac.update(&[0]);
    mac.update(value);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The `sub` claim for a binding value.
pub(crate) fn subject_hash(key: &[u8; 32], workflow: &str, value: &[u8]) -> String {
    keyed_hash(key, b"otac sub v1\0", workflow, value)
}

/// The `sfp` claim for a server-state fingerprint, in a namespace apart from subjects.
pub(crate) fn state_hash(key: &[u8; 32], workflow: &str, fingerprint: &[u8]) -> String {
    keyed_hash(key, b"otac sfp v1\0", workflow, fingerprint)
}

/// Constant-time equality of two `sub` values.
pub(crate) fn same_subject(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_binding_needs_exactly_one_value() {
        let b = Binding::header(HeaderName::from_static("device-id"));
        assert_eq!(
            b.value(&parts(&[("device-id", "d1")])).as_deref(),
            Some(&b"d1"[..])
        );
        assert!(b.value(&parts(&[])).is_none());
        assert!(
            b.value(&parts(&[("device-id", "d1"), ("device-id", "d2")]))
                .is_none()
        );
    }

    #[test]
    fn cookie_binding_finds_one_cookie() {
        let b = Binding::cookie("sid");
        assert_eq!(
            b.value(&parts(&[("cookie", "a=1; sid=s2")])).as_deref(),
            Some(&b"s2"[..])
        );
        assert!(b.value(&parts(&[("cookie", "sid=1; sid=2")])).is_none());
        assert!(b.value(&parts(&[("cookie", "sidx=1")])).is_none());
    }

    #[test]
    fn principal_binding_reads_extensions() {
        #[derive(Clone)]
        struct User(String);
        impl Principal for User {
            fn binding_id(&self) -> Cow<'_, str> {
                Cow::Borrowed(&self.0)
            }
        }
        let b = Binding::principal::<User>();
        let mut p = parts(&[]);
        assert!(b.value(&p).is_none());
        p.extensions.insert(User("u1".into()));
        assert_eq!(b.value(&p).as_deref(), Some(&b"u1"[..]));
    }

    #[test]
    fn subject_hash_is_keyed_and_hides_the_value() {
        let a = subject_hash(&[1; 32], "wf", b"alice@example.com");
        let b = subject_hash(&[2; 32], "wf", b"alice@example.com");
        assert_ne!(a, b);
        assert!(!a.contains("alice"));
        assert!(same_subject(&a, &a.clone()));
        assert!(!same_subject(&a, &b));
        assert_ne!(a, subject_hash(&[1; 32], "wf2", b"alice@example.com"));
    }
}
