//! [actix-web] integration for [otac] one-time authorization codes.
//!
//! A thin adapter over the framework-neutral core: the same [`Workflow`] object configures both frameworks, and
//! the middleware call the same [`Verifier`](otac::Verifier) and [`Issuer`](otac::Issuer) as the tower layers, so
//! the checks, the caller binding and the one-time use are the core's, not a second copy.
//!
//! - [`IssueOtacLayer`] / [`RequireOtacLayer`]: `Transform` middleware with the constructors of the tower layers
//!   of the same names; a workflow moves between axum and actix-web by changing the import. Use them with
//!   `.wrap(..)` on an `App`, a [`web::scope`](actix_web::web::scope) or a [`web::resource`](actix_web::web::resource).
//! - [`Otac`]: extractor for the verified code of the request (`Option<Otac>` where the code is optional), and
//!   [`OtacCustom`] for its custom claims as a typed value.
//! - [`AttachClaims`]: a [`Responder`] wrapper by which a handler adds a subject and custom claims to the code
//!   issued for its response. Without it, insert the [`OtacClaims`] into the response extensions:
//!   `response.extensions_mut().insert(claims)`.
//! - [`AbortRun`]: a [`Responder`] wrapper by which a handler aborts the run (e.g. after too many wrong codes).
//! - [`OtacRejection`]: an [`OtacError`] as a [`ResponseError`]: the problem+json body, status and
//!   `WWW-Authenticate` of the axum adapter, also after conversion into [`actix_web::Error`].
//!
//! ```
//! use actix_web::{App, HttpResponse, Responder, web};
//! use otac::{Binding, Key, KeySet, MemoryStore, OtacClaims, Replay, Step, Workflow};
//! use otac_actix::{AttachClaims, IssueOtacLayer, Otac, RequireOtacLayer};
//!
//! async fn verify_email() -> impl Responder {
//!     // ... check the emailed code, then bind the next code to the user:
//!     AttachClaims(OtacClaims::new().subject("u_1").claim("user_id", "u_1"), "ok")
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
//! // Build the app in the factory of `HttpServer::new(move || ..)`; the layers are `Clone + Send`.
//! let app = App::new()
//!     .service(
//!         web::resource("/verify-email")
//!             .wrap(IssueOtacLayer::new(&workflow, "verify-email"))
//!             .route(web::post().to(verify_email)),
//!     )
//!     .service(
//!         web::resource("/verify-mobile")
//!             .wrap(RequireOtacLayer::new(&workflow, "verify-mobile"))
//!             .route(web::post().to(verify_mobile)),
//!     );
//! # drop(app);
//! # Ok::<(), otac::ConfigError>(())
//! ```
//!
//! # Where to wrap
//!
//! `.wrap(..)` on a `web::scope` or `web::resource` checks every request that reaches it, whatever its method.
//! To guard one route only, wrap the route: `web::post().to(handler).wrap(RequireOtacLayer::new(..))` (like
//! axum's `route_layer`: a request with another method gets the resource's 405 without any code check).
//!
//! # Middleware order
//!
//! In actix-web the middleware wrapped *last* runs *first*. On a step that both requires and issues a code, wrap
//! the [`IssueOtacLayer`] first and the [`RequireOtacLayer`] last, so a rejected request is answered before the
//! handler (the other order works too: the issue middleware then finds the verified code on the response).
//!
//! # `http` versions
//!
//! actix-web 4 uses `http` 0.2, the core `http` 1. The middleware hand the core an `http` 1
//! [`Parts`](http::request::Parts) with the method, URI, version and headers of the request, the code a
//! [`RequireOtacLayer`] further out verified, and the actix request extensions you name with
//! [`RequireOtacLayer::principal`] / [`RequireOtacLayer::extension`] (and the same methods of
//! [`IssueOtacLayer`]); everything else in the actix extensions stays invisible to the core. A
//! [`Binding::header`], [`Binding::cookie`] or [`Binding::from_fn`] over those parts needs nothing more.
//!
//! [actix-web]: https://docs.rs/actix-web
//! [otac]: https://docs.rs/otac
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod compat;
pub mod issue;
pub mod require;

use std::fmt;
use std::future::{Ready, ready};
use std::ops::Deref;

use actix_web::body::BoxBody;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{
    FromRequest, HttpMessage as _, HttpRequest, HttpResponse, Responder, ResponseError,
};
use serde::de::DeserializeOwned;

pub use issue::IssueOtacLayer;
pub use otac::{
    Binding, Consume, Key, KeySet, MemoryStore, OtacClaims, OtacError, OtacErrorKind, Principal,
    Replay, Step, VerifiedOtac, Workflow,
};
pub use require::RequireOtacLayer;

