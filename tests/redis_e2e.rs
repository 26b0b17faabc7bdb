//! The onboarding services on the Redis replay store, end to end over loopback HTTP.
//!
//! Two services sharing one Redis and one secret (and one user directory, as two instances share a database) spend
//! each code once between them, also under 50 concurrent requests. A Redis that dies makes a service answer
//! `503 otac_store_unavailable` without running the handler; once Redis is back the same service serves again.
//!
//! The shared-Redis tests use `OTAC_TEST_REDIS_URL` or a private `redis-server`; the outage test always starts a
//! private one. Without `redis-server` they are skipped, except under `CI=true`, where they fail.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Framework, HEADER, SECRET, Server, assert_problem, otac_of, start_sharing, workflow_with,
};
use otac::Replay;
use otac_examples::config::Settings;
use otac_examples::domain::Directory;
use otac_redis::RedisStore;
use otac_redis::testing::{PrivateRedis, TestRedis};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const CONCURRENT: usize = 50;
const PASSWORD: &str = "correct horse battery staple";

/// Each store call may take this long in the race tests: 50 requests at once on a small machine must not turn into
/// timeouts (which would be 503s, not the replays under test).
const RACE_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis replay store with its own connection, as a separate process would have.
async fn redis_replay(url: &str, timeout: Duration) -> Replay {
    Replay::store(
        RedisStore::connect(url)
            .await
            .expect("connect to the test redis")
            .timeout(timeout),
    )
}

/// Two onboarding services (axum) with the test secret, one Redis and one user directory, each with its own
/// connection to Redis.
async fn two_services(url: &str) -> (Server, Server) {
    let directory = Directory::default();
    let a = start_sharing(
        Framework::Axum,
        workflow_with(redis_replay(url, RACE_TIMEOUT).await, false),
        None,
        directory.clone(),
    )
    .await;
    let b = start_sharing(
        Framework::Axum,
        workflow_with(redis_replay(url, RACE_TIMEOUT).await, false),
        None,
        directory,
    )
    .await;
    (a, b)
}

/// What one of the racing requests got.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// The code issued for the next step, if any.
    next_code: Option<String>,
}

