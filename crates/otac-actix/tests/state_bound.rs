//! State-bound codes through the actix-web middleware: a code dies as soon as the server state it was issued for
//! changes, with no replay store.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use otac::{Binding, Key, KeySet, OtacClaims, Replay, Step, VerifiedOtac, Workflow};
use otac_actix::{AttachClaims, IssueOtacLayer, RequireOtacLayer};
use reqwest::StatusCode;

use common::{TestServer, assert_problem};

/// The server state a code is bound to, e.g. a password hash.
type Secret = Arc<Mutex<Vec<u8>>>;

fn workflow(secret: &Secret) -> Workflow {
    let current = Arc::clone(secret);
    Workflow::builder("state-bound")
        .keys(KeySet::new(
            Key::hs256(b"actix state-bound test secret of 32 bytes").expect("key"),
        ))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .step(Step::new("reset").then("set"))
        .step(Step::new("set").state_bound(move |_: &VerifiedOtac| {
            Some(current.lock().unwrap_or_else(|p| p.into_inner()).clone())
        }))
        .build()
        .expect("workflow")
}

#[tokio::test]
async fn a_code_dies_once_the_state_it_was_issued_for_changes() {
    let secret: Secret = Arc::new(Mutex::new(b"hash-1".to_vec()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (wf, state, counted) = (workflow(&secret), Arc::clone(&secret), Arc::clone(&calls));
    let server = TestServer::start(move |cfg| {
        let (issuing, changing, calls) =
            (Arc::clone(&state), Arc::clone(&state), Arc::clone(&counted));
        cfg
            .service(
                web::resource("/a")
                    .wrap(IssueOtacLayer::new(&wf, "reset"))
                    .route(web::post().to(move || {
                        let fingerprint = issuing.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        async move {
                            AttachClaims(OtacClaims::new().state(fingerprint), HttpResponse::Ok())
                        }
                    })),
            )
            .service(
                web::resource("/b")
                    .wrap(RequireOtacLayer::new(&wf, "set"))
                    .route(web::post().to(move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        *changing.lock().unwrap_or_else(|p| p.into_inner()) = b"hash-2".to_vec();
                        async { HttpResponse::NoContent().finish() }
                    })),
            );
    });
    let first = server.code().await;
    let second = server.code().await;
    assert_eq!(
        server.post("/b", Some(&first)).await.status(),
        StatusCode::NO_CONTENT
    );
    // The state changed: the used code and the other one issued for the old state are both dead.
    for code in [&first, &second] {
        assert_problem(
            server.post("/b", Some(code)).await,
            StatusCode::UNAUTHORIZED,
            "otac_replayed",
        )
        .await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused before the handler"
    );
    // A code for the new state works.
    let fresh = server.code().await;
    assert_eq!(
        server.post("/b", Some(&fresh)).await.status(),
        StatusCode::NO_CONTENT
    );
}
