//! The onboarding example's HTTP contract, end to end over loopback sockets, for every framework: the whole flow,
//! every rejection of the design's error table (status and stable code), one-time use under concurrency, and bad
//! input that must never panic or answer 500.

mod common;

use std::sync::Arc;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

macro_rules! for_each_framework {
    ($($name:ident),* $(,)?) => {
        mod axum_service {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Framework::Axum).await
                }
            )*
        }
        mod actix_service {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Framework::Actix).await
                }
            )*
        }
    };
}

for_each_framework!(
    full_flow_activates_the_user,
    step_without_code_is_required,
    skipped_step_is_wrong_step_and_not_consumed,
    reused_code_is_replayed,
    mistyped_sms_code_does_not_spend_the_code,
    failed_set_password_spends_the_code,
    another_users_code_does_not_verify_my_mobile,
    malformed_codes_are_rejected,
    invalid_codes_are_rejected,
    expired_codes_are_rejected,
    wrong_audience_is_wrong_step,
    code_without_binding_is_binding_mismatch,
    concurrent_uses_of_one_code_let_exactly_one_through,
    concurrent_uses_with_consume_on_success_let_exactly_one_through,
    bad_input_never_answers_500,
    instances_sharing_a_secret_accept_each_others_codes,
    browser_origin_can_drive_the_workflow,
    too_many_wrong_sms_codes_abort_the_run,
    revoked_run_is_refused_mid_flow,
    openapi_document_declares_the_code_header,
    email_codes_cannot_be_guessed_without_limit,
);

async fn full_flow_activates_the_user(fw: Framework) {
    let server = start(fw).await;
    let user_id = server.invite().await;
    let user = server.user(&user_id).await;
    assert_eq!(user["status"], "invited");
    assert_eq!(user["email_verified"], false);

    let email_code = server.latest_code(&user_id, "email").await;
    let res = server
        .post(
            "/verify-email",
            None,
            json!({"user_id": user_id, "code": email_code}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let to_mobile = otac_of(&res);
    let claims = claims_of(&to_mobile);
    assert_eq!(claims["aud"], "verify-mobile");
    assert_eq!(claims["stp"], "verify-email");
    assert!(
        !to_mobile.contains(&user_id) || claims["sub"] != json!(user_id),
        "the binding is a keyed hash, not the user id"
    );
    let sub = claims["sub"]
        .as_str()
        .expect("bound to the user")
        .to_owned();
    assert_ne!(sub, user_id);

    let sms = server.latest_code(&user_id, "sms").await;
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let to_password = otac_of(&res);
    let next = claims_of(&to_password);
    assert_eq!(next["aud"], "set-password");
    assert_eq!(
        next["run"], claims["run"],
        "the run id is carried along the chain"
    );
    assert_eq!(
        next["rat"], claims["rat"],
        "the run start is carried along the chain"
    );
    assert_eq!(
        next["sub"], claims["sub"],
        "the binding is carried along the chain"
    );
    assert_ne!(next["jti"], claims["jti"]);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["user_id"],
        json!(user_id),
        "the user comes from the code"
    );

    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        res.headers().get(HEADER).is_none(),
        "the last step issues no code"
    );

    let user = server.user(&user_id).await;
    assert_eq!(
        user,
        json!({"user_id": user_id, "status": "active", "email_verified": true, "mobile_verified": true})
    );
}

async fn step_without_code_is_required(fw: Framework) {
    let server = start(fw).await;
    for path in ["/verify-mobile", "/set-password"] {
        let res = server
            .post(path, None, json!({"code": "123456", "password": "x"}))
            .await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "otac_required", None).await;
    }
    let res = server
        .post("/set-password", Some(""), json!({"password": "x"}))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_required", None).await;
}

async fn skipped_step_is_wrong_step_and_not_consumed(fw: Framework) {
    let server = start(fw).await;
    let (user_id, to_mobile) = server.through_email().await;
    // Skipping verify-mobile: step 2's code at step 3.
    let res = server
        .post(
            "/set-password",
            Some(&to_mobile),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "otac_wrong_step",
        Some(&to_mobile),
    )
    .await;
    // The rejected code was not spent: it still works where it belongs.
    let sms = server.latest_code(&user_id, "sms").await;
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // And step 3's code is no good at step 2 either.
    let to_password = otac_of(&res);
    let res = server
        .post("/verify-mobile", Some(&to_password), json!({"code": sms}))
        .await;
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "otac_wrong_step",
        Some(&to_password),
    )
    .await;
}

