//! Workflow runs as the unit: revoking a run or every run of a subject, a step aborting its run, and one live code
//! per run (a resend replaces the older code), through the tower layers.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{
    AbortRun, Binding, ConfigError, Consume, IssueOtacLayer, Key, KeySet, MemoryStore, OtacError,
    Replay, ReplayStore, RequireOtacLayer, Step, VerifiedOtac, Workflow,
};
use tower::{Layer, ServiceExt};

type Body = Full<Bytes>;
const HEADER: &str = "one-time-authorization-code";

/// start → verify (spent on success) → done; resend replaces a code for verify with a new one.
fn workflow(replay: Replay) -> Workflow {
    Workflow::builder("runs")
        .keys(KeySet::new(
            Key::hs256(b"runs test secret, at least 32 bytes long").unwrap(),
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
        .unwrap()
}

/// Answers with `x-status` (200 by default), aborts the run when `x-abort` is set, counts its calls.
async fn call(
    wf: &Workflow,
    step: &str,
    code: Option<&str>,
    device: &str,
    extra: &[(&str, &str)],
    calls: &Arc<AtomicUsize>,
) -> Response<Body> {
    let calls = Arc::clone(calls);
    let handler = tower::service_fn(move |req: Request<Body>| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let status = req
                .headers()
                .get("x-status")
                .map_or(200, |v| v.to_str().unwrap().parse().unwrap());
            let mut res = Response::builder()
                .status(status)
                .body(Full::from("ok"))
                .unwrap();
            if req.headers().contains_key("x-abort") {
                res.extensions_mut().insert(AbortRun);
            }
            if let Some(v) = req.extensions().get::<VerifiedOtac>() {
                res.headers_mut()
                    .insert("x-run", v.run_id().parse().unwrap());
            }
            Ok::<_, Infallible>(res)
        }
    });
    let mut req = Request::builder()
        .method("POST")
        .uri("/")
        .header("device-id", device);
    if let Some(code) = code {
        req = req.header(HEADER, code);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::from("")).unwrap();
    let has_next = !wf.next_steps(step).unwrap().is_empty();
    let needs_code = step != "start";
    match (needs_code, has_next) {
        (true, true) => RequireOtacLayer::new(wf, step)
            .layer(IssueOtacLayer::new(wf, step).layer(handler))
            .oneshot(req)
            .await
            .unwrap(),
        (true, false) => RequireOtacLayer::new(wf, step)
            .layer(handler)
            .oneshot(req)
            .await
            .unwrap(),
        (false, _) => IssueOtacLayer::new(wf, step)
            .layer(handler)
            .oneshot(req)
            .await
            .unwrap(),
    }
}

fn code_of(res: &Response<Body>) -> String {
    res.headers()[HEADER].to_str().unwrap().to_owned()
}

#[track_caller]
fn assert_rejected(res: &Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(res.status(), status, "{code}");
    let err = res.extensions().get::<OtacError>().expect("an OtacError");
    assert_eq!(err.code(), code);
}

fn run_of(code: &str) -> String {
    otac::dangerous::insecure_decode_claims(code).unwrap().run
}