/// Sends `CONCURRENT` requests with `code` to `path`, alternating between `services`, released together. Every
/// 401 must be a well-formed `otac_replayed` problem that does not echo the code.
async fn race(services: [&Server; 2], path: &str, code: &str, body: Value) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(CONCURRENT));
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let service = services[i % 2];
            let request = service
                .client
                .post(service.url(path))
                .header(HEADER, code)
                .json(&body);
            let barrier = barrier.clone();
            let code = code.to_owned();
            tokio::spawn(async move {
                barrier.wait().await;
                let res = request.send().await.expect("request");
                let status = res.status();
                let next_code = res
                    .headers()
                    .get(HEADER)
                    .map(|v| v.to_str().expect("ascii").to_owned());
                if status == StatusCode::UNAUTHORIZED {
                    assert_problem(res, status, "otac_replayed", Some(&code)).await;
                }
                Answer { status, next_code }
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(CONCURRENT);
    for task in tasks {
        answers.push(task.await.expect("a racing request"));
    }
    answers
}

/// Asserts exactly one `winner` status, all others 401 `otac_replayed` (so no 409: the handler ran once).
fn assert_one_winner(answers: &[Answer], winner: StatusCode) {
    let count = |s: StatusCode| answers.iter().filter(|a| a.status == s).count();
    let conflicts = count(StatusCode::CONFLICT);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(conflicts, 0, "the handler ran more than once: {statuses:?}");
    assert_eq!(
        count(winner),
        1,
        "exactly one request uses the code: {statuses:?}"
    );
    assert_eq!(
        count(StatusCode::UNAUTHORIZED),
        CONCURRENT - 1,
        "every other request is a replay: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_set_password_uses_across_two_services_have_one_winner() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let (a, b) = two_services(&redis.url()).await;
    let (user_id, code) = a.through_mobile().await;

    let answers = race(
        [&a, &b],
        "/set-password",
        &code,
        json!({ "password": PASSWORD }),
    )
    .await;
    assert_one_winner(&answers, StatusCode::NO_CONTENT);
    assert_eq!(a.user(&user_id).await["status"], "active");
    assert_eq!(b.user(&user_id).await["status"], "active");

    // Spent for good, on both services.
    for service in [&a, &b] {
        let res = service
            .post(
                "/set-password",
                Some(&code),
                json!({ "password": PASSWORD }),
            )
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "otac_replayed", Some(&code)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_verify_mobile_uses_across_two_services_have_one_winner() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let (a, b) = two_services(&redis.url()).await;
    let (user_id, code) = a.through_email().await;
    let sms = a.latest_code(&user_id, "sms").await;

    // verify-mobile consumes on success: a reservation before the handler, committed by the one success.
    let answers = race([&a, &b], "/verify-mobile", &code, json!({ "code": sms })).await;
    assert_one_winner(&answers, StatusCode::OK);
    assert_eq!(b.user(&user_id).await["mobile_verified"], true);

    // The committed code stays spent on both services.
    for service in [&a, &b] {
        let res = service
            .post("/verify-mobile", Some(&code), json!({ "code": sms }))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "otac_replayed", Some(&code)).await;
    }

    // The winner's code for the next step works on either service.
    let next = answers
        .iter()
        .find_map(|a| a.next_code.clone())
        .expect("the winner got a code for set-password");
    let res = b
        .post(
            "/set-password",
            Some(&next),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(a.user(&user_id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_sms_on_one_service_leaves_the_code_usable_on_the_other() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let (a, b) = two_services(&redis.url()).await;
    let (user_id, code) = a.through_email().await;
    let sms = a.latest_code(&user_id, "sms").await;
    let wrong = if sms == "000000" { "111111" } else { "000000" };

    let res = a
        .post("/verify-mobile", Some(&code), json!({ "code": wrong }))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The reservation was released in Redis, so the other instance accepts the same code.
    let res = b
        .post("/verify-mobile", Some(&code), json!({ "code": sms }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let _ = otac_of(&res);
    let res = a
        .post("/verify-mobile", Some(&code), json!({ "code": sms }))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_replayed", Some(&code)).await;
}

fn settings(redis_url: Option<String>) -> Settings {
    Settings {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        secret: Some(SECRET.to_owned()),
        redis_url,
        cors_origin: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otac_redis_url_makes_the_example_share_one_time_use() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    // As `OTAC_REDIS_URL` would: both instances take their store from the settings.
    let directory = Directory::default();
    let mut services = Vec::new();
    for _ in 0..2 {
        let replay = settings(Some(redis.url()))
            .replay()
            .await
            .expect("the redis store");
        services.push(
            start_sharing(
                Framework::Axum,
                workflow_with(replay, false),
                None,
                directory.clone(),
            )
            .await,
        );
    }
    let (a, b) = (&services[0], &services[1]);
    let (user_id, code) = a.through_mobile().await;
    let res = b
        .post(
            "/set-password",
            Some(&code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = a
        .post(
            "/set-password",
            Some(&code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_replayed", Some(&code)).await;
    assert_eq!(a.user(&user_id).await["status"], "active");

    // Without the URL each instance remembers only its own uses: the replay reaches the handler on the other one.
    let directory = Directory::default();
    let mut services = Vec::new();
    for _ in 0..2 {
        let replay = settings(None).replay().await.expect("the memory store");
        services.push(
            start_sharing(
                Framework::Axum,
                workflow_with(replay, false),
                None,
                directory.clone(),
            )
            .await,
        );
    }
    let (a, b) = (&services[0], &services[1]);
    let (_, code) = a.through_mobile().await;
    let res = b
        .post(
            "/set-password",
            Some(&code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = a
        .post(
            "/set-password",
            Some(&code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CONFLICT,
        "memory stores are per process"
    );
}

#[tokio::test]
async fn an_unreachable_redis_url_is_an_error_that_hides_the_password() {
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/");
    let started = Instant::now();
    let err = settings(Some(url))
        .replay()
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in bounded time"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // The in-memory store needs no setup.
    assert!(settings(None).replay().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_without_running_the_handler_and_the_service_recovers_by_itself() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let service = start_sharing(
        Framework::Axum,
        workflow_with(
            redis_replay(&redis.url(), Duration::from_millis(500)).await,
            false,
        ),
        None,
        Directory::default(),
    )
    .await;
    // While Redis is up: a code for set-password (consumed before the handler), a code for verify-mobile
    // (consumed on success), and a probe user for later.
    let (user1, password_code) = service.through_mobile().await;
    let (user2, mobile_code) = service.through_email().await;
    let sms2 = service.latest_code(&user2, "sms").await;
    let (user3, probe_code) = service.through_email().await;

    redis.kill();
    let res = service
        .post(
            "/set-password",
            Some(&password_code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_problem(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "otac_store_unavailable",
        Some(&password_code),
    )
    .await;
    let res = service
        .post(
            "/verify-mobile",
            Some(&mobile_code),
            json!({ "code": sms2 }),
        )
        .await;
    assert_problem(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "otac_store_unavailable",
        Some(&mobile_code),
    )
    .await;
    // The handlers did not run.
    assert_eq!(service.user(&user1).await["status"], "invited");
    assert_eq!(service.user(&user2).await["mobile_verified"], false);

    redis.restart();
    // The same service, not restarted: its connection to Redis comes back by itself. The probe (a wrong SMS code,
    // so its reservation is released) burns nothing while it waits.
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(8);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let res = service
            .post("/verify-mobile", Some(&probe_code), json!({ "code": "x" }))
            .await;
        match res.status() {
            StatusCode::UNPROCESSABLE_ENTITY => break,
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!(
                "no recovery within 8 s ({attempts} attempts): {other}, {}",
                res.text().await.unwrap_or_default()
            ),
        }
    }
    eprintln!(
        "recovered {:?} after the restart ({attempts} attempts)",
        restarted.elapsed()
    );

    // The refused requests spent nothing: both codes work now, once.
    let res = service
        .post(
            "/set-password",
            Some(&password_code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(service.user(&user1).await["status"], "active");
    let res = service
        .post(
            "/set-password",
            Some(&password_code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
        Some(&password_code),
    )
    .await;
    let res = service
        .post(
            "/verify-mobile",
            Some(&mobile_code),
            json!({ "code": sms2 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(service.user(&user2).await["mobile_verified"], true);
    let sms3 = service.latest_code(&user3, "sms").await;
    let res = service
        .post("/verify-mobile", Some(&probe_code), json!({ "code": sms3 }))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the probe's code was never spent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_revoked_on_one_service_is_refused_by_the_other() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let (a, b) = two_services(&redis.url()).await;
    let (user_id, code) = a.through_mobile().await;
    let run = common::claims_of(&code)["run"]
        .as_str()
        .expect("run")
        .to_owned();
    // Revoked through one service's workflow; the mark lives in the shared Redis.
    a.workflow.revoke_run(&run).await.expect("revoke");
    let res = b
        .post(
            "/set-password",
            Some(&code),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
        Some(&code),
    )
    .await;
    assert_eq!(b.user(&user_id).await["status"], "invited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_sms_codes_abort_the_run_for_every_service() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let (a, b) = two_services(&redis.url()).await;
    let (user_id, code) = a.through_email().await;
    let sms = a.latest_code(&user_id, "sms").await;
    let wrong = if sms == "000000" { "111111" } else { "000000" };
    for (service, status) in [
        (&a, StatusCode::UNPROCESSABLE_ENTITY),
        (&b, StatusCode::UNPROCESSABLE_ENTITY),
        (&a, StatusCode::TOO_MANY_REQUESTS),
    ] {
        let res = service
            .post("/verify-mobile", Some(&code), json!({ "code": wrong }))
            .await;
        assert_eq!(res.status(), status);
    }
    let res = b
        .post("/verify-mobile", Some(&code), json!({ "code": sms }))
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
        Some(&code),
    )
    .await;
}
