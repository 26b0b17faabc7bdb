//! Two workflows beyond onboarding, on axum:
//!
//! - **Changing the email of an authenticated account.** A bearer-token auth layer (the example's own) sits in
//!   front; `POST /email-change` issues a code bound to the authenticated principal, `POST /email-change/confirm`
//!   requires it. Another user's valid session presenting that code gets `403 otac_binding_mismatch`.
//! - **Pairing a device on an open API.** No login at all: `POST /device/start` issues a code bound to the
//!   `Device-Id` header, `POST /device/finish` accepts it only from the same device.
//!
//! | request | response |
//! |---|---|
//! | `POST /email-change` (bearer) `{"new_email"}` | 202 + code header (for `email-change-confirm`, bound to the user); emails a code to the new address |
//! | `POST /email-change/resend` (bearer) + code header | 202 + a new code header that replaces the old one; emails a new code |
//! | `POST /email-change/confirm` (bearer) + code header, `{"code"}` | 200 `{"user","email"}` |
//! | `GET /me` (bearer) | `{"user","email"}` |
//! | `POST /device/start` + `Device-Id` | 200 + code header (for `device-finish`, bound to the device) |
//! | `POST /device/finish` + `Device-Id` + code header | 200 `{"paired": true}` |
//! | `GET /_dev/outbox?user=…` | demo only: the emails sent for that user |

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderName, StatusCode, header::AUTHORIZATION};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use otac::{Binding, ConfigError, Consume, KeySet, OtacClaims, Principal, Replay, Step, Workflow};
use otac_axum::{AttachClaims, IssueOtacLayer, Otac, RequireOtacLayer};
use serde::Deserialize;
use serde_json::{Value, json};

/// The authenticated user, put into the request extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct User(pub String);

impl Principal for User {
    fn binding_id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

/// The device header of the pairing workflow.
pub const DEVICE_ID: HeaderName = HeaderName::from_static("device-id");

/// The email-change workflow: bound to the authenticated principal.
pub fn email_change_workflow(keys: KeySet, replay: Replay) -> Result<Workflow, ConfigError> {
    Workflow::builder("email-change")
        .issuer("otac-change-email-example")
        .keys(keys)
        .binding(Binding::principal::<User>())
        .replay(replay)
        // A resend replaces the code: the older one dies as soon as the new one is issued.
        .one_live_code(true)
        .revocation(true)
        .step(
            Step::new("email-change")
                .then("email-change-confirm")
                .then("email-change-resend"),
        )
        .step(
            Step::new("email-change-resend")
                .then("email-change-confirm")
                .then("email-change-resend")
                .consume(Consume::Replace),
        )
        .step(Step::new("email-change-confirm"))
        .build()
}

/// The device-pairing workflow: an open API, bound to the `Device-Id` header.
pub fn device_workflow(keys: KeySet, replay: Replay) -> Result<Workflow, ConfigError> {
    Workflow::builder("device-pairing")
        .issuer("otac-change-email-example")
        .keys(keys)
        .binding(Binding::header(DEVICE_ID))
        .replay(replay)
        .step(Step::new("device-start").then("device-finish"))
        .step(Step::new("device-finish"))
        .build()
}

/// Accounts, sessions and the outbox.
#[derive(Debug, Clone)]
pub struct Accounts {
    inner: Arc<Mutex<AccountsState>>,
}

#[derive(Debug)]
struct AccountsState {
    /// bearer token → user
    sessions: HashMap<String, String>,
    /// user → email
    emails: HashMap<String, String>,
    /// user → (pending email, code)
    pending: HashMap<String, (String, String)>,
    outbox: Vec<(String, String, String)>,
}

impl Default for Accounts {
    /// Two demo users: `alice` (bearer `alice-token`) and `bob` (bearer `bob-token`).
    fn default() -> Self {
        let sessions = [("alice-token", "alice"), ("bob-token", "bob")]
            .into_iter()
            .map(|(t, u)| (t.to_owned(), u.to_owned()))
            .collect();
        let emails = [("alice", "alice@example.com"), ("bob", "bob@example.com")]
            .into_iter()
            .map(|(u, e)| (u.to_owned(), e.to_owned()))
            .collect();
        Self {
            inner: Arc::new(Mutex::new(AccountsState {
                sessions,
                emails,
                pending: HashMap::new(),
                outbox: Vec::new(),
            })),
        }
    }
}

impl Accounts {
    fn lock(&self) -> MutexGuard<'_, AccountsState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "code": code }))).into_response()
}

/// The example's bearer-token authentication: a known token puts its [`User`] into the request extensions.
async fn authenticate(State(accounts): State<Accounts>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user = token.and_then(|t| accounts.lock().sessions.get(t).cloned());
    match user {
        Some(user) => {
            req.extensions_mut().insert(User(user));
            next.run(req).await
        }
        None => error(StatusCode::UNAUTHORIZED, "unauthenticated"),
    }
}

#[derive(Deserialize)]
struct NewEmail {
    new_email: String,
}

#[derive(Deserialize)]
struct Confirmation {
    code: String,
}

#[derive(Deserialize)]
struct OutboxQuery {
    user: String,
}

fn six_digits() -> String {
    let mut buf = [0u8; 4];
    getrandom::fill(&mut buf).expect("system randomness");
    format!("{:06}", u32::from_le_bytes(buf) % 1_000_000)
}

async fn start_email_change(
    State(accounts): State<Accounts>,
    Extension(User(user)): Extension<User>,
    Json(body): Json<NewEmail>,
) -> Response {
    let new_email = body.new_email.trim().to_owned();
    if !new_email.contains('@') || new_email.len() > 254 {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_email");
    }
    let code = six_digits();
    let mut state = accounts.lock();
    state
        .pending
        .insert(user.clone(), (new_email.clone(), code.clone()));
    state.outbox.push((user.clone(), new_email.clone(), code));
    // The code is bound to the principal by the workflow; the pending address rides along as a custom claim.
    let claims = OtacClaims::new().claim("new_email", new_email);
    (
        StatusCode::ACCEPTED,
        AttachClaims(claims),
        Json(json!({ "user": user })),
    )
        .into_response()
}

async fn resend_email_change(
    State(accounts): State<Accounts>,
    Extension(User(user)): Extension<User>,
    otac: Otac,
) -> Response {
    let Some(new_email) = otac.claim::<String>("new_email") else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "no_pending_change");
    };
    let code = six_digits();
    let mut state = accounts.lock();
    state
        .pending
        .insert(user.clone(), (new_email.clone(), code.clone()));
    state.outbox.push((user.clone(), new_email, code));
    // The issue layer continues the run with a new code (custom claims carried along); the old code is dead.
    (StatusCode::ACCEPTED, Json(json!({ "user": user }))).into_response()
}

