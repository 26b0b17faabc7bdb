//! The actix-web middleware and extractors over real loopback sockets.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::dev::Service as _;
use actix_web::{App, HttpMessage as _, HttpResponse, web};
use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{Binding, Consume, Key, KeySet, MemoryStore, OtacClaims, OtacError, Principal};
use otac::{OtacErrorKind, Replay, ReplayStore, Step, StoreError, Workflow};
use otac_actix::{AttachClaims, IssueOtacLayer, Otac, OtacCustom, OtacRejection, RequireOtacLayer};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

mod common;

use common::{HEADER, TestServer, assert_problem, code_of};

fn keys() -> KeySet {
    KeySet::new(Key::hs256(b"actix middleware test secret of 32+ bytes").expect("key"))
}

/// `a` → `b` → `c`, unbound, with `b` spent as `consume` says.
fn workflow(consume: Consume) -> Workflow {
    workflow_with(
        Binding::none(),
        Replay::store(MemoryStore::default()),
        consume,
    )
}

fn workflow_with(binding: Binding, replay: Replay, consume: Consume) -> Workflow {
    Workflow::builder("actix-test")
        .keys(keys())
        .binding(binding)
        .replay(replay)
        .step(Step::new("a").then("b"))
        .step(Step::new("b").then("c").consume(consume))
        .step(Step::new("c"))
        .build()
        .expect("workflow")
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// `/a` issues codes for `b`.
fn issuing(cfg: &mut web::ServiceConfig, wf: &Workflow) {
    cfg.service(
        web::resource("/a")
            .wrap(IssueOtacLayer::new(wf, "a"))
            .route(web::post().to(ok)),
    );
}

#[tokio::test]
async fn require_on_a_scope_guards_every_route_inside_it() {
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        cfg.service(
            web::scope("/b")
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .route("/one", web::post().to(ok))
                .route("/two", web::post().to(ok)),
        )
        .route("/open", web::post().to(ok));
    });
    for path in ["/b/one", "/b/two"] {
        assert_problem(
            server.post(path, None).await,
            StatusCode::UNAUTHORIZED,
            "otac_required",
        )
        .await;
        let code = server.code().await;
        assert_eq!(
            server.post(path, Some(&code)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(server.post("/open", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn require_on_a_single_route_leaves_the_other_methods_alone() {
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        cfg.service(
            web::resource("/b")
                .route(web::post().to(ok).wrap(RequireOtacLayer::new(&wf, "b")))
                .route(web::get().to(ok)),
        );
    });
    assert_problem(
        server.post("/b", None).await,
        StatusCode::UNAUTHORIZED,
        "otac_required",
    )
    .await;
    let get = reqwest::get(server.url("/b")).await.expect("request");
    assert_eq!(get.status(), StatusCode::OK, "GET is not guarded");
    let put = reqwest::Client::new()
        .put(server.url("/b"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        put.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "no code check before the 405"
    );
    let code = server.code().await;
    assert_eq!(
        server.post("/b", Some(&code)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn issue_on_a_single_resource_adds_the_code_only_there_and_only_on_success() {
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        cfg.service(
            web::resource("/a-fails")
                .wrap(IssueOtacLayer::new(&wf, "a"))
                .route(web::post().to(|| async { HttpResponse::UnprocessableEntity().body("no") })),
        )
        .route("/plain", web::post().to(ok));
    });
    let res = server.post("/a", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let code = code_of(&res);
    assert_eq!(
        res.text().await.expect("body"),
        "ok",
        "the body is untouched"
    );
    let claims = otac::dangerous::insecure_decode_claims(&code).expect("claims");
    assert_eq!(claims.aud.0, vec!["b".to_owned()]);
    assert_eq!(claims.stp, "a");

    let res = server.post("/a-fails", None).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.headers().get(HEADER).is_none(), "errors get no code");
    let res = server.post("/plain", None).await;
    assert!(res.headers().get(HEADER).is_none());
}

#[tokio::test]
async fn optional_route_sees_the_code_when_present_and_none_otherwise() {
    async fn maybe(otac: Option<Otac>) -> String {
        match otac {
            Some(otac) => format!("code from {}", otac.issued_by()),
            None => "no code".to_owned(),
        }
    }
    async fn must(otac: Otac) -> String {
        otac.step().to_owned()
    }
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        cfg.route("/optional", web::post().to(maybe))
            .route("/misconfigured", web::post().to(must))
            .service(
                web::resource("/guarded")
                    .wrap(RequireOtacLayer::new(&wf, "b"))
                    .route(web::post().to(maybe)),
            );
    });
    let res = server.post("/optional", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("body"), "no code");
    // Without the middleware a code on the request is not verified, so the handler does not see it.
    let code = server.code().await;
    let res = server.post("/optional", Some(&code)).await;
    assert_eq!(res.text().await.expect("body"), "no code");
    let res = server.post("/guarded", Some(&code)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("body"), "code from a");
    // `Otac` itself on a route without the middleware is a server misconfiguration.
    let res = server.post("/misconfigured", Some(&code)).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn rejection_converted_to_actix_error_keeps_status_and_body() {
    async fn refuse() -> Result<HttpResponse, actix_web::Error> {
        let err = OtacError::new(OtacErrorKind::RunRevoked, "the run was aborted");
        Err(OtacRejection(err).into())
    }
    async fn refuse_with_question_mark() -> Result<HttpResponse, actix_web::Error> {
        Err(OtacRejection(OtacError::new(
            OtacErrorKind::WrongStep,
            "not here",
        )))?;
        Ok(HttpResponse::Ok().finish())
    }
    let server = TestServer::start(|cfg| {
        cfg.route("/refuse", web::post().to(refuse))
            .route("/refuse-q", web::post().to(refuse_with_question_mark));
    });
    assert_problem(
        server.post("/refuse", None).await,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
    )
    .await;
    assert_problem(
        server.post("/refuse-q", None).await,
        StatusCode::FORBIDDEN,
        "otac_wrong_step",
    )
    .await;
}

#[tokio::test]
async fn rejected_requests_never_reach_the_handler_and_do_not_spend_the_code() {
    let calls = Arc::new(AtomicUsize::new(0));
    let wf = workflow(Consume::BeforeHandler);
    let counted = Arc::clone(&calls);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        let calls = Arc::clone(&counted);
        let handler = move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().finish() }
        };
        cfg.service(
            web::resource("/b")
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .route(web::post().to(handler.clone())),
        )
        .service(
            web::resource("/c")
                .wrap(RequireOtacLayer::new(&wf, "c"))
                .route(web::post().to(handler)),
        );
    });
    let code = server.code().await;
    assert_problem(
        server.post("/b", None).await,
        StatusCode::UNAUTHORIZED,
        "otac_required",
    )
    .await;
    assert_problem(
        server.post("/b", Some("not.a.jws!")).await,
        StatusCode::UNAUTHORIZED,
        "otac_malformed",
    )
    .await;
    // The signature of another code.
    let other = server.code().await;
    let tampered = format!(
        "{}{}",
        &code[..code.rfind('.').expect("jws")],
        &other[other.rfind('.').expect("jws")..]
    );
    assert_problem(
        server.post("/b", Some(&tampered)).await,
        StatusCode::UNAUTHORIZED,
        "otac_invalid",
    )
    .await;
    assert_problem(
        server.post("/c", Some(&code)).await,
        StatusCode::FORBIDDEN,
        "otac_wrong_step",
    )
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no rejected request reached the handler"
    );
    // None of that spent the code.
    assert_eq!(
        server.post("/b", Some(&code)).await.status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_problem(
        server.post("/b", Some(&code)).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `/b/ok` succeeds, `/b/fail` answers 422, both behind the require middleware of `b`.
fn outcome_routes(cfg: &mut web::ServiceConfig, wf: &Workflow) {
    async fn outcome(path: web::Path<String>) -> HttpResponse {
        if path.as_str() == "ok" {
            HttpResponse::Ok().body("done")
        } else {
            HttpResponse::UnprocessableEntity().body("mistyped")
        }
    }
    cfg.service(
        web::resource("/b/{outcome}")
            .wrap(RequireOtacLayer::new(wf, "b"))
            .route(web::post().to(outcome)),
    );
}

#[tokio::test]
async fn consume_on_success_releases_on_failure_and_commits_on_success() {
    let wf = workflow(Consume::OnSuccess);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        outcome_routes(cfg, &wf);
    });
    let code = server.code().await;
    for _ in 0..2 {
        let res = server.post("/b/fail", Some(&code)).await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the handler ran"
        );
    }
    let res = server.post("/b/ok", Some(&code)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a failed attempt did not burn the code"
    );
    assert_problem(
        server.post("/b/ok", Some(&code)).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
    assert_problem(
        server.post("/b/fail", Some(&code)).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
}

#[tokio::test]
async fn consume_on_success_releases_when_an_inner_service_fails_with_an_error() {
    let wf = workflow(Consume::OnSuccess);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        cfg.service(
            web::resource("/b")
                // Inside the require middleware: fails with an `Err`, not with an error response.
                .wrap_fn(|req, srv| {
                    let fail = req.headers().contains_key("x-fail");
                    let call = srv.call(req);
                    async move {
                        let res = call.await?;
                        if fail {
                            return Err(actix_web::error::ErrorUnprocessableEntity("failed"));
                        }
                        Ok(res)
                    }
                })
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .route(web::post().to(ok)),
        );
    });
    let code = server.code().await;
    let res = reqwest::Client::new()
        .post(server.url("/b"))
        .header(HEADER, &code)
        .header("x-fail", "1")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        server.post("/b", Some(&code)).await.status(),
        StatusCode::OK
    );
    assert_problem(
        server.post("/b", Some(&code)).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
}

