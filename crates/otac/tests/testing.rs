//! The `testing` helpers: minted codes are genuine (they pass the real verifier of the step, and only it), and the
//! fake clock drives expiry.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::header::HeaderName;
use http::request::Parts;
use otac::testing::{FakeClock, MintError, TestCode, mint, mint_async, try_mint};
use otac::{
    Binding, ConfigError, Key, KeySet, MemoryStore, OtacClaims, Replay, Step, Verifier, Workflow,
};

fn builder(keys: KeySet, binding: Binding) -> otac::WorkflowBuilder {
    Workflow::builder("onboarding")
        .issuer("accounts.test")
        .keys(keys)
        .binding(binding)
        .replay(Replay::stateless())
        .step(Step::new("verify-email").then("verify-mobile"))
        .step(Step::new("verify-mobile").then("set-password"))
        .step(Step::new("set-password"))
}

fn hs() -> KeySet {
    KeySet::new(Key::hs256(b"the test secret, at least thirty-two bytes long").unwrap())
}

fn parts() -> Parts {
    http::Request::new(()).into_parts().0
}

fn verify(
    wf: &Workflow,
    step: &str,
    code: &str,
    parts: &Parts,
) -> Result<otac::VerifiedOtac, otac::OtacError> {
    Verifier::new(wf, step).unwrap().verify_token(code, parts)
}

#[test]
fn minted_codes_pass_the_real_verifier_of_their_step_only() {
    let wf = builder(hs(), Binding::subject()).build().unwrap();
    // set-password continues runs: the helper issues it as verify-mobile would, after its own code.
    let code = mint(
        &wf,
        "set-password",
        TestCode::new()
            .subject("u1")
            .claim("user_id", "u1")
            .run_id("run-7"),
    );
    let verified = verify(&wf, "set-password", &code, &parts()).unwrap();
    assert!(verified.subject_is("u1"));
    assert_eq!(verified.run_id(), "run-7");
    assert_eq!(verified.issued_by(), "verify-mobile");
    assert_eq!(verified.claim::<String>("user_id").as_deref(), Some("u1"));
    assert_eq!(
        verify(&wf, "verify-mobile", &code, &parts())
            .unwrap_err()
            .code(),
        "otac_wrong_step"
    );
    // Another workflow with another key does not accept it.
    let other = builder(
        KeySet::new(Key::hs256(b"another secret, also at least thirty-two bytes").unwrap()),
        Binding::subject(),
    )
    .build()
    .unwrap();
    assert_eq!(
        verify(&other, "set-password", &code, &parts())
            .unwrap_err()
            .code(),
        "otac_invalid"
    );
}

#[test]
fn minting_fails_like_the_issuer_would() {
    let wf = builder(hs(), Binding::subject()).build().unwrap();
    assert!(matches!(
        try_mint(&wf, "verify-mobile", TestCode::new()),
        Err(MintError::Issue(e)) if e.code() == "otac_issue_failed"
    ));
    assert!(matches!(
        try_mint(&wf, "nope", TestCode::new()),
        Err(MintError::Config(ConfigError::UnknownStep(_)))
    ));
    assert!(
        matches!(
            try_mint(&wf, "verify-email", TestCode::new().subject("u")),
            Err(MintError::Config(_))
        ),
        "no step leads to the first step"
    );
    assert!(matches!(
        try_mint(
            &wf,
            "set-password",
            TestCode::new().subject("u").issued_by("verify-email")
        ),
        Err(MintError::Config(_))
    ));
    let verify_only = builder(
        KeySet::verify_only(hs().iter().cloned()).unwrap(),
        Binding::none(),
    )
    .build()
    .unwrap();
    assert!(matches!(
        try_mint(&verify_only, "verify-mobile", TestCode::new()),
        Err(MintError::Config(ConfigError::NoSigningKey))
    ));
}

#[test]
fn request_bindings_use_the_given_request() {
    let device = HeaderName::from_static("device-id");
    let wf = builder(hs(), Binding::header(device.clone()))
        .build()
        .unwrap();
    let request = || {
        http::Request::builder()
            .header(&device, "d-1")
            .body(())
            .unwrap()
    };
    let code = mint(&wf, "verify-mobile", TestCode::new().request(request()));
    verify(&wf, "verify-mobile", &code, &request().into_parts().0).unwrap();
    let other = http::Request::builder()
        .header(&device, "d-2")
        .body(())
        .unwrap();
    assert_eq!(
        verify(&wf, "verify-mobile", &code, &other.into_parts().0)
            .unwrap_err()
            .code(),
        "otac_binding_mismatch"
    );
    assert!(
        try_mint(&wf, "verify-mobile", TestCode::new()).is_err(),
        "no device id"
    );
}

#[test]
fn state_fingerprints_go_into_the_code() {
    let wf = builder(hs(), Binding::none()).build().unwrap();
    let code = mint(
        &wf,
        "set-password",
        TestCode::new().attach(OtacClaims::new().state(b"hash-v1").claim("k", 1)),
    );
    let verified = verify(&wf, "set-password", &code, &parts()).unwrap();
    assert!(verified.state_is(b"hash-v1"));
    assert!(!verified.state_is(b"hash-v2"));
    assert_eq!(verified.claim::<u32>("k"), Some(1));
}

#[tokio::test]
async fn one_live_code_per_run_writes_the_mark() {
    let wf = Workflow::builder("resend")
        .keys(hs())
        .binding(Binding::none())
        .replay(Replay::store(MemoryStore::new(64)))
        .one_live_code(true)
        .step(Step::new("start").then("next"))
        .step(Step::new("next"))
        .build()
        .unwrap();
    let verifier = Verifier::new(&wf, "next").unwrap();
    for code in [
        mint(&wf, "next", TestCode::new()),
        mint_async(&wf, "next", TestCode::new()).await.unwrap(),
    ] {
        let verified = verifier.verify_token(&code, &parts()).unwrap();
        let (future, ticket) = verifier.consume(&verified).unwrap();
        ticket.check(future.await).unwrap();
    }
}

#[test]
fn fake_clock_drives_expiry() {
    let wf = builder(hs(), Binding::none())
        .code_lifetime(Duration::from_secs(60))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let code = mint(&wf, "verify-mobile", TestCode::new());
    let verifier = Verifier::new(&wf, "verify-mobile").unwrap();
    let clock = FakeClock::now();
    clock.verify(&verifier, &code, &parts()).unwrap();
    let shared = clock.clone();
    shared.advance(Duration::from_secs(61));
    assert_eq!(
        clock.verify(&verifier, &code, &parts()).unwrap_err().code(),
        "otac_expired"
    );
    clock.rewind(Duration::from_secs(61 + 120));
    assert_eq!(
        clock.verify(&verifier, &code, &parts()).unwrap_err().code(),
        "otac_expired",
        "not valid yet"
    );
    clock.set(0);
    assert_eq!(clock.unix_secs(), 0);
}
