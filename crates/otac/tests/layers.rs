//! The tower layers around a trivial `service_fn` handler: issuing on success only, rejecting before the handler,
//! one-time use (before the handler and on success), concurrency, failing stores and what a rejection reveals.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::{
    ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_TYPE, HeaderName, WWW_AUTHENTICATE,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{
    Binding, Consume, IssueOtacLayer, Key, KeySet, MemoryStore, OtacClaims, OtacError, Replay,
    ReplayStore, RequireOtacLayer, Step, StoreError, VerifiedOtac, Workflow,
};
use serde_json::{Value, json};
use sha2::Sha256;
use tower::{Layer, Service, ServiceExt};

type Body = Full<Bytes>;

const SECRET: &[u8] = b"the test secret, at least thirty-two bytes long";
const ISS: &str = "accounts.test";
const WF: &str = "onboarding";
const HEADER: &str = "one-time-authorization-code";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> Key {
    Key::hs256(SECRET).unwrap()
}

struct Config {
    binding: Binding,
    replay: Replay,
    consume: Consume,
    expose: bool,
    leeway: Duration,
    lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            binding: Binding::none(),
            replay: Replay::store(MemoryStore::new(4096)),
            consume: Consume::BeforeHandler,
            expose: false,
            leeway: Duration::from_secs(5),
            lease: Duration::from_secs(30),
        }
    }
}

/// invite → verify-email → {verify-mobile, resend}; verify-mobile → set-password. `consume` applies to
/// verify-email.
fn build(config: Config) -> Workflow {
    Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(config.binding)
        .replay(config.replay)
        .expose_header(config.expose)
        .leeway(config.leeway)
        .reservation_lease(config.lease)
        .step(Step::new("invite").then("verify-email"))
        .step(
            Step::new("verify-email")
                .then("verify-mobile")
                .then("resend")
                .consume(config.consume),
        )
        .step(Step::new("verify-mobile").then("set-password"))
        .step(Step::new("resend"))
        .step(Step::new("set-password"))
        .build()
        .unwrap()
}

fn workflow() -> Workflow {
    build(Config::default())
}

/// A trivial handler. It answers with the status in `x-status` (200 by default) after `x-sleep-ms`, names the
/// subject in `x-subject` and attaches `x-user` as the custom claim `user_id`; it echoes the run id of the verified
/// code (if any) in `x-run`. Every call is counted.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |req: Request<Body>| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
            };
            if let Some(ms) = header("x-sleep-ms") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            let status = header("x-status").map_or(200, |s| s.parse().unwrap());
            let mut response = Response::builder().status(status);
            if let Some(v) = req.extensions().get::<VerifiedOtac>() {
                response = response.header("x-run", v.run_id());
                if let Some(user) = v.claim::<String>("user_id") {
                    response = response.header("x-seen-user", user);
                }
            }
            if let Some(cache) = header("x-cache-control") {
                response = response.header(CACHE_CONTROL, cache);
            }
            if let Some(expose) = header("x-expose") {
                response = response.header(ACCESS_CONTROL_EXPOSE_HEADERS, expose);
            }
            let mut response = response.body(Full::from("handler body")).unwrap();
            let mut claims = None;
            if let Some(subject) = header("x-subject") {
                claims = Some(OtacClaims::new().subject(subject));
            }
            if let Some(user) = header("x-user") {
                claims = Some(claims.unwrap_or_default().claim("user_id", user));
            }
            if let Some(claims) = claims {
                response.extensions_mut().insert(claims);
            }
            Ok(response)
        }
    })
}

fn request(code: Option<&str>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().method("POST").uri("/step");
    if let Some(code) = code {
        req = req.header(HEADER, code);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::from("request body")).unwrap()
}

