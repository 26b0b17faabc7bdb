//! Shared pieces of the end-to-end tests: starting the onboarding service of either framework on a loopback
//! port, driving its workflow over HTTP, forging codes with the test secret, and checking problem responses.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use otac::{Key, KeySet, Replay, Workflow};
use otac_examples::config::{self, onboarding_workflow};
use otac_examples::domain::{Directory, OutboxMessage};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

pub const SECRET: &str = "end-to-end-test-secret-of-at-least-32-bytes";
pub const HEADER: &str = "One-Time-Authorization-Code";

/// The web framework a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Axum,
    Actix,
}

/// What keeps a service running: a task on the test's runtime (axum) or a server thread (actix-web).
enum Running {
    Task(tokio::task::JoinHandle<()>),
    Actix(Option<otac_examples::onboarding_actix::ActixServer>),
}

/// A running onboarding service.
pub struct Server {
    pub base: String,
    pub client: Client,
    pub workflow: Workflow,
    task: Running,
}

impl Drop for Server {
    fn drop(&mut self) {
        match &mut self.task {
            Running::Task(task) => task.abort(),
            // Stopping joins the server's thread: do it off the async worker.
            Running::Actix(server) => {
                if let Some(server) = server.take() {
                    std::thread::spawn(move || server.stop());
                }
            }
        }
    }
}

pub fn workflow_with(replay: Replay, expose: bool) -> Workflow {
    let keys = KeySet::new(Key::hs256(SECRET).expect("test secret"));
    onboarding_workflow(keys, replay, expose).expect("onboarding workflow")
}

/// Starts the onboarding service on `framework` with the test secret and an in-memory store.
pub async fn start(framework: Framework) -> Server {
    start_with(
        framework,
        workflow_with(config::memory_replay(), false),
        None,
    )
    .await
}

pub async fn start_with(framework: Framework, workflow: Workflow, cors: Option<&str>) -> Server {
    start_sharing(framework, workflow, cors, Directory::default()).await
}

/// Like [`start_with`], on `directory`: services started with clones of one directory share their users, as
/// instances of one service sharing a database do.
pub async fn start_sharing(
    framework: Framework,
    workflow: Workflow,
    cors: Option<&str>,
    directory: Directory,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = match framework {
        Framework::Axum => {
            let mut app = otac_examples::onboarding::router(&workflow, directory);
            if let Some(origin) = cors {
                app = app.layer(otac_examples::onboarding::cors(&workflow, origin).expect("cors"));
            }
            Running::Task(tokio::spawn(async move {
                axum::serve(listener, app).await.expect("serve");
            }))
        }
        Framework::Actix => {
            let listener = listener.into_std().expect("std listener");
            listener.set_nonblocking(false).expect("blocking listener");
            Running::Actix(Some(
                otac_examples::onboarding_actix::spawn(&workflow, directory, cors, listener)
                    .expect("actix server"),
            ))
        }
    };
    let client = Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    Server {
        base: format!("http://{addr}"),
        client,
        workflow,
        task,
    }
}

