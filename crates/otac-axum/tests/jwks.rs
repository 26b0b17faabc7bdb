//! Two services over real loopback sockets: the issuing one signs with an ES256 key and serves its JWKS; the
//! verifying one holds only that JWKS (loaded over HTTP at start-up) and the shared binding secret.
#![allow(clippy::unwrap_used)]

use axum::routing::post;
use axum::{Json, Router};
use otac::{ConfigError, Issuer};
use otac_axum::{
    AttachClaims, Binding, IssueOtacLayer, Key, KeySet, MemoryStore, Otac, OtacClaims, Replay,
    RequireOtacLayer, Step, Workflow,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const EC_PEM: &str = include_str!("../../otac/tests/keys/ec-a.pem");
const BINDING_SECRET: &[u8] = b"binding secret shared by both services";
const HEADER: &str = "one-time-authorization-code";

fn workflow(keys: KeySet) -> Workflow {
    Workflow::builder("onboarding")
        .issuer("accounts.test")
        .keys(keys.with_binding_secret(BINDING_SECRET).unwrap())
        .binding(Binding::subject())
        .replay(Replay::store(MemoryStore::new(64)))
        .step(Step::new("verify-email").then("verify-mobile"))
        .step(Step::new("verify-mobile"))
        .build()
        .unwrap()
}

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{addr}")
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
async fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn verify_email() -> (AttachClaims, Json<Value>) {
    (
        AttachClaims(OtacClaims::new().subject("u-1").claim("user_id", "u-1")),
        Json(json!({"ok": true})),
    )
}

async fn verify_mobile(otac: Otac) -> Json<Value> {
    Json(json!({
        "user_id": otac.claim::<String>("user_id"),
        "bound": otac.subject_is("u-1"),
    }))
}

#[tokio::test]
async fn a_verifier_holding_only_the_jwks_accepts_the_issuers_codes() {
    // Service A: signs, and publishes its public keys.
    let keys = KeySet::new(Key::es256_pem(EC_PEM).unwrap());
    let issuing = workflow(keys.clone());
    let a = serve(
        Router::new()
            .route("/.well-known/otac-jwks.json", otac_axum::jwks_route(&keys))
            .route(
                "/verify-email",
                post(verify_email).layer(IssueOtacLayer::new(&issuing, "verify-email")),
            ),
    )
    .await;

    let jwks = request(&a, "GET", "/.well-known/otac-jwks.json", &[]).await;
    assert_eq!(jwks.status, 200);
    assert_eq!(
        jwks.header("content-type"),
        Some("application/jwk-set+json")
    );
    assert!(jwks.header("cache-control").is_some());
    assert_eq!(jwks.json(), keys.jwks());
    assert_eq!(jwks.body, otac_axum::Jwks::new(&keys).as_bytes());
    let head = request(&a, "HEAD", "/.well-known/otac-jwks.json", &[]).await;
    assert_eq!(head.status, 200);

    // Service B: the JWKS it fetched at start-up and the binding secret; no private key.
    let verifying = workflow(KeySet::from_jwks(&jwks.body).unwrap());
    assert_eq!(
        Issuer::new(&verifying, "verify-email").unwrap_err(),
        ConfigError::NoSigningKey
    );
    let b = serve(Router::new().route(
        "/verify-mobile",
        post(verify_mobile).layer(RequireOtacLayer::new(&verifying, "verify-mobile")),
    ))
    .await;

    let issued = request(&a, "POST", "/verify-email", &[]).await;
    assert_eq!(issued.status, 200);
    let code = issued.header(HEADER).unwrap().to_owned();

    let accepted = request(&b, "POST", "/verify-mobile", &[(HEADER, &code)]).await;
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.json(), json!({"user_id": "u-1", "bound": true}));

    let replayed = request(&b, "POST", "/verify-mobile", &[(HEADER, &code)]).await;
    assert_eq!(replayed.status, 401);
    assert_eq!(replayed.json()["code"], "otac_replayed");

    // A fresh code with a tampered signature does not pass B.
    let fresh = request(&a, "POST", "/verify-email", &[]).await;
    let fresh = fresh.header(HEADER).unwrap().to_owned();
    let mut parts: Vec<&str> = fresh.split('.').collect();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    let tampered_sig = format!("{flipped}{}", &parts[2][1..]);
    parts[2] = &tampered_sig;
    let tampered = parts.join(".");
    let refused = request(&b, "POST", "/verify-mobile", &[(HEADER, &tampered)]).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.json()["code"], "otac_invalid");
}