#[tokio::test]
async fn revoking_a_run_rejects_its_codes_before_the_handler() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let first = code_of(&call(&wf, "start", None, "d1", &[], &calls).await);
    let other_run = code_of(&call(&wf, "start", None, "d1", &[], &calls).await);
    wf.revoke_run(&run_of(&first)).await.unwrap();
    let before = calls.load(Ordering::SeqCst);
    let res = call(&wf, "verify", Some(&first), "d1", &[], &calls).await;
    assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_run_revoked");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "the handler did not run"
    );
    // Other runs are untouched.
    let res = call(&wf, "verify", Some(&other_run), "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_subject_kills_its_runs_so_far_only() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let mine = code_of(&call(&wf, "start", None, "phone-1", &[], &calls).await);
    let theirs = code_of(&call(&wf, "start", None, "phone-2", &[], &calls).await);
    wf.revoke_subject("phone-1").await.unwrap();
    let res = call(&wf, "verify", Some(&mine), "phone-1", &[], &calls).await;
    assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_run_revoked");
    let res = call(&wf, "verify", Some(&theirs), "phone-2", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A run started after the revocation (revocation times are whole seconds) is not affected.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fresh = code_of(&call(&wf, "start", None, "phone-1", &[], &calls).await);
    let res = call(&wf, "verify", Some(&fresh), "phone-1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_step_can_abort_its_run() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let code = code_of(&call(&wf, "start", None, "d1", &[], &calls).await);
    // A failed attempt (spent on success only) can be retried ...
    let res = call(
        &wf,
        "verify",
        Some(&code),
        "d1",
        &[("x-status", "422")],
        &calls,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // ... until the handler aborts the run.
    let res = call(
        &wf,
        "verify",
        Some(&code),
        "d1",
        &[("x-status", "429"), ("x-abort", "1")],
        &calls,
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = call(&wf, "verify", Some(&code), "d1", &[], &calls).await;
    assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_run_revoked");
}

#[tokio::test]
async fn a_resend_replaces_the_older_code() {
    let wf = workflow(Replay::store(MemoryStore::new(1024)));
    let calls = Arc::new(AtomicUsize::new(0));
    let old = code_of(&call(&wf, "start", None, "d1", &[], &calls).await);
    let res = call(&wf, "resend", Some(&old), "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    let new = code_of(&res);
    assert_eq!(run_of(&new), run_of(&old), "the resend continues the run");
    // The older, unspent code is dead everywhere it was good for.
    for step in ["verify", "resend"] {
        let res = call(&wf, step, Some(&old), "d1", &[], &calls).await;
        assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_replayed");
    }
    let res = call(&wf, "verify", Some(&new), "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = code_of(&res);
    // Issuing the next step's code made it the live one; the verify code is spent too.
    let res = call(&wf, "verify", Some(&new), "d1", &[], &calls).await;
    assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_replayed");
    let res = call(&wf, "done", Some(&done), "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
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
async fn a_store_without_marks_fails_closed() {
    let wf = workflow(Replay::store(NoMarks(MemoryStore::new(1024))));
    let calls = Arc::new(AtomicUsize::new(0));
    // Issuing needs the live-code mark: no code goes out.
    let res = call(&wf, "start", None, "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(HEADER).is_none());
    assert_eq!(
        res.extensions().get::<OtacError>().unwrap().code(),
        "otac_store_unavailable"
    );
    assert!(wf.revoke_run("any").await.is_err());
}

#[test]
fn run_features_need_a_store_and_replace_needs_one_live_code() {
    let base = || {
        Workflow::builder("wf")
            .keys(KeySet::new(Key::hs256([1u8; 32]).unwrap()))
            .binding(Binding::none())
            .step(Step::new("a").then("b"))
            .step(Step::new("b"))
    };
    assert!(matches!(
        base().replay(Replay::stateless()).revocation(true).build(),
        Err(ConfigError::InvalidSetting(_))
    ));
    assert!(matches!(
        base()
            .replay(Replay::stateless())
            .one_live_code(true)
            .build(),
        Err(ConfigError::InvalidSetting(_))
    ));
    let replace = Workflow::builder("wf")
        .keys(KeySet::new(Key::hs256([1u8; 32]).unwrap()))
        .binding(Binding::none())
        .replay(Replay::store(MemoryStore::new(16)))
        .step(Step::new("a").then("b").consume(Consume::Replace))
        .step(Step::new("b"))
        .build();
    assert!(matches!(replace, Err(ConfigError::InvalidSetting(_))));
    // Not revocable: revoking says so.
    let wf = base()
        .replay(Replay::store(MemoryStore::new(16)))
        .build()
        .unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = wf.revoke_run("r");
    assert!(matches!(
        std::future::Future::poll(std::pin::Pin::new(&mut fut), &mut cx),
        std::task::Poll::Ready(Err(_))
    ));
}

#[tokio::test]
async fn a_spent_code_cannot_be_replaced_by_a_resend() {
    // confirm spends the code and issues nothing, so the run's live-code mark still names it: the resend step must
    // refuse it for being spent, or a finished run could be reopened.
    let wf = Workflow::builder("confirm-once")
        .keys(KeySet::new(
            Key::hs256(b"runs test secret, at least 32 bytes long").unwrap(),
        ))
        .binding(Binding::header(http::HeaderName::from_static("device-id")))
        .replay(Replay::store(MemoryStore::new(1024)))
        .one_live_code(true)
        .step(Step::new("start").then("confirm").then("resend"))
        .step(
            Step::new("resend")
                .then("confirm")
                .then("resend")
                .consume(Consume::Replace),
        )
        .step(Step::new("confirm"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let code = code_of(&call(&wf, "start", None, "d1", &[], &calls).await);
    let res = call(&wf, "confirm", Some(&code), "d1", &[], &calls).await;
    assert_eq!(res.status(), StatusCode::OK);
    let before = calls.load(Ordering::SeqCst);
    let res = call(&wf, "resend", Some(&code), "d1", &[], &calls).await;
    assert_rejected(&res, StatusCode::UNAUTHORIZED, "otac_replayed");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "the resend handler did not run"
    );
}
