//! State-bound codes: a password-reset code bound to the password it replaces dies once the password changed, with
//! no replay store.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use otac::store::StoreFuture;
use otac::{
    Binding, IssueOtacLayer, Key, KeySet, OtacClaims, OtacError, Replay, RequireOtacLayer,
    StateFingerprint, Step, StoreError, VerifiedOtac, Workflow,
};
use tower::{Layer, ServiceExt};

type Body = Full<Bytes>;
type Passwords = Arc<Mutex<HashMap<String, String>>>;
const HEADER: &str = "one-time-authorization-code";

/// The fingerprint of a user's password: here the stored hash itself.
struct CurrentPassword(Passwords);

impl StateFingerprint for CurrentPassword {
    fn fingerprint(&self, code: &VerifiedOtac) -> StoreFuture<Option<Vec<u8>>> {
        let user: Option<String> = code.claim("user");
        let hash = user.and_then(|u| self.0.lock().unwrap().get(&u).cloned());
        StoreFuture::ready(Ok(hash.map(String::into_bytes)))
    }
}

fn workflow(passwords: &Passwords) -> Workflow {
    Workflow::builder("password-reset")
        .keys(KeySet::new(
            Key::hs256(b"state-bound test secret of 32+ bytes").unwrap(),
        ))
        .binding(Binding::subject())
        // No replay store at all: the state is the one-time use.
        .replay(Replay::stateless())
        .step(Step::new("request-reset").then("set-password"))
        .step(Step::new("set-password").state_bound(CurrentPassword(Arc::clone(passwords))))
        .build()
        .unwrap()
}

async fn request_reset(wf: &Workflow, passwords: &Passwords, user: &str) -> String {
    let passwords = Arc::clone(passwords);
    let user = user.to_owned();
    let handler = tower::service_fn(move |_req: Request<Body>| {
        let current = passwords.lock().unwrap().get(&user).cloned().unwrap();
        let user = user.clone();
        async move {
            let mut res: Response<Body> = Response::new(Full::from("sent"));
            res.extensions_mut().insert(
                OtacClaims::new()
                    .subject(user.clone())
                    .claim("user", user)
                    .state(current),
            );
            Ok::<_, Infallible>(res)
        }
    });
    let res = IssueOtacLayer::new(wf, "request-reset")
        .layer(handler)
        .oneshot(Request::new(Full::from("")))
        .await
        .unwrap();
    res.headers()[HEADER].to_str().unwrap().to_owned()
}

async fn set_password(
    wf: &Workflow,
    passwords: &Passwords,
    code: &str,
    new: &str,
) -> Response<Body> {
    let passwords = Arc::clone(passwords);
    let new = new.to_owned();
    let handler = tower::service_fn(move |req: Request<Body>| {
        let verified = req.extensions().get::<VerifiedOtac>().cloned().unwrap();
        let user: String = verified.claim("user").unwrap();
        passwords
            .lock()
            .unwrap()
            .insert(user, format!("hash({new})"));
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(204)
                    .body(Full::from(""))
                    .unwrap(),
            )
        }
    });
    let req = Request::builder()
        .header(HEADER, code)
        .body(Full::from(""))
        .unwrap();
    RequireOtacLayer::new(wf, "set-password")
        .layer(handler)
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_code_dies_when_the_password_changes() {
    let passwords: Passwords = Arc::new(Mutex::new(HashMap::from([(
        "ada".to_owned(),
        "hash(old)".to_owned(),
    )])));
    let wf = workflow(&passwords);
    let code = request_reset(&wf, &passwords, "ada").await;
    let claims = otac::dangerous::insecure_decode_claims(&code).unwrap();
    assert!(
        !claims.sfp.as_deref().unwrap().contains("hash(old)"),
        "only a keyed hash goes into the code"
    );

    let res = set_password(&wf, &passwords, &code, "new").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Stateless, yet the same code is refused: the password it was bound to is gone.
    let res = set_password(&wf, &passwords, &code, "newer").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.extensions().get::<OtacError>().unwrap().code(),
        "otac_replayed"
    );
    assert_eq!(
        passwords.lock().unwrap()["ada"],
        "hash(new)",
        "the handler did not run again"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains(&code));
}

#[tokio::test]
async fn an_older_code_dies_when_another_reset_went_through() {
    let passwords: Passwords = Arc::new(Mutex::new(HashMap::from([(
        "ada".to_owned(),
        "hash(old)".to_owned(),
    )])));
    let wf = workflow(&passwords);
    let first = request_reset(&wf, &passwords, "ada").await;
    let second = request_reset(&wf, &passwords, "ada").await;
    assert_eq!(
        set_password(&wf, &passwords, &second, "new").await.status(),
        StatusCode::NO_CONTENT
    );
    let res = set_password(&wf, &passwords, &first, "evil").await;
    assert_eq!(
        res.extensions().get::<OtacError>().unwrap().code(),
        "otac_replayed"
    );
}

#[tokio::test]
async fn a_state_lookup_failure_fails_closed() {
    struct Broken;
    impl StateFingerprint for Broken {
        fn fingerprint(&self, _code: &VerifiedOtac) -> StoreFuture<Option<Vec<u8>>> {
            StoreFuture::boxed(async { Err(StoreError::new("database down")) })
        }
    }
    let passwords: Passwords = Arc::new(Mutex::new(HashMap::from([(
        "ada".to_owned(),
        "hash(old)".to_owned(),
    )])));
    let issuing = workflow(&passwords);
    let code = request_reset(&issuing, &passwords, "ada").await;
    let broken = Workflow::builder("password-reset")
        .keys(KeySet::new(
            Key::hs256(b"state-bound test secret of 32+ bytes").unwrap(),
        ))
        .binding(Binding::subject())
        .replay(Replay::stateless())
        .step(Step::new("request-reset").then("set-password"))
        .step(Step::new("set-password").state_bound(Broken))
        .build()
        .unwrap();
    let res = set_password(&broken, &passwords, &code, "new").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<OtacError>().unwrap().code(),
        "otac_store_unavailable"
    );
    assert_eq!(passwords.lock().unwrap()["ada"], "hash(old)");
}

#[test]
fn a_closure_is_a_state_fingerprint() {
    let _step = Step::new("s")
        .state_bound(|code: &VerifiedOtac| code.claim::<String>("v").map(String::into_bytes));
}