/// The verified code of the request, as put there by [`RequireOtacLayer`].
///
/// Extracting it on a route without the middleware is a server misconfiguration and answers 500. Use
/// `Option<Otac>` on routes where a code is optional: actix-web's `FromRequest` for `Option<T>` turns the missing
/// code into `None`.
#[derive(Clone, Debug)]
pub struct Otac(pub VerifiedOtac);

impl Deref for Otac {
    type Target = VerifiedOtac;
    fn deref(&self) -> &VerifiedOtac {
        &self.0
    }
}

impl FromRequest for Otac {
    type Error = OtacExtractRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<VerifiedOtac>()
                .cloned()
                .map(Otac)
                .ok_or(OtacExtractRejection::MissingLayer),
        )
    }
}

/// The custom claims of the request's verified code, deserialised into `T`.
#[derive(Clone, Debug)]
pub struct OtacCustom<T>(pub T);

impl<T: DeserializeOwned> FromRequest for OtacCustom<T> {
    type Error = OtacExtractRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let extensions = req.extensions();
        ready(match extensions.get::<VerifiedOtac>() {
            None => Err(OtacExtractRejection::MissingLayer),
            Some(verified) => verified
                .custom()
                .map(OtacCustom)
                .map_err(|_| OtacExtractRejection::BadClaims),
        })
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

impl fmt::Display for OtacExtractRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingLayer => {
                "route extracts a one-time authorization code but has no RequireOtacLayer"
            }
            Self::BadClaims => "one-time authorization code claims have an unexpected shape",
        })
    }
}

impl std::error::Error for OtacExtractRejection {}

impl ResponseError for OtacExtractRejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadClaims => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// A [`Responder`] that adds a subject and custom claims to the code the [`IssueOtacLayer`] issues for its
/// response: `AttachClaims(claims, web::Json(body))`. The inner responder's status, headers and body are kept.
#[derive(Clone, Debug)]
pub struct AttachClaims<R>(pub OtacClaims, pub R);

impl<R: Responder> Responder for AttachClaims<R> {
    type Body = R::Body;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse<Self::Body> {
        let mut response = self.1.respond_to(req);
        response.extensions_mut().insert(self.0);
        response
    }
}

/// A [`Responder`] that aborts the workflow run of the request's code: `AbortRun(HttpResponse::TooManyRequests()
/// .finish())`. The [`RequireOtacLayer`] revokes the run once the handler has answered; every later use of its
/// codes answers `otac_run_revoked`. Needs [`WorkflowBuilder::revocation`](otac::WorkflowBuilder::revocation).
///
/// From a [`ResponseError::error_response`], insert [`otac::AbortRun`] into the response extensions instead.
#[derive(Clone, Debug)]
pub struct AbortRun<R>(pub R);

impl<R: Responder> Responder for AbortRun<R> {
    type Body = R::Body;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse<Self::Body> {
        let mut response = self.0.respond_to(req);
        response.extensions_mut().insert(otac::AbortRun);
        response
    }
}

/// An [`OtacError`] as a response: the default problem+json body, status and `WWW-Authenticate` (the same as the
/// axum adapter's `OtacRejection`).
///
/// Handlers can return it, e.g. to abort a step with a stable error code; it keeps its status and body when it
/// is converted into [`actix_web::Error`] (by `?` or `.into()`).
#[derive(Clone, Copy, Debug)]
pub struct OtacRejection(pub OtacError);

impl From<OtacError> for OtacRejection {
    fn from(err: OtacError) -> Self {
        Self(err)
    }
}

impl fmt::Display for OtacRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for OtacRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl ResponseError for OtacRejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = compat::response(otac::problem_response(&self.0));
        response.extensions_mut().insert(self.0);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;

    #[test]
    fn layers_can_be_built_outside_the_server_factory() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<IssueOtacLayer>();
        shareable::<RequireOtacLayer>();
    }

    #[test]
    fn rejection_keeps_status_and_body_as_actix_error() {
        let err = OtacError::new(OtacErrorKind::WrongStep, "code is for another step");
        let error = actix_web::Error::from(OtacRejection(err));
        assert_eq!(
            error.as_response_error().status_code(),
            StatusCode::FORBIDDEN
        );
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let body = response.into_body().try_into_bytes().unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(json["code"], "otac_wrong_step");
        assert_eq!(json["status"], 403);
    }

    #[test]
    fn unauthorized_rejection_names_its_code_in_www_authenticate() {
        let err = OtacError::new(OtacErrorKind::Replayed, "code already used");
        let response = OtacRejection(err).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let www = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(www.contains("otac_replayed"), "{www}");
        assert!(response.extensions().get::<OtacError>().is_some());
    }
}