async fn call<S>(svc: &S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn code_of(response: &Response<Body>) -> String {
    response
        .headers()
        .get(HEADER)
        .unwrap_or_else(|| panic!("no code on a {} response", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A fresh code for verify-email from the issue layer of `invite`.
async fn invite(wf: &Workflow, headers: &[(&str, &str)]) -> String {
    let svc = IssueOtacLayer::new(wf, "invite").layer(handler(Arc::default()));
    let response = call(&svc, request(None, headers)).await;
    assert_eq!(response.status(), StatusCode::OK);
    code_of(&response)
}

fn require(
    wf: &Workflow,
    step: &str,
    calls: &Arc<AtomicUsize>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    RequireOtacLayer::new(wf, step).layer(handler(Arc::clone(calls)))
}

/// Status, stable code, `OtacError` extension, `WWW-Authenticate` on 401s and a problem+json body with that code.
#[track_caller]
fn expect_rejection(response: &Response<Body>, code: &str, status: StatusCode) {
    assert_eq!(response.status(), status, "expected {code}");
    let err = response
        .extensions()
        .get::<OtacError>()
        .expect("rejections carry the OtacError");
    assert_eq!(err.code(), code);
    assert_eq!(err.status(), status);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        response.headers().contains_key(WWW_AUTHENTICATE),
        status == StatusCode::UNAUTHORIZED
    );
    assert!(response.headers().get(HEADER).is_none());
    assert!(response.extensions().get::<VerifiedOtac>().is_none());
}

async fn expect_problem(response: Response<Body>, code: &str, status: StatusCode) {
    expect_rejection(&response, code, status);
    let body: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(body["code"], code);
    assert_eq!(body["status"], status.as_u16());
}

// ---- hand-crafted codes ---------------------------------------------------------------------------------------

fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn forge(claims: &Value) -> String {
    let header = format!(
        r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{}"}}"#,
        key().kid()
    );
    let message = format!("{}.{}", b64(header), b64(claims.to_string()));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(message.as_bytes());
    format!("{message}.{}", b64(mac.finalize().into_bytes()))
}

fn claims_for(step: &str) -> Value {
    let now = now();
    json!({
        "iss": ISS, "aud": step, "exp": now + 60, "iat": now, "nbf": now,
        "jti": format!("jti-{now}-{step}"), "wf": WF, "run": "r1", "stp": "invite", "rat": now,
    })
}

// ---- the require layer ----------------------------------------------------------------------------------------

#[tokio::test]
async fn no_code_is_401_with_problem_json_and_never_reaches_the_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&workflow(), "verify-email", &calls);
    let response = call(&svc, request(None, &[])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let www = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(www.starts_with("OTAC "), "{www}");
    assert!(www.contains("otac_required"), "{www}");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    expect_problem(response, "otac_required", StatusCode::UNAUTHORIZED).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rejected_requests_never_reach_the_handler() {
    let wf = build(Config {
        binding: Binding::header(HeaderName::from_static("device-id")),
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let good = invite(&wf, &[("device-id", "d-1")]).await;
    let unauthorized = StatusCode::UNAUTHORIZED;
    let forbidden = StatusCode::FORBIDDEN;
    let mut expired = claims_for("verify-email");
    expired["exp"] = json!(now() - 60);
    for t in ["iat", "nbf", "rat"] {
        expired[t] = json!(now() - 120);
    }
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other_payload = b64(claims_for("verify-email").to_string());
    tampered[1] = &other_payload;
    let tampered = tampered.join(".");
    let cases: Vec<(Request<Body>, &str, StatusCode)> = vec![
        (
            request(Some("garbage"), &[]),
            "otac_malformed",
            unauthorized,
        ),
        (
            request(Some(&good), &[(HEADER, &good), ("device-id", "d-1")]),
            "otac_malformed",
            unauthorized,
        ),
        (
            request(Some(&tampered), &[("device-id", "d-1")]),
            "otac_invalid",
            unauthorized,
        ),
        (
            request(Some(&forge(&expired)), &[]),
            "otac_expired",
            unauthorized,
        ),
        (
            request(Some(&forge(&claims_for("set-password"))), &[]),
            "otac_wrong_step",
            forbidden,
        ),
        (
            request(Some(&good), &[("device-id", "d-2")]),
            "otac_binding_mismatch",
            forbidden,
        ),
        (
            request(Some(&good), &[]),
            "otac_binding_mismatch",
            forbidden,
        ),
    ];
    for (req, code, status) in cases {
        expect_problem(call(&svc, req).await, code, status).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_rejected_code_is_not_spent() {
    for consume in [Consume::BeforeHandler, Consume::OnSuccess] {
        let wf = build(Config {
            binding: Binding::header(HeaderName::from_static("device-id")),
            consume,
            ..Config::default()
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let verify_email = require(&wf, "verify-email", &calls);
        let set_password = require(&wf, "set-password", &calls);
        let code = invite(&wf, &[("device-id", "d-1")]).await;

        let r = call(&set_password, request(Some(&code), &[("device-id", "d-1")])).await;
        expect_rejection(&r, "otac_wrong_step", StatusCode::FORBIDDEN);
        let r = call(&verify_email, request(Some(&code), &[("device-id", "d-2")])).await;
        expect_rejection(&r, "otac_binding_mismatch", StatusCode::FORBIDDEN);
        let r = call(&verify_email, request(Some(&code), &[])).await;
        expect_rejection(&r, "otac_binding_mismatch", StatusCode::FORBIDDEN);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let r = call(&verify_email, request(Some(&code), &[("device-id", "d-1")])).await;
        assert_eq!(r.status(), StatusCode::OK, "{consume:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let r = call(&verify_email, request(Some(&code), &[("device-id", "d-1")])).await;
        expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn replay_is_401_otac_replayed() {
    let wf = workflow();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    let first = call(&svc, request(Some(&code), &[])).await;
    assert_eq!(first.status(), StatusCode::OK);
    // The handler saw the verified code, and so does an issue layer further out.
    assert!(first.headers().contains_key("x-run"));
    assert!(first.extensions().get::<VerifiedOtac>().is_some());
    for _ in 0..3 {
        let again = call(&svc, request(Some(&code), &[])).await;
        let www = again.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.contains("otac_replayed"));
        expect_problem(again, "otac_replayed", StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_branch_code_is_spent_for_every_step_it_names() {
    // verify-email issues for verify-mobile and resend: using it at one spends it at the other.
    let wf = workflow();
    let calls = Arc::new(AtomicUsize::new(0));
    let issue = IssueOtacLayer::new(&wf, "verify-email");
    let verify_email = issue.layer(require(&wf, "verify-email", &calls));
    let r = call(&verify_email, request(Some(&invite(&wf, &[]).await), &[])).await;
    let branch = code_of(&r);
    let claims = otac::dangerous::insecure_decode_claims(&branch).unwrap();
    assert_eq!(claims.aud.steps(), ["verify-mobile", "resend"]);

    let mobile = require(&wf, "verify-mobile", &calls);
    let resend = require(&wf, "resend", &calls);
    assert_eq!(
        call(&resend, request(Some(&branch), &[])).await.status(),
        StatusCode::OK
    );
    let r = call(&mobile, request(Some(&branch), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn codes_expire_with_their_replay_entry_still_in_place() {
    // A code verifies while `now <= exp + leeway` in whole seconds, i.e. up to the end of that second; its spent
    // entry must live at least as long, or the code can be replayed in the gap.
    let wf = build(Config {
        leeway: Duration::ZERO,
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // Timing-sensitive on a busy machine: try a few times.
    for attempt in 0..3 {
        // Start just after a second boundary.
        tokio::time::sleep(Duration::from_millis(1000 - now_ms() % 1000 + 20)).await;
        let start = now();
        let mut claims = claims_for("verify-email");
        claims["exp"] = json!(start + 1);
        claims["jti"] = json!(format!("gap-{start}-{attempt}"));
        let code = forge(&claims);
        let first = call(&svc, request(Some(&code), &[])).await;
        // Into the last second in which the code still verifies.
        let target = (start + 1) * 1000 + 600;
        tokio::time::sleep(Duration::from_millis(target.saturating_sub(now_ms()))).await;
        if first.status() != StatusCode::OK || now() != start + 1 {
            continue;
        }
        let r = call(&svc, request(Some(&code), &[])).await;
        if now() != start + 1 {
            continue;
        }
        expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
        return;
    }
    panic!("the test timing slipped three times");
}

// ---- failing stores -------------------------------------------------------------------------------------------

/// A store that is down: every call fails, immediately or after a while.
struct DownStore {
    slow: bool,
}

impl DownStore {
    fn fail<T: Send + 'static>(&self) -> StoreFuture<T> {
        if self.slow {
            StoreFuture::boxed(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Err(StoreError::new("connection refused"))
            })
        } else {
            StoreFuture::ready(Err(StoreError::new("connection refused")))
        }
    }
}

impl ReplayStore for DownStore {
    fn consume(&self, _: &StoreKey, _: u64) -> StoreFuture<Outcome> {
        self.fail()
    }
    fn reserve(&self, _: &StoreKey, _: u64, _: u64) -> StoreFuture<Outcome> {
        self.fail()
    }
    fn commit(&self, _: &StoreKey, _: u64, _: u64) -> StoreFuture<()> {
        self.fail()
    }
    fn release(&self, _: &StoreKey, _: u64) -> StoreFuture<()> {
        self.fail()
    }
}

#[tokio::test]
async fn a_store_that_errors_fails_closed() {
    for slow in [false, true] {
        for consume in [Consume::BeforeHandler, Consume::OnSuccess] {
            let wf = build(Config {
                replay: Replay::store(DownStore { slow }),
                consume,
                ..Config::default()
            });
            let calls = Arc::new(AtomicUsize::new(0));
            let svc = require(&wf, "verify-email", &calls);
            let code = invite(&wf, &[]).await;
            let r = call(&svc, request(Some(&code), &[])).await;
            expect_problem(r, "otac_store_unavailable", StatusCode::SERVICE_UNAVAILABLE).await;
            assert_eq!(calls.load(Ordering::SeqCst), 0, "slow={slow} {consume:?}");
        }
    }
}

/// A memory store whose commit fails (the store went away while the handler ran).
struct CommitFails(MemoryStore);

impl ReplayStore for CommitFails {
    fn consume(&self, key: &StoreKey, until: u64) -> StoreFuture<Outcome> {
        self.0.consume(key, until)
    }
    fn reserve(&self, key: &StoreKey, token: u64, until: u64) -> StoreFuture<Outcome> {
        self.0.reserve(key, token, until)
    }
    fn commit(&self, _: &StoreKey, _: u64, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("timeout")))
    }
    fn release(&self, key: &StoreKey, token: u64) -> StoreFuture<()> {
        self.0.release(key, token)
    }
}

#[tokio::test]
async fn a_failed_commit_keeps_the_handlers_answer_and_the_code_unusable() {
    let wf = build(Config {
        replay: Replay::store(CommitFails(MemoryStore::new(64))),
        consume: Consume::OnSuccess,
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    let r = call(&svc, request(Some(&code), &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(&svc, request(Some(&code), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_full_memory_store_refuses_new_codes_instead_of_evicting() {
    // One shard of two entries.
    let wf = build(Config {
        replay: Replay::store(MemoryStore::with_shards(2, 1)),
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let codes = [
        invite(&wf, &[]).await,
        invite(&wf, &[]).await,
        invite(&wf, &[]).await,
    ];
    assert_eq!(
        call(&svc, request(Some(&codes[0]), &[])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&svc, request(Some(&codes[1]), &[])).await.status(),
        StatusCode::OK
    );
    let r = call(&svc, request(Some(&codes[2]), &[])).await;
    expect_rejection(
        &r,
        "otac_store_unavailable",
        StatusCode::SERVICE_UNAVAILABLE,
    );
    // The spent codes were not evicted to make room.
    for code in &codes[..2] {
        let r = call(&svc, request(Some(code), &[])).await;
        expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---- consume on success ---------------------------------------------------------------------------------------

#[tokio::test]
async fn on_success_a_failure_releases_and_a_success_commits() {
    let wf = build(Config {
        consume: Consume::OnSuccess,
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    // A mistyped SMS code (422), a conflict (409), a server error (500): the code stays usable.
    for status in ["422", "409", "500", "400"] {
        let r = call(&svc, request(Some(&code), &[("x-status", status)])).await;
        assert_eq!(r.status().as_str(), status);
        assert!(r.extensions().get::<OtacError>().is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let r = call(&svc, request(Some(&code), &[("x-status", "201")])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(&svc, request(Some(&code), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    let r = call(&svc, request(Some(&code), &[("x-status", "400")])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn on_success_a_request_that_dies_mid_way_frees_the_code_when_its_lease_ends() {
    let wf = build(Config {
        consume: Consume::OnSuccess,
        lease: Duration::from_secs(1),
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    // The client goes away while the handler runs: the response future is dropped.
    let slow = svc
        .clone()
        .oneshot(request(Some(&code), &[("x-sleep-ms", "5000")]));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err()
    );
    let r = call(&svc, request(Some(&code), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = call(&svc, request(Some(&code), &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(&svc, request(Some(&code), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn before_handler_a_failure_still_spends() {
    let wf = workflow();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    let r = call(&svc, request(Some(&code), &[("x-status", "422")])).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = call(&svc, request(Some(&code), &[])).await;
    expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn race(
    consume: Consume,
    status: &'static str,
    sleep_ms: &'static str,
) -> (usize, Vec<StatusCode>) {
    const N: usize = 20;
    let wf = build(Config {
        consume,
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for _ in 0..N {
        let svc = svc.clone();
        let code = code.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let req = request(
                Some(&code),
                &[("x-sleep-ms", sleep_ms), ("x-status", status)],
            );
            barrier.wait().await;
            let r = svc.oneshot(req).await.unwrap();
            if r.status() == StatusCode::UNAUTHORIZED {
                expect_rejection(&r, "otac_replayed", StatusCode::UNAUTHORIZED);
            }
            r.status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    (calls.load(Ordering::SeqCst), statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_let_exactly_one_through_before_handler() {
    let (calls, statuses) = race(Consume::BeforeHandler, "200", "30").await;
    assert_eq!(calls, 1);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        19
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uses_let_exactly_one_through_on_success() {
    let (calls, statuses) = race(Consume::OnSuccess, "200", "30").await;
    assert_eq!(calls, 1);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        19
    );
    // While the one request is in its handler, even a failing one, the others are turned away (the handler takes
    // long enough for every other request to arrive before it releases the code).
    let (calls, statuses) = race(Consume::OnSuccess, "422", "500").await;
    assert_eq!(calls, 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY)
            .count(),
        1
    );
}

// ---- stateless mode -------------------------------------------------------------------------------------------

#[tokio::test]
async fn stateless_mode_lets_a_code_be_replayed_inside_its_window() {
    // Documented behaviour: expiry alone, no one-time use.
    let wf = build(Config {
        replay: Replay::stateless(),
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let code = invite(&wf, &[]).await;
    for _ in 0..3 {
        assert_eq!(
            call(&svc, request(Some(&code), &[])).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Everything else still applies.
    let r = call(
        &require(&wf, "set-password", &calls),
        request(Some(&code), &[]),
    )
    .await;
    expect_rejection(&r, "otac_wrong_step", StatusCode::FORBIDDEN);
}

// ---- the issue layer ------------------------------------------------------------------------------------------

#[tokio::test]
async fn codes_are_issued_on_2xx_only() {
    let wf = workflow();
    let svc = IssueOtacLayer::new(&wf, "invite").layer(handler(Arc::default()));
    for status in ["200", "201", "202", "204"] {
        let r = call(&svc, request(None, &[("x-status", status)])).await;
        assert!(r.headers().contains_key(HEADER), "{status}");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert!(r.extensions().get::<OtacError>().is_none());
    }
    for status in [
        "100", "301", "302", "304", "400", "401", "403", "404", "409", "422", "500", "503",
    ] {
        let r = call(&svc, request(None, &[("x-status", status)])).await;
        assert!(!r.headers().contains_key(HEADER), "{status}");
        assert!(!r.headers().contains_key(CACHE_CONTROL), "{status}");
    }
    // The handler's own caching is overridden on a response with a code, and left alone otherwise.
    let r = call(
        &svc,
        request(None, &[("x-cache-control", "public, max-age=3600")]),
    )
    .await;
    let values: Vec<_> = r.headers().get_all(CACHE_CONTROL).iter().collect();
    assert_eq!(values, ["no-store"]);
    let r = call(
        &svc,
        request(None, &[("x-cache-control", "public"), ("x-status", "404")]),
    )
    .await;
    assert_eq!(r.headers()[CACHE_CONTROL], "public");
    // No CORS exposure unless configured.
    let r = call(&svc, request(None, &[])).await;
    assert!(!r.headers().contains_key(ACCESS_CONTROL_EXPOSE_HEADERS));
}

#[tokio::test]
async fn a_predicate_decides_what_counts_as_success() {
    let wf = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .step(
            Step::new("invite")
                .then("verify-email")
                .success_when(|s| s == StatusCode::CREATED),
        )
        .step(Step::new("verify-email"))
        .build()
        .unwrap();
    let svc = IssueOtacLayer::new(&wf, "invite").layer(handler(Arc::default()));
    let r = call(&svc, request(None, &[("x-status", "201")])).await;
    assert!(r.headers().contains_key(HEADER));
    let r = call(&svc, request(None, &[("x-status", "200")])).await;
    assert!(!r.headers().contains_key(HEADER));
}

#[tokio::test]
async fn expose_header_adds_access_control_expose_headers() {
    let wf = build(Config {
        expose: true,
        ..Config::default()
    });
    let svc = IssueOtacLayer::new(&wf, "invite").layer(handler(Arc::default()));
    let r = call(&svc, request(None, &[])).await;
    assert!(r.headers().contains_key(HEADER));
    let exposed: Vec<_> = r
        .headers()
        .get_all(ACCESS_CONTROL_EXPOSE_HEADERS)
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(exposed, [HEADER]);
    // Kept alongside what the handler exposes.
    let r = call(&svc, request(None, &[("x-expose", "x-request-id")])).await;
    let exposed: Vec<_> = r
        .headers()
        .get_all(ACCESS_CONTROL_EXPOSE_HEADERS)
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(exposed, ["x-request-id", HEADER]);
    // Not on errors.
    let r = call(&svc, request(None, &[("x-status", "400")])).await;
    assert!(!r.headers().contains_key(ACCESS_CONTROL_EXPOSE_HEADERS));
}

#[tokio::test]
async fn subject_binding_without_a_named_subject_issues_nothing() {
    let wf = build(Config {
        binding: Binding::subject(),
        ..Config::default()
    });
    let svc = IssueOtacLayer::new(&wf, "invite").layer(handler(Arc::default()));
    let r = call(&svc, request(None, &[])).await;
    assert_eq!(r.status(), StatusCode::OK, "the handler's answer stands");
    assert!(!r.headers().contains_key(HEADER));
    assert!(!r.headers().contains_key(CACHE_CONTROL));
    let err = r.extensions().get::<OtacError>().expect("the issue error");
    assert_eq!(err.code(), "otac_issue_failed");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_text(r).await, "handler body");
    // Custom claims alone do not name a subject either.
    let r = call(&svc, request(None, &[("x-user", "u-1")])).await;
    assert!(!r.headers().contains_key(HEADER));

    let r = call(&svc, request(None, &[("x-subject", "alice")])).await;
    let code = code_of(&r);
    let calls = Arc::new(AtomicUsize::new(0));
    let next = require(&wf, "verify-email", &calls);
    let r = call(&next, request(Some(&code), &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.extensions()
            .get::<VerifiedOtac>()
            .unwrap()
            .subject_is("alice")
    );
}

#[tokio::test]
async fn the_issue_layer_streams_the_body_through() {
    use http_body_util::channel::Channel;
    let wf = workflow();
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let slot = Arc::new(std::sync::Mutex::new(Some(body)));
    let inner = tower::service_fn(move |_req: Request<Body>| {
        let body = slot.lock().unwrap().take().unwrap();
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let svc = IssueOtacLayer::new(&wf, "invite").layer(inner);
    // The response (with its code) is there before a single byte of the body was produced.
    let response = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(request(None, &[])))
        .await
        .expect("the issue layer waits for no body")
        .unwrap();
    assert!(response.headers().contains_key(HEADER));
    let producer = tokio::spawn(async move {
        for chunk in ["first chunk, ", "second chunk, ", "last chunk"] {
            tx.send_data(Bytes::from(chunk)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    producer.await.unwrap();
    assert_eq!(
        frames,
        ["first chunk, ", "second chunk, ", "last chunk"].map(Bytes::from)
    );
}

#[tokio::test]
async fn a_chain_through_the_layers_keeps_its_run_and_claims() {
    let wf = workflow();
    let calls = Arc::new(AtomicUsize::new(0));
    // invite attaches the user id.
    let invite_svc = IssueOtacLayer::new(&wf, "invite").layer(handler(Arc::clone(&calls)));
    let r = call(&invite_svc, request(None, &[("x-user", "u-7")])).await;
    let first = code_of(&r);
    let run = otac::dangerous::insecure_decode_claims(&first).unwrap().run;

    // Issue outside require (the axum `.layer` + `.route_layer` shape) ...
    let verify_email =
        IssueOtacLayer::new(&wf, "verify-email").layer(require(&wf, "verify-email", &calls));
    let r = call(&verify_email, request(Some(&first), &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-run"], run.as_str());
    assert_eq!(r.headers()["x-seen-user"], "u-7");
    let second = code_of(&r);

    let verify_mobile = require(&wf, "verify-mobile", &calls);
    let r = call(&verify_mobile, request(Some(&second), &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-run"], run.as_str());
    assert_eq!(r.headers()["x-seen-user"], "u-7");
    let v = r.extensions().get::<VerifiedOtac>().unwrap();
    assert_eq!(v.issued_by(), "verify-email");

    // ... and inside it.
    let r = call(&invite_svc, request(None, &[("x-user", "u-8")])).await;
    let first = code_of(&r);
    let run = otac::dangerous::insecure_decode_claims(&first).unwrap().run;
    let verify_email = RequireOtacLayer::new(&wf, "verify-email")
        .layer(IssueOtacLayer::new(&wf, "verify-email").layer(handler(Arc::clone(&calls))));
    let r = call(&verify_email, request(Some(&first), &[])).await;
    let second = code_of(&r);
    let claims = otac::dangerous::insecure_decode_claims(&second).unwrap();
    assert_eq!(claims.run, run);
    assert_eq!(claims.stp, "verify-email");
}

#[tokio::test]
async fn a_rejected_request_gets_no_code_from_an_outer_issue_layer() {
    let wf = workflow();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = IssueOtacLayer::new(&wf, "verify-email").layer(require(&wf, "verify-email", &calls));
    for req in [
        request(None, &[]),
        request(Some("x.y.z"), &[]),
        request(Some(&forge(&claims_for("set-password"))), &[]),
    ] {
        let r = call(&svc, req).await;
        assert!(r.status().is_client_error());
        assert!(!r.headers().contains_key(HEADER));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_rejection_answered_with_a_success_status_still_gets_no_code() {
    // A browser flow: rejections redirect to the start, and redirects count as success for issuing. The
    // rejection must not come back with a fresh code for the next step.
    let wf = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::store(MemoryStore::new(64)))
        .error_responder(|_: &OtacError| {
            Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header("location", "/start")
                .body(Bytes::new())
                .unwrap()
        })
        .step(Step::new("invite").then("verify-email"))
        .step(
            Step::new("verify-email")
                .then("verify-mobile")
                .success_when(|s| s.is_success() || s.is_redirection()),
        )
        .step(Step::new("verify-mobile"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = IssueOtacLayer::new(&wf, "verify-email").layer(require(&wf, "verify-email", &calls));
    let r = call(&svc, request(None, &[])).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.extensions().get::<OtacError>().is_some());
    assert!(
        !r.headers().contains_key(HEADER),
        "a rejection minted a code"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The legitimate path still issues.
    let code = invite(&wf, &[]).await;
    let r = call(&svc, request(Some(&code), &[])).await;
    assert!(r.headers().contains_key(HEADER));
}

#[tokio::test]
async fn a_rejection_never_contains_the_token() {
    let wf = build(Config {
        binding: Binding::header(HeaderName::from_static("device-id")),
        ..Config::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = require(&wf, "verify-email", &calls);
    let good = invite(&wf, &[("device-id", "d-1")]).await;
    let mut expired = claims_for("verify-email");
    expired["exp"] = json!(now() - 60);
    let expired = forge(&expired);
    let wrong_step = forge(&claims_for("verify-mobile"));
    let cases = [
        (expired.clone(), vec![]),
        (wrong_step.clone(), vec![]),
        (good.clone(), vec![("device-id", "d-2")]),
        (format!("{good}x"), vec![("device-id", "d-1")]),
        (good.replace('.', ""), vec![("device-id", "d-1")]),
    ];
    for (token, headers) in &cases {
        let r = call(&svc, request(Some(token), headers)).await;
        assert_reveals_nothing(r, token).await;
    }
    // Spend it, then replay it.
    assert_eq!(
        call(&svc, request(Some(&good), &[("device-id", "d-1")]))
            .await
            .status(),
        StatusCode::OK
    );
    let r = call(&svc, request(Some(&good), &[("device-id", "d-1")])).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_reveals_nothing(r, &good).await;
}

async fn assert_reveals_nothing(response: Response<Body>, token: &str) {
    assert!(response.extensions().get::<OtacError>().is_some());
    let mut text = String::new();
    for (name, value) in response.headers() {
        text.push_str(name.as_str());
        text.push_str(value.to_str().unwrap());
    }
    text.push_str(&body_text(response).await);
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!text.contains(part), "rejection echoes the token: {text}");
    }
    assert!(!text.contains("d-1") && !text.contains("d-2"));
}

#[tokio::test]
async fn a_code_of_another_workflow_does_not_continue_into_this_one() {
    // The last step of onboarding also starts an mfa workflow: the onboarding code it consumed is not part of the
    // mfa run (its run, start, subject and claims stay in onboarding).
    let onboarding = build(Config {
        binding: Binding::subject(),
        ..Config::default()
    });
    let mfa = Workflow::builder("mfa")
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::subject())
        .replay(Replay::store(MemoryStore::new(64)))
        .step(Step::new("start").then("confirm"))
        .step(Step::new("confirm"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc =
        IssueOtacLayer::new(&mfa, "start").layer(require(&onboarding, "verify-email", &calls));
    let issue = IssueOtacLayer::new(&onboarding, "invite").layer(handler(Arc::default()));
    let r = call(
        &issue,
        request(None, &[("x-subject", "alice"), ("x-user", "u-1")]),
    )
    .await;
    let onboarding_code = code_of(&r);
    let onboarding_run = otac::dangerous::insecure_decode_claims(&onboarding_code)
        .unwrap()
        .run;

    let r = call(
        &svc,
        request(Some(&onboarding_code), &[("x-subject", "alice")]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.extensions().get::<OtacError>().is_none());
    let mfa_code = code_of(&r);
    let claims = otac::dangerous::insecure_decode_claims(&mfa_code).unwrap();
    assert_eq!(claims.wf, "mfa");
    assert_ne!(claims.run, onboarding_run);
    assert!(
        claims.ctx.is_empty(),
        "onboarding claims leaked: {:?}",
        claims.ctx
    );
    let r = call(
        &require(&mfa, "confirm", &calls),
        request(Some(&mfa_code), &[]),
    )
    .await;
    assert!(
        r.extensions()
            .get::<VerifiedOtac>()
            .unwrap()
            .subject_is("alice")
    );
}
