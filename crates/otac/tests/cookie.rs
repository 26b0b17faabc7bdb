//! Cookie transport: codes travel in an HttpOnly, Secure, SameSite=Strict cookie scoped to the next step's path,
//! never in a header page script could read.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use otac::{
    Binding, ConfigError, IssueOtacLayer, Key, KeySet, MemoryStore, OtacError, Replay,
    RequireOtacLayer, Step, Workflow,
};
use tower::{Layer, ServiceExt};

type Body = Full<Bytes>;

fn builder() -> otac::WorkflowBuilder {
    Workflow::builder("browser")
        .keys(KeySet::new(
            Key::hs256(b"cookie transport secret of 32+ bytes").unwrap(),
        ))
        .binding(Binding::none())
        .replay(Replay::store(MemoryStore::new(1024)))
        .cookie_transport("otac")
}

fn workflow() -> Workflow {
    builder()
        .step(Step::new("start").then("confirm").then("cancel"))
        .step(Step::new("confirm").path("/flow/confirm"))
        .step(Step::new("cancel").path("/flow/cancel"))
        .build()
        .unwrap()
}

fn ok()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Full::from("ok")))
    })
}

#[tokio::test]
async fn the_code_is_a_scoped_http_only_cookie_and_comes_back_as_one() {
    let wf = workflow();
    let res = IssueOtacLayer::new(&wf, "start")
        .layer(ok())
        .oneshot(Request::new(Full::from("")))
        .await
        .unwrap();
    assert!(
        res.headers().get(wf.header()).is_none(),
        "no header that page script could read"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
    let cookies: Vec<String> = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "one cookie per next step: {cookies:?}");
    for (cookie, path) in cookies.iter().zip(["/flow/confirm", "/flow/cancel"]) {
        assert!(cookie.starts_with("otac="), "{cookie}");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Max-Age=300",
            &format!("Path={path}"),
        ] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
    }
    let code = cookies[0]
        .trim_start_matches("otac=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let require = |cookie: Option<String>| {
        let wf = wf.clone();
        async move {
            let mut req = Request::builder();
            if let Some(cookie) = cookie {
                req = req.header(COOKIE, cookie);
            }
            RequireOtacLayer::new(&wf, "confirm")
                .layer(ok())
                .oneshot(req.body(Full::from("")).unwrap())
                .await
                .unwrap()
        }
    };
    let code_of = |res: &Response<Body>| res.extensions().get::<OtacError>().map(OtacError::code);
    // Absent, or sent in the header instead: required.
    let res = require(None).await;
    assert_eq!(
        (res.status(), code_of(&res)),
        (StatusCode::UNAUTHORIZED, Some("otac_required"))
    );
    // Two cookies of that name: malformed.
    let res = require(Some(format!("otac={code}; otac={code}"))).await;
    assert_eq!(
        (res.status(), code_of(&res)),
        (StatusCode::UNAUTHORIZED, Some("otac_malformed"))
    );
    // The cookie, among others: accepted once.
    let res = require(Some(format!("theme=dark; otac={code}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = require(Some(format!("otac={code}"))).await;
    assert_eq!(
        (res.status(), code_of(&res)),
        (StatusCode::UNAUTHORIZED, Some("otac_replayed"))
    );
}

#[test]
fn cookie_transport_needs_a_path_for_every_step_codes_are_issued_for() {
    let missing = builder()
        .step(Step::new("a").then("b"))
        .step(Step::new("b"))
        .build();
    assert!(matches!(missing, Err(ConfigError::InvalidSetting(_))));
    let bad_path = builder()
        .step(Step::new("a").then("b"))
        .step(Step::new("b").path("b;x"))
        .build();
    assert!(matches!(bad_path, Err(ConfigError::InvalidSetting(_))));
    let bad_name = Workflow::builder("w")
        .keys(KeySet::new(Key::hs256([1u8; 32]).unwrap()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .cookie_transport("bad name")
        .step(Step::new("a").then("b"))
        .step(Step::new("b").path("/b"))
        .build();
    assert!(matches!(bad_name, Err(ConfigError::InvalidSetting(_))));
}
