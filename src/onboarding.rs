//! The consumer onboarding workflow on axum: the HTTP contract of the design note.
//!
//! | request | response |
//! |---|---|
//! | `POST /invitations` `{"email","mobile"}` | 201 `{"user_id"}`; queues an email code |
//! | `GET /_dev/outbox?user_id=…` | the messages sent to the user, oldest first |
//! | `POST /verify-email` `{"user_id","code"}` | 200 + code header (for `verify-mobile`, bound to the user) |
//! | `POST /verify-mobile` + code header, `{"code"}` | 200 + code header (for `set-password`); the third wrong SMS code aborts the run (429, then `otac_run_revoked`) |
//! | `POST /set-password` + code header, `{"password"}` | 204; the user is active |
//! | `GET /users/{id}` | `{"user_id","status","email_verified","mobile_verified"}` |

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use otac::{OtacClaims, Workflow};
use otac_axum::{AbortRun, AttachClaims, IssueOtacLayer, Otac, RequireOtacLayer};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

/// The longest a request may take; well below the workflow's 30 s reservation lease.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

use crate::domain::{
    Directory, DomainError, EmailVerification, Invitation, MobileVerification, NewPassword,
    OutboxQuery,
};

impl IntoResponse for DomainError {
    fn into_response(self) -> Response {
        if let Some(err) = self.otac_error() {
            return otac_axum::OtacRejection(err).into_response();
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        (status, Json(self.body())).into_response()
    }
}

async fn invite(
    State(dir): State<Directory>,
    Json(body): Json<Invitation>,
) -> Result<Response, DomainError> {
    let user_id = dir.invite(&body.email, &body.mobile)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "user_id": user_id })),
    )
        .into_response())
}

async fn outbox(State(dir): State<Directory>, Query(q): Query<OutboxQuery>) -> Response {
    Json(dir.outbox(&q.user_id)).into_response()
}

async fn verify_email(
    State(dir): State<Directory>,
    Json(body): Json<EmailVerification>,
) -> Result<(AttachClaims, Json<serde_json::Value>), DomainError> {
    dir.verify_email(&body.user_id, &body.code)?;
    // The next code is bound to this user, and tells the next step who it is.
    let claims = OtacClaims::new()
        .subject(body.user_id.clone())
        .claim("user_id", body.user_id.clone());
    Ok((
        AttachClaims(claims),
        Json(serde_json::json!({ "user_id": body.user_id, "email_verified": true })),
    ))
}

/// The user id the code names. Codes of this workflow always carry it; one without is refused like a mismatch.
fn user_of(otac: &Otac) -> Result<String, DomainError> {
    otac.claim::<String>("user_id")
        .filter(|id| otac.subject_is(id))
        .ok_or(DomainError::NotBound)
}

async fn verify_mobile(
    State(dir): State<Directory>,
    otac: Otac,
    Json(body): Json<MobileVerification>,
) -> Result<Json<serde_json::Value>, Response> {
    let user_id = user_of(&otac).map_err(IntoResponse::into_response)?;
    match dir.verify_mobile(&user_id, &body.code) {
        Ok(()) => Ok(Json(
            serde_json::json!({ "user_id": user_id, "mobile_verified": true }),
        )),
        // Too many wrong SMS codes: the run is over, its codes answer `otac_run_revoked` from now on.
        Err(err @ DomainError::TooManyAttempts) => Err((AbortRun, err).into_response()),
        Err(err) => Err(err.into_response()),
    }
}

async fn set_password(
    State(dir): State<Directory>,
    otac: Otac,
    Json(body): Json<NewPassword>,
) -> Result<StatusCode, DomainError> {
    let user_id = user_of(&otac)?;
    dir.set_password(&user_id, &body.password)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user(
    State(dir): State<Directory>,
    Path(id): Path<String>,
) -> Result<Response, DomainError> {
    dir.user(&id)
        .map(|u| Json(u).into_response())
        .ok_or(DomainError::UnknownUser)
}

/// The onboarding service for `workflow` (see [`crate::config::onboarding_workflow`]).
pub fn router(workflow: &Workflow, directory: Directory) -> Router {
    let openapi = crate::openapi::onboarding_openapi_json(workflow);
    Router::new()
        .route("/invitations", post(invite))
        .route("/_dev/outbox", get(outbox))
        .route(
            "/verify-email",
            post(verify_email).layer(IssueOtacLayer::new(workflow, "verify-email")),
        )
        .route(
            "/verify-mobile",
            post(verify_mobile)
                .layer(IssueOtacLayer::new(workflow, "verify-mobile"))
                .route_layer(RequireOtacLayer::new(workflow, "verify-mobile")),
        )
        .route(
            "/set-password",
            post(set_password).route_layer(RequireOtacLayer::new(workflow, "set-password")),
        )
        .route("/users/{id}", get(user))
        .route(
            "/openapi.json",
            get(move || {
                std::future::ready(([(CONTENT_TYPE, "application/json")], openapi.clone()))
            }),
        )
        .with_state(directory)
        // Every request ends well inside the reservation lease of consume-on-success: a handler still running
        // when its lease ran out would let a second request with the same code in.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// CORS for a browser page on `origin`: preflights allow the code header and JSON bodies; responses expose the code
/// header so page script can read it.
pub fn cors(workflow: &Workflow, origin: &str) -> Result<CorsLayer, String> {
    let origin = HeaderValue::from_str(origin)
        .map_err(|_| format!("OTAC_CORS_ORIGIN `{origin}` is not valid"))?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::exact(origin))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([CONTENT_TYPE, workflow.header().clone()])
        .expose_headers([workflow.header().clone()]))
}