/// Serves any axum `app` on a loopback port, with the helpers of [`Server`].
pub async fn serve_router(app: axum::Router, workflow: Workflow) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = Running::Task(tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    }));
    Server {
        base: format!("http://{addr}"),
        client: Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("client"),
        workflow,
        task,
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, code: Option<&str>, body: Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(code) = code {
            req = req.header(HEADER, code);
        }
        req.send().await.expect("request")
    }

    pub async fn invite(&self) -> String {
        let res = self
            .post(
                "/invitations",
                None,
                json!({"email": "ada@example.com", "mobile": "+15550100"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(
            res.headers().get(HEADER).is_none(),
            "invitations issue no code"
        );
        let body: Value = res.json().await.expect("json");
        body["user_id"].as_str().expect("user_id").to_owned()
    }

    pub async fn outbox(&self, user_id: &str) -> Vec<OutboxMessage> {
        let res = self
            .client
            .get(self.url(&format!("/_dev/outbox?user_id={user_id}")))
            .send()
            .await
            .expect("outbox");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("outbox json")
    }

    pub async fn latest_code(&self, user_id: &str, channel: &str) -> String {
        self.outbox(user_id)
            .await
            .into_iter()
            .rev()
            .find(|m| m.channel == channel)
            .map(|m| m.code)
            .expect("a message on that channel")
    }

    /// Invites a user and verifies the email: the user id and the code for `verify-mobile`.
    pub async fn through_email(&self) -> (String, String) {
        let user_id = self.invite().await;
        let code = self.latest_code(&user_id, "email").await;
        let res = self
            .post(
                "/verify-email",
                None,
                json!({"user_id": user_id, "code": code}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        (user_id, otac_of(&res))
    }

    /// Continues through `verify-mobile`: the code for `set-password`.
    pub async fn through_mobile(&self) -> (String, String) {
        let (user_id, code) = self.through_email().await;
        let sms = self.latest_code(&user_id, "sms").await;
        let res = self
            .post("/verify-mobile", Some(&code), json!({"code": sms}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        (user_id, otac_of(&res))
    }

    pub async fn user(&self, user_id: &str) -> Value {
        let res = self
            .client
            .get(self.url(&format!("/users/{user_id}")))
            .send()
            .await
            .expect("user");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("user json")
    }
}

pub fn otac_of(res: &Response) -> String {
    res.headers()
        .get(HEADER)
        .expect("a one-time authorization code header")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Asserts a problem+json rejection with `status` and stable `code`, and that the body does not echo `token`.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str, token: Option<&str>) {
    assert_eq!(res.status(), status, "status for {code}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "content type for {code}"
    );
    if status == StatusCode::UNAUTHORIZED {
        let www = res.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(www.contains(code), "WWW-Authenticate names {code}: {www}");
    }
    assert!(
        res.headers().get(HEADER).is_none(),
        "a rejection issues no code"
    );
    let text = res.text().await.expect("body");
    if let Some(token) = token {
        assert!(!text.contains(token), "the token is not echoed back");
    }
    let body: Value = serde_json::from_str(&text).expect("problem json");
    assert_eq!(body["code"], code, "body: {text}");
    assert_eq!(body["status"], status.as_u16());
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_json(value: &Value) -> String {
    b64(value.to_string().as_bytes())
}

/// The payload claims of a code (no verification).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

pub fn test_kid() -> String {
    Key::hs256(SECRET).expect("key").kid().to_owned()
}

pub fn standard_header() -> Value {
    json!({"alg": "HS256", "typ": "otac+jwt", "kid": test_kid()})
}

/// Signs `header_b64.payload_b64` with HS256 and `secret`.
pub fn sign_raw(header_b64: &str, payload_b64: &str, secret: &[u8]) -> String {
    let message = format!("{header_b64}.{payload_b64}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("hmac");
    mac.update(message.as_bytes());
    format!("{message}.{}", b64(&mac.finalize().into_bytes()))
}

/// A code with `header` and `claims`, signed with the test secret.
pub fn forge(header: &Value, claims: &Value) -> String {
    sign_raw(&b64_json(header), &b64_json(claims), SECRET.as_bytes())
}

/// Claims like a genuine `verify-email` code for `set-password` or another `aud`.
pub fn genuine_claims(aud: Value, sub: Option<&str>) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": config::ISSUER,
        "aud": aud,
        "exp": now + 120,
        "iat": now,
        "nbf": now,
        "jti": format!("forged-{}", rand_suffix()),
        "wf": "onboarding",
        "run": "run-1",
        "stp": "verify-email",
        "rat": now,
        "ctx": {"user_id": "u_nobody"},
    });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    claims
}

fn rand_suffix() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("random");
    b64(&b)
}
