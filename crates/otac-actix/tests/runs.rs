//! Workflow runs through the actix-web middleware: a handler aborting its run, revoking a run, and one live code
//! per run (a resend replaces the older code), over real loopback sockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{Binding, Consume, Key, KeySet, MemoryStore, Replay, ReplayStore, Step, Workflow};
use otac_actix::{AbortRun, IssueOtacLayer, Otac, RequireOtacLayer};
use reqwest::StatusCode;

use common::{HEADER, TestServer, assert_problem, code_of};

/// start → verify (spent on success) → done; resend replaces a code for verify with a new one. Bound to the
/// `device-id` header.
fn workflow(replay: Replay) -> Workflow {
    Workflow::builder("runs")
        .keys(KeySet::new(
            Key::hs256(b"actix runs test secret, at least 32 bytes").expect("key"),
        ))
        .binding(Binding::header(http::HeaderName::from_static("device-id")))
        .replay(replay)
        .revocation(true)
        .one_live_code(true)
        .step(Step::new("start").then("verify").then("resend"))
        .step(
            Step::new("resend")
                .then("verify")
                .then("resend")
                .consume(Consume::Replace),
        )
        .step(Step::new("verify").then("done").consume(Consume::OnSuccess))
        .step(Step::new("done"))
        .build()
        .expect("workflow")
}

/// Answers with the status in `x-status` (200 by default) and aborts the run when `x-abort` is set.
async fn handler(req: HttpRequest, _otac: Option<Otac>) -> Result<AbortRunOr, actix_web::Error> {
    let status = req
        .headers()
        .get("x-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(200);
    let response = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).map_err(actix_web::error::ErrorBadRequest)?,
    )
    .finish();
    Ok(if req.headers().contains_key("x-abort") {
        AbortRunOr::Abort(AbortRun(response))
    } else {
        AbortRunOr::Plain(response)
    })
}

/// Either responder, so one handler can do both.
enum AbortRunOr {
    Abort(AbortRun<HttpResponse>),
    Plain(HttpResponse),
}

impl actix_web::Responder for AbortRunOr {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        match self {
            Self::Abort(abort) => abort.respond_to(req),
            Self::Plain(plain) => plain,
        }
    }
}

fn routes(cfg: &mut web::ServiceConfig, wf: &Workflow, calls: &Arc<AtomicUsize>) {
    let counted = |calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        move |req: HttpRequest, otac: Option<Otac>| {
            calls.fetch_add(1, Ordering::SeqCst);
            handler(req, otac)
        }
    };
    cfg.service(
        web::resource("/start")
            .wrap(IssueOtacLayer::new(wf, "start"))
            .route(web::post().to(counted(calls))),
    )
    .service(
        web::resource("/resend")
            .wrap(IssueOtacLayer::new(wf, "resend"))
            .wrap(RequireOtacLayer::new(wf, "resend"))
            .route(web::post().to(counted(calls))),
    )
    .service(
        web::resource("/verify")
            .wrap(IssueOtacLayer::new(wf, "verify"))
            .wrap(RequireOtacLayer::new(wf, "verify"))
            .route(web::post().to(counted(calls))),
    )
    .service(
        web::resource("/done")
            .wrap(RequireOtacLayer::new(wf, "done"))
            .route(web::post().to(counted(calls))),
    );
}

fn start(wf: &Workflow, calls: &Arc<AtomicUsize>) -> TestServer {
    let (wf, calls) = (wf.clone(), Arc::clone(calls));
    TestServer::start(move |cfg| routes(cfg, &wf, &calls))
}

async fn call(
    server: &TestServer,
    path: &str,
    code: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("device-id", "d1");
    if let Some(code) = code {
        req = req.header(HEADER, code);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request")
}

fn run_of(code: &str) -> String {
    otac::dangerous::insecure_decode_claims(code)
        .expect("claims")
        .run
}

#[tokio::test]
async fn a_handler_can_abort_its_run() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(&wf, &calls);
    let code = code_of(&call(&server, "/start", None, &[]).await);
    // A failed attempt (spent on success only) can be retried ...
    let res = call(&server, "/verify", Some(&code), &[("x-status", "422")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // ... until the handler aborts the run.
    let res = call(
        &server,
        "/verify",
        Some(&code),
        &[("x-status", "429"), ("x-abort", "1")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let before = calls.load(Ordering::SeqCst);
    assert_problem(
        call(&server, "/verify", Some(&code), &[]).await,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
    )
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "rejected before the handler"
    );
}

#[tokio::test]
async fn a_revoked_run_is_rejected_and_other_runs_are_not() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(&wf, &calls);
    let revoked = code_of(&call(&server, "/start", None, &[]).await);
    let other = code_of(&call(&server, "/start", None, &[]).await);
    wf.revoke_run(&run_of(&revoked)).await.expect("revoke");
    assert_problem(
        call(&server, "/verify", Some(&revoked), &[]).await,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
    )
    .await;
    assert_eq!(
        call(&server, "/verify", Some(&other), &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_resend_replaces_the_older_code() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(&wf, &calls);
    let old = code_of(&call(&server, "/start", None, &[]).await);
    let res = call(&server, "/resend", Some(&old), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new = code_of(&res);
    assert_eq!(run_of(&new), run_of(&old), "the resend continues the run");
    for path in ["/verify", "/resend"] {
        assert_problem(
            call(&server, path, Some(&old), &[]).await,
            StatusCode::UNAUTHORIZED,
            "otac_replayed",
        )
        .await;
    }
    let res = call(&server, "/verify", Some(&new), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = code_of(&res);
    assert_problem(
        call(&server, "/verify", Some(&new), &[]).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
    assert_eq!(
        call(&server, "/done", Some(&done), &[]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn another_device_is_a_binding_mismatch() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(&wf, &calls);
    let code = code_of(&call(&server, "/start", None, &[]).await);
    let res = reqwest::Client::new()
        .post(server.url("/verify"))
        .header("device-id", "d2")
        .header(HEADER, &code)
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::FORBIDDEN, "otac_binding_mismatch").await;
}

/// A store that keeps the trait's defaults for marks.
struct NoMarks(MemoryStore);

impl ReplayStore for NoMarks {
    fn consume(&self, key: &StoreKey, expires_at_ms: u64) -> StoreFuture<Outcome> {
        self.0.consume(key, expires_at_ms)
    }
    fn reserve(&self, key: &StoreKey, token: u64, lease_until_ms: u64) -> StoreFuture<Outcome> {
        self.0.reserve(key, token, lease_until_ms)
    }
    fn commit(&self, key: &StoreKey, token: u64, expires_at_ms: u64) -> StoreFuture<()> {
        self.0.commit(key, token, expires_at_ms)
    }
    fn release(&self, key: &StoreKey, token: u64) -> StoreFuture<()> {
        self.0.release(key, token)
    }
}

#[tokio::test]
async fn a_live_code_mark_that_cannot_be_written_withdraws_the_code() {
    let wf = workflow(Replay::store(NoMarks(MemoryStore::new(1024))));
    let calls = Arc::new(AtomicUsize::new(0));
    let server = start(&wf, &calls);
    let res = call(&server, "/start", None, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(HEADER).is_none(), "no dead code goes out");
}
