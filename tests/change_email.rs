//! Caller binding over real sockets: codes bound to an authenticated principal (two users with valid sessions)
//! and to a device header on an open API.

use otac::{Key, KeySet, MemoryStore, Replay};
use otac_examples::change_email::{self, Accounts};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const HEADER: &str = "one-time-authorization-code";

struct Service {
    base: String,
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Service {
    let keys =
        KeySet::new(Key::hs256("change-email-test-secret-of-32-bytes-or-more").expect("key"));
    let email =
        change_email::email_change_workflow(keys.clone(), Replay::store(MemoryStore::new(1024)))
            .expect("wf");
    let device =
        change_email::device_workflow(keys, Replay::store(MemoryStore::new(1024))).expect("wf");
    let app = change_email::router(&email, &device, Accounts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Service {
        base,
        client: Client::new(),
        task,
    }
}

impl Service {
    async fn post(
        &self,
        path: &str,
        bearer: Option<&str>,
        code: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(bearer) = bearer {
            req = req.bearer_auth(bearer);
        }
        if let Some(code) = code {
            req = req.header(HEADER, code);
        }
        req.send().await.expect("request")
    }

    async fn emailed_code(&self, user: &str) -> String {
        let res = self
            .client
            .get(format!("{}/_dev/outbox?user={user}", self.base))
            .send()
            .await
            .expect("outbox");
        let messages: Vec<Value> = res.json().await.expect("json");
        messages.last().expect("a message")["code"]
            .as_str()
            .expect("code")
            .to_owned()
    }

    async fn start_change(&self, bearer: &str, new_email: &str) -> String {
        let res = self
            .post(
                "/email-change",
                Some(bearer),
                None,
                json!({"new_email": new_email}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        res.headers()[HEADER].to_str().expect("ascii").to_owned()
    }
}

async fn problem_code(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.expect("problem json");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn code_bound_to_one_user_is_refused_for_another_user_and_not_consumed() {
    let svc = start().await;
    let code = svc.start_change("alice-token", "alice@new.example").await;
    let emailed = svc.emailed_code("alice").await;
    // Bob has a valid session and Alice's code (and even her emailed code): refused, before the handler.
    let res = svc
        .post(
            "/email-change/confirm",
            Some("bob-token"),
            Some(&code),
            json!({"code": emailed}),
        )
        .await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::FORBIDDEN, "otac_binding_mismatch".to_owned())
    );
    // Alice can still use it: the rejected attempt did not spend it.
    let res = svc
        .post(
            "/email-change/confirm",
            Some("alice-token"),
            Some(&code),
            json!({"code": emailed}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body, json!({"user": "alice", "email": "alice@new.example"}));
    // Once.
    let res = svc
        .post(
            "/email-change/confirm",
            Some("alice-token"),
            Some(&code),
            json!({"code": emailed}),
        )
        .await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "otac_replayed".to_owned())
    );
}

#[tokio::test]
async fn the_code_does_not_reveal_the_principal() {
    let svc = start().await;
    let code = svc.start_change("alice-token", "alice@new.example").await;
    let claims = otac::dangerous::insecure_decode_claims(&code).expect("claims");
    let sub = claims.sub.expect("bound");
    assert!(!sub.contains("alice"));
    assert_eq!(
        claims.aud.steps(),
        ["email-change-confirm", "email-change-resend"]
    );
}

#[tokio::test]
async fn authentication_still_comes_first() {
    let svc = start().await;
    let code = svc.start_change("alice-token", "alice@new.example").await;
    let res = svc
        .post(
            "/email-change/confirm",
            None,
            Some(&code),
            json!({"code": "1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "unauthenticated");
    // And a step that needs a code still needs one with a valid session.
    let res = svc
        .post(
            "/email-change/confirm",
            Some("alice-token"),
            None,
            json!({"code": "1"}),
        )
        .await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::UNAUTHORIZED, "otac_required".to_owned())
    );
}

#[tokio::test]
async fn device_bound_code_works_only_from_the_same_device() {
    let svc = start().await;
    let device = |id: &'static str| {
        let base = svc.base.clone();
        let client = svc.client.clone();
        move |path: &'static str, code: Option<String>| {
            let mut req = client.post(format!("{base}{path}")).header("device-id", id);
            if let Some(code) = code {
                req = req.header(HEADER, code);
            }
            req.send()
        }
    };
    let phone = device("phone-1");
    let other = device("phone-2");
    let res = phone("/device/start", None).await.expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let code = res.headers()[HEADER].to_str().expect("ascii").to_owned();

    let res = other("/device/finish", Some(code.clone()))
        .await
        .expect("request");
    assert_eq!(
        problem_code(res).await,
        (StatusCode::FORBIDDEN, "otac_binding_mismatch".to_owned())
    );
    // No device header at all is a mismatch too.
    let res = svc
        .client
        .post(format!("{}/device/finish", svc.base))
        .header(HEADER, &code)
        .send()
        .await
        .expect("request");
    assert_eq!(
        problem_code(res).await,
        (StatusCode::FORBIDDEN, "otac_binding_mismatch".to_owned())
    );
    let res = phone("/device/finish", Some(code.clone()))
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    // A start without a device id gets no code: there is nothing to bind it to.
    let res = svc
        .client
        .post(format!("{}/device/start", svc.base))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(HEADER).is_none());
}

#[tokio::test]
async fn a_resent_code_replaces_the_older_one() {
    let svc = start().await;
    let first = svc.start_change("alice-token", "alice@new.example").await;
    let res = svc
        .post(
            "/email-change/resend",
            Some("alice-token"),
            Some(&first),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let second = res.headers()[HEADER].to_str().expect("ascii").to_owned();
    let emailed = svc.emailed_code("alice").await;
    // The older code, never used, is dead: at confirm and at resend.
    for path in ["/email-change/confirm", "/email-change/resend"] {
        let res = svc
            .post(
                path,
                Some("alice-token"),
                Some(&first),
                json!({"code": emailed}),
            )
            .await;
        assert_eq!(
            problem_code(res).await,
            (StatusCode::UNAUTHORIZED, "otac_replayed".to_owned())
        );
    }
    // Bob cannot resend Alice's code either.
    let res = svc
        .post(
            "/email-change/resend",
            Some("bob-token"),
            Some(&second),
            json!({}),
        )
        .await;
    assert_eq!(
        problem_code(res).await,
        (StatusCode::FORBIDDEN, "otac_binding_mismatch".to_owned())
    );
    let res = svc
        .post(
            "/email-change/confirm",
            Some("alice-token"),
            Some(&second),
            json!({"code": emailed}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
