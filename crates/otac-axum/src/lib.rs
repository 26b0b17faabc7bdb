//! [axum] integration for [otac] one-time authorization codes.
//!
//! - [`IssueOtacLayer`] / [`RequireOtacLayer`]: the tower layers of the core, re-exported.
//! - [`Otac`]: extractor for the verified code of the request (`Option<Otac>` where the code is optional), and
//!   [`OtacCustom`] for its custom claims as a typed value.
//! - [`AttachClaims`]: a response part by which a handler adds a subject and custom claims to the code issued for
//!   its response.
//! - [`AbortRun`]: a response part by which a handler aborts the run (e.g. after too many wrong codes).
//! - [`OtacRejection`]: an [`OtacError`] as a problem+json response.
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use otac::{Binding, Key, KeySet, MemoryStore, OtacClaims, Replay, Step, Workflow};
//! use otac_axum::{AttachClaims, IssueOtacLayer, Otac, RequireOtacLayer};
//!
//! async fn verify_email() -> (AttachClaims, &'static str) {
//!     // ... check the emailed code, then bind the next code to the user:
//!     (AttachClaims(OtacClaims::new().subject("u_1").claim("user_id", "u_1")), "ok")
//! }
//!
//! async fn verify_mobile(otac: Otac) -> String {
//!     let user: String = otac.claim("user_id").unwrap_or_default();
//!     format!("verifying the mobile of {user} in run {}", otac.run_id())
//! }
//!
//! let workflow = Workflow::builder("onboarding")
//!     .keys(KeySet::new(Key::hs256(b"a secret of at least thirty-two bytes!")?))
//!     .binding(Binding::subject())
//!     .replay(Replay::store(MemoryStore::default()))
//!     .step(Step::new("verify-email").then("verify-mobile"))
//!     .step(Step::new("verify-mobile"))
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/verify-email", post(verify_email).layer(IssueOtacLayer::new(&workflow, "verify-email")))
//!     .route("/verify-mobile", post(verify_mobile).layer(RequireOtacLayer::new(&workflow, "verify-mobile")));
//! # Ok::<(), otac::ConfigError>(())
//! ```
//!
//! [axum]: https://docs.rs/axum
//! [otac]: https://docs.rs/otac
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::convert::Infallible;
use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http::request::Parts;
use serde::de::DeserializeOwned;

pub use otac::{
    Binding, Consume, IssueOtacLayer, Key, KeySet, MemoryStore, OtacClaims, OtacError,
    OtacErrorKind, Replay, RequireOtacLayer, Step, VerifiedOtac, Workflow,
};

/// The verified code of the request, as put there by [`RequireOtacLayer`].
///
/// Extracting it on a route without the layer is a server misconfiguration and answers 500. Use
/// `Option<Otac>` on routes where a code is optional.
#[derive(Clone, Debug)]
pub struct Otac(pub VerifiedOtac);

impl Deref for Otac {
    type Target = VerifiedOtac;
    fn deref(&self) -> &VerifiedOtac {
        &self.0
    }
}

/// Why [`Otac`] or [`OtacCustom`] could not be extracted.
#[derive(Debug)]
#[non_exhaustive]
pub enum OtacExtractRejection {
    /// No [`RequireOtacLayer`] ran for this route.
    MissingLayer,
    /// The custom claims do not have the shape the handler asked for.
    BadClaims,
}

impl IntoResponse for OtacExtractRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer => (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "route extracts a one-time authorization code but has no RequireOtacLayer",
            )
                .into_response(),
            Self::BadClaims => (
                http::StatusCode::UNPROCESSABLE_ENTITY,
                "one-time authorization code claims have an unexpected shape",
            )
                .into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Otac {
    type Rejection = OtacExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedOtac>()
            .cloned()
            .map(Otac)
            .ok_or(OtacExtractRejection::MissingLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Otac {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<VerifiedOtac>().cloned().map(Otac))
    }
}