async fn confirm_email_change(
    State(accounts): State<Accounts>,
    Extension(User(user)): Extension<User>,
    otac: Otac,
    Json(body): Json<Confirmation>,
) -> Response {
    let Some(new_email) = otac.claim::<String>("new_email") else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "no_pending_change");
    };
    let mut state = accounts.lock();
    let matches = state
        .pending
        .get(&user)
        .is_some_and(|(email, code)| *email == new_email && *code == body.code.trim());
    if !matches {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "wrong_verification_code");
    }
    state.pending.remove(&user);
    state.emails.insert(user.clone(), new_email.clone());
    Json(json!({ "user": user, "email": new_email })).into_response()
}

async fn me(
    State(accounts): State<Accounts>,
    Extension(User(user)): Extension<User>,
) -> Json<Value> {
    let email = accounts.lock().emails.get(&user).cloned();
    Json(json!({ "user": user, "email": email }))
}

async fn outbox(State(accounts): State<Accounts>, Query(q): Query<OutboxQuery>) -> Json<Value> {
    let state = accounts.lock();
    let messages: Vec<Value> = state
        .outbox
        .iter()
        .filter(|(u, _, _)| *u == q.user)
        .map(|(_, to, code)| json!({ "channel": "email", "to": to, "code": code }))
        .collect();
    Json(Value::Array(messages))
}

async fn device_start() -> Json<Value> {
    Json(json!({ "started": true }))
}

async fn device_finish(otac: Otac) -> Json<Value> {
    Json(json!({ "paired": true, "run": otac.run_id() }))
}

/// The service: the authenticated email-change routes and the open device-pairing routes.
pub fn router(email: &Workflow, device: &Workflow, accounts: Accounts) -> Router {
    let authenticated = Router::new()
        .route(
            "/email-change",
            post(start_email_change).layer(IssueOtacLayer::new(email, "email-change")),
        )
        .route(
            "/email-change/resend",
            post(resend_email_change)
                .layer(IssueOtacLayer::new(email, "email-change-resend"))
                .route_layer(RequireOtacLayer::new(email, "email-change-resend")),
        )
        .route(
            "/email-change/confirm",
            post(confirm_email_change)
                .route_layer(RequireOtacLayer::new(email, "email-change-confirm")),
        )
        .route("/me", get(me))
        // Authentication runs first, so the principal is in the extensions when the code layers look for it.
        .route_layer(middleware::from_fn_with_state(
            accounts.clone(),
            authenticate,
        ));
    let open = Router::new()
        .route(
            "/device/start",
            post(device_start).layer(IssueOtacLayer::new(device, "device-start")),
        )
        .route(
            "/device/finish",
            post(device_finish).route_layer(RequireOtacLayer::new(device, "device-finish")),
        )
        .route("/_dev/outbox", get(outbox));
    authenticated.merge(open).with_state(accounts)
}
