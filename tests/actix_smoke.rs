//! The actix-web onboarding service, started the way the cross-framework suite starts it, through the whole flow.

use otac::{Key, KeySet};
use otac_examples::config::{memory_replay, onboarding_workflow};
use otac_examples::domain::{Directory, OutboxMessage};
use otac_examples::onboarding_actix;
use reqwest::StatusCode;
use serde_json::{Value, json};

const HEADER: &str = "one-time-authorization-code";

#[tokio::test(flavor = "multi_thread")]
async fn actix_onboarding_runs_the_whole_flow() {
    let keys =
        KeySet::new(Key::hs256("actix smoke test secret of at least 32 bytes").expect("key"));
    let workflow = onboarding_workflow(keys, memory_replay(), false).expect("workflow");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let server =
        onboarding_actix::spawn(&workflow, Directory::default(), None, listener).expect("spawn");
    let client = reqwest::Client::new();
    let post = |path: &str, code: Option<&str>, body: Value| {
        let mut req = client.post(server.url(path)).json(&body);
        if let Some(code) = code {
            req = req.header(HEADER, code);
        }
        req.send()
    };
    let outbox = |user: String| {
        let url = server.url(&format!("/_dev/outbox?user_id={user}"));
        let client = client.clone();
        async move {
            let messages: Vec<OutboxMessage> = client
                .get(url)
                .send()
                .await
                .expect("outbox")
                .json()
                .await
                .expect("outbox json");
            messages
        }
    };
    let code_of = |res: &reqwest::Response| {
        res.headers()
            .get(HEADER)
            .expect("a code header")
            .to_str()
            .expect("ascii")
            .to_owned()
    };

    let res = post(
        "/invitations",
        None,
        json!({"email": "ada@example.com", "mobile": "+15550100"}),
    )
    .await
    .expect("invite");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get(HEADER).is_none());
    let user_id = res.json::<Value>().await.expect("json")["user_id"]
        .as_str()
        .expect("user_id")
        .to_owned();

    let email = outbox(user_id.clone()).await.remove(0);
    assert_eq!(email.channel, "email");
    let res = post(
        "/verify-email",
        None,
        json!({"user_id": user_id, "code": email.code}),
    )
    .await
    .expect("verify-email");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let to_mobile = code_of(&res);

    // Skipping a step: a valid code for another step.
    let res = post(
        "/set-password",
        Some(&to_mobile),
        json!({"password": "correct horse"}),
    )
    .await
    .expect("set-password");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Value>().await.expect("problem")["code"],
        "otac_wrong_step"
    );

    // A mistyped SMS code does not burn the code (consumed on success only).
    let res = post(
        "/verify-mobile",
        Some(&to_mobile),
        json!({"code": "not-it"}),
    )
    .await
    .expect("verify-mobile");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.headers().get(HEADER).is_none());
    let sms = outbox(user_id.clone())
        .await
        .into_iter()
        .find(|m| m.channel == "sms")
        .expect("an sms");
    let res = post(
        "/verify-mobile",
        Some(&to_mobile),
        json!({"code": sms.code}),
    )
    .await
    .expect("verify-mobile");
    assert_eq!(res.status(), StatusCode::OK);
    let to_password = code_of(&res);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body, json!({"user_id": user_id, "mobile_verified": true}));

    let res = post(
        "/verify-mobile",
        Some(&to_mobile),
        json!({"code": sms.code}),
    )
    .await
    .expect("replay");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json::<Value>().await.expect("problem")["code"],
        "otac_replayed"
    );

    let res = post(
        "/set-password",
        Some(&to_password),
        json!({"password": "correct horse"}),
    )
    .await
    .expect("set-password");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let res = client
        .get(server.url(&format!("/users/{user_id}")))
        .send()
        .await
        .expect("user");
    assert_eq!(res.status(), StatusCode::OK);
    let user: Value = res.json().await.expect("json");
    assert_eq!(
        user,
        json!({"user_id": user_id, "status": "active", "email_verified": true, "mobile_verified": true})
    );
    server.stop();
}