/// The custom claims of the request's verified code, deserialised into `T`.
#[derive(Clone, Debug)]
pub struct OtacCustom<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for OtacCustom<T> {
    type Rejection = OtacExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verified = parts
            .extensions
            .get::<VerifiedOtac>()
            .ok_or(OtacExtractRejection::MissingLayer)?;
        verified
            .custom()
            .map(OtacCustom)
            .map_err(|_| OtacExtractRejection::BadClaims)
    }
}

/// Adds a subject and custom claims to the code the [`IssueOtacLayer`] issues for this response. Return it as a
/// response part: `(AttachClaims(claims), Json(body))`.
#[derive(Clone, Debug)]
pub struct AttachClaims(pub OtacClaims);

impl IntoResponseParts for AttachClaims {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self.0);
        Ok(res)
    }
}

/// Aborts the workflow run of the request's code, as a response part: `(AbortRun, StatusCode::TOO_MANY_REQUESTS)`.
/// The require layer revokes the run once the handler has answered; every later use of its codes answers
/// `otac_run_revoked`. Needs [`WorkflowBuilder::revocation`](otac::WorkflowBuilder::revocation).
#[derive(Clone, Copy, Debug, Default)]
pub struct AbortRun;

impl IntoResponseParts for AbortRun {
    type Error = Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(otac::AbortRun);
        Ok(res)
    }
}

/// An [`OtacError`] as a response: the default problem+json body, status and `WWW-Authenticate`.
///
/// Handlers can return it, e.g. to abort a step with a stable error code.
#[derive(Clone, Copy, Debug)]
pub struct OtacRejection(pub OtacError);

impl From<OtacError> for OtacRejection {
    fn from(err: OtacError) -> Self {
        Self(err)
    }
}

impl IntoResponse for OtacRejection {
    fn into_response(self) -> Response {
        let mut response = otac::problem_response(&self.0).map(axum::body::Body::from);
        response.extensions_mut().insert(self.0);
        response
    }
}

/// The media type of a JWKS document (RFC 7517 §8.5).
pub const JWKS_CONTENT_TYPE: &str = "application/jwk-set+json";

/// The public JWKS document of a key set, as a response: `application/jwk-set+json`, `Cache-Control: public,
/// max-age=300`. Built once; cheap to clone and to answer with.
///
/// Only asymmetric keys are in it (current and previous, see [`KeySet::jwks`]); HMAC secrets never are.
#[derive(Clone, Debug)]
pub struct Jwks(axum::body::Bytes);

impl Jwks {
    /// The document of `keys`, as it is now (rebuild it after a rotation).
    pub fn new(keys: &KeySet) -> Self {
        Self(keys.jwks().to_string().into())
    }

    /// The JSON document.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl IntoResponse for Jwks {
    fn into_response(self) -> Response {
        (
            [
                (http::header::CONTENT_TYPE, JWKS_CONTENT_TYPE),
                (http::header::CACHE_CONTROL, "public, max-age=300"),
            ],
            self.0,
        )
            .into_response()
    }
}

/// A `GET` (and `HEAD`) route that serves the public JWKS of `keys`, mounted where you choose, so verifying
/// services can load the public keys (e.g. with [`KeySet::from_jwks`] at startup or on rotation):
///
/// ```
/// use axum::Router;
/// use otac::{Key, KeySet};
///
/// # let pem = include_str!("../../otac/tests/keys/ec-a.pem");
/// let keys = KeySet::new(Key::es256_pem(pem)?);
/// let app: Router = Router::new().route("/.well-known/otac-jwks.json", otac_axum::jwks_route(&keys));
/// # Ok::<(), otac::ConfigError>(())
/// ```
///
/// The document is taken when the route is built: after a rotation, build the router again with the new set.
/// Publish a new key (as a previous key of the set) for at least the cache lifetime (5 minutes) and until every
/// verifier has loaded it before it starts signing.
pub fn jwks_route<S>(keys: &KeySet) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let document = Jwks::new(keys);
    axum::routing::get(move || {
        let document = document.clone();
        async move { document }
    })
}
