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