async fn reused_code_is_replayed(fw: Framework) {
    let server = start(fw).await;
    let (user_id, to_password) = server.through_mobile().await;
    let body = json!({"password": "correct horse battery"});
    let res = server
        .post("/set-password", Some(&to_password), body.clone())
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = server.post("/set-password", Some(&to_password), body).await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
        Some(&to_password),
    )
    .await;
    assert_eq!(server.user(&user_id).await["status"], "active");
}

async fn mistyped_sms_code_does_not_spend_the_code(fw: Framework) {
    let server = start(fw).await;
    let (user_id, to_mobile) = server.through_email().await;
    let sms = server.latest_code(&user_id, "sms").await;
    let wrong = if sms == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let res = server
            .post("/verify-mobile", Some(&to_mobile), json!({"code": wrong}))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.headers().get(HEADER).is_none(), "no code on failure");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], "wrong_verification_code");
    }
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Spent on that success.
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
        Some(&to_mobile),
    )
    .await;
}

async fn failed_set_password_spends_the_code(fw: Framework) {
    // set-password spends its code before the handler (the default): a retried request cannot replay it.
    let server = start(fw).await;
    let (_, to_password) = server.through_mobile().await;
    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "short"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
        Some(&to_password),
    )
    .await;
}

async fn another_users_code_does_not_verify_my_mobile(fw: Framework) {
    let server = start(fw).await;
    let (alice, alice_code) = server.through_email().await;
    let (mallory, _mallory_code) = server.through_email().await;
    let mallory_sms = server.latest_code(&mallory, "sms").await;
    let alice_sms = server.latest_code(&alice, "sms").await;
    if mallory_sms != alice_sms {
        // Alice's code names Alice: Mallory's SMS code does not verify Alice's number, nor Mallory's.
        let res = server
            .post(
                "/verify-mobile",
                Some(&alice_code),
                json!({"code": mallory_sms}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(server.user(&mallory).await["mobile_verified"], false);
    assert_eq!(server.user(&alice).await["mobile_verified"], false);
    // Alice's code was not spent by that attempt.
    let res = server
        .post(
            "/verify-mobile",
            Some(&alice_code),
            json!({"code": alice_sms}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn malformed_codes_are_rejected(fw: Framework) {
    let server = start(fw).await;
    let (_, good) = server.through_email().await;
    let parts: Vec<&str> = good.split('.').collect();
    let body = json!({"code": "123456"});
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-code".into()),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("four segments", format!("{good}.x")),
        (
            "bad base64 header",
            format!("!!!.{}.{}", parts[1], parts[2]),
        ),
        (
            "header not json",
            format!("{}.{}.{}", b64(b"{not json"), parts[1], parts[2]),
        ),
        (
            "duplicate header member",
            format!(
                "{}.{}.{}",
                b64(format!(
                    r#"{{"alg":"HS256","alg":"none","typ":"otac+jwt","kid":"{}"}}"#,
                    test_kid()
                )
                .as_bytes()),
                parts[1],
                parts[2]
            ),
        ),
        ("oversized", format!("{good}{}", "A".repeat(5000))),
        (
            "aud of the wrong type",
            forge(&standard_header(), &genuine_claims(json!(42), Some("x"))),
        ),
        ("missing exp", {
            let mut c = genuine_claims(json!("verify-mobile"), Some("x"));
            c.as_object_mut().expect("object").remove("exp");
            forge(&standard_header(), &c)
        }),
        ("missing jti", {
            let mut c = genuine_claims(json!("verify-mobile"), Some("x"));
            c.as_object_mut().expect("object").remove("jti");
            forge(&standard_header(), &c)
        }),
    ];
    for (what, code) in cases {
        let res = server
            .post("/verify-mobile", Some(&code), body.clone())
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_problem(res, StatusCode::UNAUTHORIZED, "otac_malformed", Some(&code)).await;
    }
    // Two code headers.
    let res = server
        .client
        .post(server.url("/verify-mobile"))
        .header(HEADER, &good)
        .header(HEADER, &good)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_malformed", Some(&good)).await;
}

async fn invalid_codes_are_rejected(fw: Framework) {
    let server = start(fw).await;
    let (_, good) = server.through_email().await;
    let parts: Vec<&str> = good.split('.').collect();
    let claims = claims_of(&good);
    let header_b64 = parts[0];
    let mut tampered_claims = claims.clone();
    tampered_claims["ctx"]["user_id"] = json!("u_someone_else");
    let with_header = |h: Value| forge(&h, &claims);
    let mut sig = parts[2].as_bytes().to_vec();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, String)> = vec![
        (
            "tampered signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                String::from_utf8(sig).expect("ascii")
            ),
        ),
        (
            "tampered payload",
            format!("{header_b64}.{}.{}", b64_json(&tampered_claims), parts[2]),
        ),
        (
            "other secret",
            sign_raw(
                header_b64,
                parts[1],
                b"another-secret-that-is-32-bytes-long!!",
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.{}",
                b64_json(&json!({"alg": "none", "typ": "otac+jwt", "kid": test_kid()})),
                parts[1],
                parts[2]
            ),
        ),
        (
            "alg HS512 on an HS256 key",
            with_header(json!({"alg": "HS512", "typ": "otac+jwt", "kid": test_kid()})),
        ),
        (
            "unknown kid",
            with_header(json!({"alg": "HS256", "typ": "otac+jwt", "kid": "nope"})),
        ),
        (
            "no kid",
            with_header(json!({"alg": "HS256", "typ": "otac+jwt"})),
        ),
        (
            "wrong typ",
            with_header(json!({"alg": "HS256", "typ": "JWT", "kid": test_kid()})),
        ),
        (
            "jku header",
            with_header(
                json!({"alg": "HS256", "typ": "otac+jwt", "kid": test_kid(), "jku": "https://evil.example/jwks"}),
            ),
        ),
        (
            "jwk header",
            with_header(
                json!({"alg": "HS256", "typ": "otac+jwt", "kid": test_kid(), "jwk": {"kty": "oct", "k": "AAAA"}}),
            ),
        ),
        (
            "x5u header",
            with_header(
                json!({"alg": "HS256", "typ": "otac+jwt", "kid": test_kid(), "x5u": "https://evil.example/cert"}),
            ),
        ),
        (
            "crit header",
            with_header(
                json!({"alg": "HS256", "typ": "otac+jwt", "kid": test_kid(), "crit": ["exp"]}),
            ),
        ),
        ("wrong issuer", {
            let mut c = claims.clone();
            c["iss"] = json!("someone-else");
            forge(&standard_header(), &c)
        }),
        ("other workflow", {
            let mut c = claims.clone();
            c["wf"] = json!("password-reset");
            forge(&standard_header(), &c)
        }),
        ("lives longer than issued", {
            let mut c = claims.clone();
            c["exp"] = json!(now() + 24 * 3600);
            forge(&standard_header(), &c)
        }),
    ];
    for (what, code) in cases {
        let res = server
            .post("/verify-mobile", Some(&code), json!({"code": "1"}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        let text = res.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["code"], "otac_invalid", "{what}: {text}");
        assert!(!text.contains(&code), "{what}: token not echoed");
    }
}

async fn expired_codes_are_rejected(fw: Framework) {
    let server = start(fw).await;
    let (_, good) = server.through_email().await;
    let claims = claims_of(&good);
    let t = now();
    let mut past = claims.clone();
    past["iat"] = json!(t - 400);
    past["nbf"] = json!(t - 400);
    past["exp"] = json!(t - 100);
    past["rat"] = json!(t - 400);
    let mut future = claims.clone();
    future["nbf"] = json!(t + 60);
    let mut run_over = claims.clone();
    run_over["rat"] = json!(t - 7200);
    let mut within_leeway = claims.clone();
    within_leeway["exp"] = json!(t - 2);
    within_leeway["jti"] = json!("within-leeway");
    for (what, c) in [
        ("past exp", past),
        ("before nbf", future),
        ("run lifetime over", run_over),
    ] {
        let code = forge(&standard_header(), &c);
        let res = server
            .post("/verify-mobile", Some(&code), json!({"code": "1"}))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_problem(res, StatusCode::UNAUTHORIZED, "otac_expired", Some(&code)).await;
    }
    // Two seconds past exp is inside the default 5 s leeway: the code passes verification (and reaches the
    // handler, which refuses the SMS code).
    let code = forge(&standard_header(), &within_leeway);
    let res = server
        .post("/verify-mobile", Some(&code), json!({"code": "x"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn wrong_audience_is_wrong_step(fw: Framework) {
    let server = start(fw).await;
    let (_, good) = server.through_email().await;
    let claims = claims_of(&good);
    for aud in [
        json!("set-password"),
        json!([]),
        json!(["invitations", "set-password"]),
        json!("verify-email"),
    ] {
        let mut c = claims.clone();
        c["aud"] = aud.clone();
        let code = forge(&standard_header(), &c);
        let res = server
            .post("/verify-mobile", Some(&code), json!({"code": "1"}))
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "aud {aud}");
        assert_problem(res, StatusCode::FORBIDDEN, "otac_wrong_step", Some(&code)).await;
    }
}

async fn code_without_binding_is_binding_mismatch(fw: Framework) {
    let server = start(fw).await;
    let code = forge(
        &standard_header(),
        &genuine_claims(json!("verify-mobile"), None),
    );
    let res = server
        .post("/verify-mobile", Some(&code), json!({"code": "1"}))
        .await;
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "otac_binding_mismatch",
        Some(&code),
    )
    .await;
    // A code bound to a subject that is not the user it names does not let the handler act for that user.
    let (victim, _) = server.through_email().await;
    let mut c = genuine_claims(json!("verify-mobile"), Some("bm90LXRoZS12aWN0aW0"));
    c["ctx"]["user_id"] = json!(victim);
    let code = forge(&standard_header(), &c);
    let res = server
        .post("/verify-mobile", Some(&code), json!({"code": "1"}))
        .await;
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "otac_binding_mismatch",
        Some(&code),
    )
    .await;
    assert_eq!(server.user(&victim).await["mobile_verified"], false);
}

async fn concurrent_uses_of_one_code_let_exactly_one_through(fw: Framework) {
    let server = Arc::new(start(fw).await);
    let (user_id, to_password) = server.through_mobile().await;
    let statuses = fire(
        &server,
        "/set-password",
        &to_password,
        json!({"password": "correct horse battery"}),
        16,
    )
    .await;
    let passed = statuses
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    let reached_handler_again = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    let replayed = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(passed, 1, "{statuses:?}");
    assert_eq!(
        reached_handler_again, 0,
        "no second request reached the handler: {statuses:?}"
    );
    assert_eq!(replayed, 15, "{statuses:?}");
    assert_eq!(server.user(&user_id).await["status"], "active");
}

async fn concurrent_uses_with_consume_on_success_let_exactly_one_through(fw: Framework) {
    let server = Arc::new(start(fw).await);
    let (user_id, to_mobile) = server.through_email().await;
    let sms = server.latest_code(&user_id, "sms").await;
    let statuses = fire(
        &server,
        "/verify-mobile",
        &to_mobile,
        json!({"code": sms}),
        16,
    )
    .await;
    let passed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let reached_handler_again = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(passed, 1, "{statuses:?}");
    assert_eq!(reached_handler_again, 0, "{statuses:?}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        15,
        "{statuses:?}"
    );
}

/// Sends the same code `n` times at once.
async fn fire(
    server: &Arc<Server>,
    path: &'static str,
    code: &str,
    body: Value,
    n: usize,
) -> Vec<StatusCode> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (server, barrier, code, body) = (
            Arc::clone(server),
            Arc::clone(&barrier),
            code.to_owned(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            server.post(path, Some(&code), body).await.status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses
}

async fn bad_input_never_answers_500(fw: Framework) {
    let server = start(fw).await;
    let (_, to_mobile) = server.through_email().await;
    let raw = |path: &str, code: Option<&str>, body: &'static str, ct: &'static str| {
        let mut req = server
            .client
            .post(server.url(path))
            .header("content-type", ct)
            .body(body);
        if let Some(code) = code {
            req = req.header(HEADER, code.to_owned());
        }
        req.send()
    };
    for path in [
        "/invitations",
        "/verify-email",
        "/verify-mobile",
        "/set-password",
    ] {
        for (body, ct) in [
            ("{", "application/json"),
            ("[]", "application/json"),
            ("{\"code\": 5}", "application/json"),
            ("\u{0}\u{1}", "application/json"),
            ("code=1", "application/x-www-form-urlencoded"),
        ] {
            let res = raw(path, Some(&to_mobile), body, ct)
                .await
                .expect("request");
            let status = res.status();
            assert!(status.is_client_error(), "{path} {body:?}: {status}");
        }
    }
    // Garbage header bytes.
    let res = server
        .client
        .post(server.url("/set-password"))
        .header(
            HEADER,
            reqwest::header::HeaderValue::from_bytes(b"\xff\xfe.\x80.x").expect("opaque bytes"),
        )
        .json(&json!({"password": "x"}))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::UNAUTHORIZED, "otac_malformed", None).await;
    // A huge header is refused by the HTTP layer or as malformed, never a 5xx.
    let huge = "A".repeat(60_000);
    if let Ok(res) = server
        .client
        .post(server.url("/set-password"))
        .header(HEADER, &huge)
        .json(&json!({"password": "x"}))
        .send()
        .await
    {
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    // Unknown users and odd paths.
    let res = server
        .client
        .get(server.url("/users/nobody"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = server
        .post(
            "/verify-email",
            None,
            json!({"user_id": "nobody", "code": "123456"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers().get(HEADER).is_none());
    // The service still works.
    let res = server
        .client
        .get(server.url("/users/nobody"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn instances_sharing_a_secret_accept_each_others_codes(fw: Framework) {
    // Two instances, same secret, their own in-memory stores: a code from one verifies on the other (the kid is
    // derived from the key and the issuer is fixed). The user directory is per instance, so the handler answers
    // 404 for a user it does not know, which shows the code itself was accepted.
    let first = start(fw).await;
    let second = start(fw).await;
    let (_, to_mobile) = first.through_email().await;
    let res = second
        .post(
            "/verify-mobile",
            Some(&to_mobile),
            json!({"code": "000000"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // With a different secret it is refused.
    let other = KeySet::new(Key::hs256("a-completely-different-secret-of-32-bytes").expect("key"));
    let workflow = otac_examples::config::onboarding_workflow(
        other,
        otac_examples::config::memory_replay(),
        false,
    )
    .expect("wf");
    let third = start_with(fw, workflow, None).await;
    let res = third
        .post(
            "/verify-mobile",
            Some(&to_mobile),
            json!({"code": "000000"}),
        )
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_invalid",
        Some(&to_mobile),
    )
    .await;
}

use otac::{Key, KeySet};

async fn browser_origin_can_drive_the_workflow(fw: Framework) {
    let origin = "http://127.0.0.1:8080";
    let server = start_with(
        fw,
        workflow_with(otac_examples::config::memory_replay(), true),
        Some(origin),
    )
    .await;
    let res = server
        .client
        .request(reqwest::Method::OPTIONS, server.url("/verify-mobile"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, one-time-authorization-code",
        )
        .send()
        .await
        .expect("preflight");
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], origin);
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(allowed.contains("one-time-authorization-code"), "{allowed}");
    assert!(allowed.contains("content-type"), "{allowed}");

    let user_id = server.invite().await;
    let code = server.latest_code(&user_id, "email").await;
    let res = server
        .client
        .post(server.url("/verify-email"))
        .header("origin", origin)
        .json(&json!({"user_id": user_id, "code": code}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["access-control-allow-origin"], origin);
    let exposed: String = res
        .headers()
        .get_all("access-control-expose-headers")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    assert!(exposed.contains("one-time-authorization-code"), "{exposed}");
    otac_of(&res);
}

async fn too_many_wrong_sms_codes_abort_the_run(fw: Framework) {
    let server = start(fw).await;
    let (user_id, to_mobile) = server.through_email().await;
    let sms = server.latest_code(&user_id, "sms").await;
    let wrong = if sms == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        let res = server
            .post("/verify-mobile", Some(&to_mobile), json!({"code": wrong}))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": wrong}))
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "too_many_attempts");
    // The run is over: even the right SMS code with the run's code is refused, distinctly from a replay.
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
        Some(&to_mobile),
    )
    .await;
    assert_eq!(server.user(&user_id).await["mobile_verified"], false);
}

async fn revoked_run_is_refused_mid_flow(fw: Framework) {
    let server = start(fw).await;
    let (user_id, to_password) = server.through_mobile().await;
    let run = claims_of(&to_password)["run"]
        .as_str()
        .expect("run")
        .to_owned();
    server.workflow.revoke_run(&run).await.expect("revoke");
    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_run_revoked",
        Some(&to_password),
    )
    .await;
    assert_eq!(server.user(&user_id).await["status"], "invited");
}

/// A chain across frameworks: step N on one framework issues a code that step N+1 on the other accepts (same
/// workflow object: same key and replay store; one user directory, like one database).
async fn chain_across(first: Framework, second: Framework) {
    let workflow = workflow_with(otac_examples::config::memory_replay(), false);
    let directory = otac_examples::domain::Directory::default();
    let a = start_sharing(first, workflow.clone(), None, directory.clone()).await;
    let b = start_sharing(second, workflow, None, directory).await;
    let (user_id, to_mobile) = a.through_email().await;
    let sms = a.latest_code(&user_id, "sms").await;
    let res = b
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{first:?} → {second:?}");
    let to_password = otac_of(&res);
    // Spent once for both.
    let res = a
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_problem(
        res,
        StatusCode::UNAUTHORIZED,
        "otac_replayed",
        Some(&to_mobile),
    )
    .await;
    let res = a
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.user(&user_id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_issues_actix_accepts() {
    chain_across(Framework::Axum, Framework::Actix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_issues_axum_accepts() {
    chain_across(Framework::Actix, Framework::Axum).await;
}

async fn openapi_document_declares_the_code_header(fw: Framework) {
    let server = start(fw).await;
    let res = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("body");
    // It parses back as an OpenAPI document.
    let doc: utoipa::openapi::OpenApi =
        serde_json::from_str(&text).expect("a valid OpenAPI document");
    let scheme = serde_json::to_value(
        doc.components
            .as_ref()
            .expect("components")
            .security_schemes
            .get("otac")
            .expect("otac scheme"),
    )
    .expect("json");
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "one-time-authorization-code");
    let raw: Value = serde_json::from_str(&text).expect("json");
    let op = |path: &str, method: &str| raw["paths"][path][method].clone();
    let requires = |o: &Value| {
        o["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("otac").is_some()))
    };
    let issues = |o: &Value, status: &str| {
        o["responses"][status]["headers"]
            .get("one-time-authorization-code")
            .is_some()
    };
    assert!(!requires(&op("/verify-email", "post")) && issues(&op("/verify-email", "post"), "200"));
    assert!(
        requires(&op("/verify-mobile", "post")) && issues(&op("/verify-mobile", "post"), "200")
    );
    assert!(
        !issues(&op("/verify-mobile", "post"), "422"),
        "no code on failures"
    );
    assert!(requires(&op("/set-password", "post")) && !issues(&op("/set-password", "post"), "204"));
    assert!(!requires(&op("/invitations", "post")) && !issues(&op("/invitations", "post"), "201"));
    for status in ["401", "403", "503"] {
        let text = op("/set-password", "post")["responses"][status].to_string();
        assert!(
            text.contains("application/problem+json"),
            "{status}: {text}"
        );
    }
    assert!(
        op("/set-password", "post")["responses"]["401"]
            .to_string()
            .contains("otac_replayed")
    );
}

async fn email_codes_cannot_be_guessed_without_limit(fw: Framework) {
    let server = start(fw).await;
    let user_id = server.invite().await;
    let code = server.latest_code(&user_id, "email").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let statuses = [
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    for status in statuses {
        let res = server
            .post(
                "/verify-email",
                None,
                json!({"user_id": user_id, "code": wrong}),
            )
            .await;
        assert_eq!(res.status(), status);
        assert!(res.headers().get(HEADER).is_none());
    }
    // The emailed code is void now: even the right one issues nothing.
    let res = server
        .post(
            "/verify-email",
            None,
            json!({"user_id": user_id, "code": code}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get(HEADER).is_none());
    assert_eq!(server.user(&user_id).await["email_verified"], false);
}