#[tokio::test]
async fn outer_middleware_sees_why_a_request_was_rejected() {
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        cfg.service(
            web::resource("/b")
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .wrap_fn(|req, srv| {
                    let call = srv.call(req);
                    async move {
                        let mut res = call.await?;
                        let code = res
                            .response()
                            .extensions()
                            .get::<OtacError>()
                            .map(|e| e.code());
                        if let Some(code) = code {
                            res.headers_mut().insert(
                                actix_web::http::header::HeaderName::from_static("x-otac-error"),
                                actix_web::http::header::HeaderValue::from_static(code),
                            );
                        }
                        Ok(res)
                    }
                })
                .route(web::post().to(ok)),
        );
    });
    let res = server.post("/b", None).await;
    assert_eq!(res.headers()["x-otac-error"], "otac_required");
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_required").await;
}

#[tokio::test]
async fn consume_before_handler_spends_the_code_even_when_the_handler_fails() {
    let wf = workflow(Consume::BeforeHandler);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        outcome_routes(cfg, &wf);
    });
    let code = server.code().await;
    assert_eq!(
        server.post("/b/fail", Some(&code)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_problem(
        server.post("/b/ok", Some(&code)).await,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
    )
    .await;
}

#[tokio::test]
async fn concurrent_uses_with_consume_on_success_let_exactly_one_through() {
    let wf = workflow(Consume::OnSuccess);
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        outcome_routes(cfg, &wf);
    });
    let code = server.code().await;
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (server, code) = (Arc::clone(&server), code.clone());
        tasks.push(tokio::spawn(async move {
            server.post("/b/ok", Some(&code)).await.status()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            StatusCode::OK => ok += 1,
            status => assert_eq!(status, StatusCode::UNAUTHORIZED),
        }
    }
    assert_eq!(ok, 1);
}

/// A replay store that cannot answer.
struct DownStore;

impl ReplayStore for DownStore {
    fn consume(&self, _: &StoreKey, _: u64) -> StoreFuture<Outcome> {
        StoreFuture::boxed(async { Err(StoreError::new("down")) })
    }
    fn reserve(&self, _: &StoreKey, _: u64, _: u64) -> StoreFuture<Outcome> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn commit(&self, _: &StoreKey, _: u64, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn release(&self, _: &StoreKey, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
}

#[tokio::test]
async fn store_failure_fails_closed_before_the_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let wf = workflow_with(
        Binding::none(),
        Replay::store(DownStore),
        Consume::BeforeHandler,
    );
    let server = TestServer::start(move |cfg| {
        issuing(cfg, &wf);
        let calls = Arc::clone(&counted);
        cfg.service(
            web::resource("/b")
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .route(web::post().to(move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { HttpResponse::Ok().finish() }
                })),
        );
    });
    let code = server.code().await;
    assert_problem(
        server.post("/b", Some(&code)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "otac_store_unavailable",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[derive(Deserialize)]
struct Carried {
    user_id: String,
}

#[tokio::test]
async fn claims_attached_by_a_handler_reach_the_next_step_and_the_run_continues() {
    async fn verify(body: web::Json<Value>) -> AttachClaims<web::Json<Value>> {
        let user = body["user_id"].as_str().unwrap_or_default().to_owned();
        AttachClaims(
            OtacClaims::new()
                .subject(user.clone())
                .claim("user_id", user),
            body,
        )
    }
    async fn next(otac: Otac, OtacCustom(carried): OtacCustom<Carried>) -> HttpResponse {
        if otac.subject_is(&carried.user_id) {
            HttpResponse::Ok().body(carried.user_id)
        } else {
            HttpResponse::Forbidden().finish()
        }
    }
    let wf = workflow_with(
        Binding::subject(),
        Replay::store(MemoryStore::default()),
        Consume::BeforeHandler,
    );
    let server = TestServer::start(move |cfg| {
        cfg.service(
            web::resource("/a")
                .wrap(IssueOtacLayer::new(&wf, "a"))
                .route(web::post().to(verify)),
        )
        // Issue wrapped outside require: the issue middleware finds the verified code on the response.
        .service(
            web::resource("/b")
                .wrap(RequireOtacLayer::new(&wf, "b"))
                .wrap(IssueOtacLayer::new(&wf, "b"))
                .route(web::post().to(next)),
        );
    });
    let res = reqwest::Client::new()
        .post(server.url("/a"))
        .json(&serde_json::json!({"user_id": "u_7"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let first = code_of(&res);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user_id"], "u_7", "the responder's body is kept");
    let res = server.post("/b", Some(&first)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = code_of(&res);
    assert_eq!(res.text().await.expect("body"), "u_7");
    let (first, second) = (
        otac::dangerous::insecure_decode_claims(&first).expect("claims"),
        otac::dangerous::insecure_decode_claims(&second).expect("claims"),
    );
    assert_eq!(first.run, second.run, "the run continues");
    assert_eq!(first.sub, second.sub, "the binding continues");
    assert_eq!(second.ctx["user_id"], "u_7");
    assert_eq!(second.aud.0, vec!["c".to_owned()]);
}

#[derive(Clone)]
struct User(String);

impl Principal for User {
    fn binding_id(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}

#[tokio::test]
async fn principal_in_actix_extensions_binds_the_code() {
    let wf = workflow_with(
        Binding::principal::<User>(),
        Replay::store(MemoryStore::default()),
        Consume::BeforeHandler,
    );
    let server = TestServer::start(move |cfg| {
        // A stand-in authentication middleware: the caller named in `x-user`. It is wrapped last, so it runs first.
        let scope = web::scope("")
            .service(
                web::resource("/a")
                    .wrap(IssueOtacLayer::new(&wf, "a").principal::<User>())
                    .route(web::post().to(ok)),
            )
            .service(
                web::resource("/b")
                    .wrap(RequireOtacLayer::new(&wf, "b").principal::<User>())
                    .route(web::post().to(ok)),
            )
            .wrap_fn(|req, srv| {
                if let Some(user) = req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
                    req.extensions_mut().insert(User(user.to_owned()));
                }
                srv.call(req)
            });
        cfg.service(scope);
    });
    let as_user = |path: &str, user: &str, code: Option<&str>| {
        let mut req = reqwest::Client::new()
            .post(server.url(path))
            .header("x-user", user);
        if let Some(code) = code {
            req = req.header(HEADER, code);
        }
        req.send()
    };
    let res = as_user("/a", "alice", None).await.expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let code = code_of(&res);
    assert_problem(
        as_user("/b", "mallory", Some(&code))
            .await
            .expect("request"),
        StatusCode::FORBIDDEN,
        "otac_binding_mismatch",
    )
    .await;
    let res = as_user("/b", "alice", Some(&code)).await.expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    // Without a principal nothing can be bound: no code.
    let res = server.post("/a", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(HEADER).is_none());
}

#[test]
fn unknown_steps_are_configuration_errors() {
    let wf = workflow(Consume::BeforeHandler);
    assert!(RequireOtacLayer::try_new(&wf, "nope").is_err());
    assert!(IssueOtacLayer::try_new(&wf, "nope").is_err());
    assert!(
        IssueOtacLayer::try_new(&wf, "c").is_err(),
        "the last step issues nothing"
    );
    assert!(RequireOtacLayer::try_new(&wf, "c").is_ok());
}

#[test]
#[should_panic(expected = "RequireOtacLayer: unknown step `nope`")]
fn new_panics_on_an_unknown_step() {
    let _ = RequireOtacLayer::new(&workflow(Consume::BeforeHandler), "nope");
}

#[test]
fn both_middleware_wrap_a_whole_app() {
    let wf = workflow(Consume::BeforeHandler);
    let _app = App::new()
        .wrap(IssueOtacLayer::new(&wf, "b"))
        .wrap(RequireOtacLayer::new(&wf, "b"))
        .route("/b", web::post().to(ok));
}
