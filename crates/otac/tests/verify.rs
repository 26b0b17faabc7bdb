//! The framework-free core: `Issuer` and `Verifier` over `http::request::Parts`, and hand-crafted hostile codes.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::StatusCode;
use http::header::HeaderName;
use http::request::Parts;
use otac::{
    Binding, IssueContext, Issuer, Key, KeySet, MemoryStore, OtacClaims, OtacError, Replay, Step,
    VerifiedOtac, Verifier, Workflow,
};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

const SECRET: &[u8] = b"the test secret, at least thirty-two bytes long";
const OTHER_SECRET: &[u8] = b"another secret, also at least thirty-two bytes";
const ISS: &str = "accounts.test";
const WF: &str = "onboarding";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> Key {
    Key::hs256(SECRET).unwrap()
}

fn kid() -> String {
    key().kid().to_owned()
}

/// invite → verify-email → verify-mobile → set-password, default lifetimes (5 min codes, 1 h runs, 5 s leeway).
fn workflow_with(keys: KeySet, binding: Binding, name: &str) -> Workflow {
    Workflow::builder(name)
        .issuer(ISS)
        .keys(keys)
        .binding(binding)
        .replay(Replay::store(MemoryStore::new(1024)))
        .step(Step::new("invite").then("verify-email"))
        .step(Step::new("verify-email").then("verify-mobile"))
        .step(Step::new("verify-mobile").then("set-password"))
        .step(Step::new("set-password"))
        .build()
        .unwrap()
}

fn workflow(binding: Binding) -> Workflow {
    workflow_with(KeySet::new(key()), binding, WF)
}

fn parts(headers: &[(&str, &str)]) -> Parts {
    let mut req = http::Request::builder().method("POST").uri("/step");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(()).unwrap().into_parts().0
}

fn no_headers() -> Parts {
    parts(&[])
}

fn issue(wf: &Workflow, step: &str, parts: &Parts, attached: Option<&OtacClaims>) -> String {
    let issuer = Issuer::new(wf, step).unwrap();
    issuer.issue(&issuer.prepare(parts), attached).unwrap()
}

fn verify(
    wf: &Workflow,
    step: &str,
    token: &str,
    parts: &Parts,
) -> Result<VerifiedOtac, OtacError> {
    Verifier::new(wf, step).unwrap().verify_token(token, parts)
}

#[track_caller]
fn assert_rejected(result: Result<VerifiedOtac, OtacError>, code: &str, status: StatusCode) {
    match result {
        Ok(v) => panic!("expected {code}, got a verified code: {:?}", v.claims()),
        Err(err) => {
            assert_eq!(err.code(), code, "reason: {}", err.reason());
            assert_eq!(err.status(), status, "{code}");
        }
    }
}

const MALFORMED: (&str, StatusCode) = ("otac_malformed", StatusCode::UNAUTHORIZED);
const INVALID: (&str, StatusCode) = ("otac_invalid", StatusCode::UNAUTHORIZED);
const EXPIRED: (&str, StatusCode) = ("otac_expired", StatusCode::UNAUTHORIZED);
const WRONG_STEP: (&str, StatusCode) = ("otac_wrong_step", StatusCode::FORBIDDEN);
const MISMATCH: (&str, StatusCode) = ("otac_binding_mismatch", StatusCode::FORBIDDEN);

#[track_caller]
fn assert_kind(result: Result<VerifiedOtac, OtacError>, (code, status): (&str, StatusCode)) {
    assert_rejected(result, code, status);
}

// ---- hand-crafted codes ---------------------------------------------------------------------------------------

fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn hs256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hs512(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `b64(header).b64(payload).b64(HS256(SECRET))`: a correctly signed code with any header and payload text.
fn forge_raw(header: &str, payload: &str) -> String {
    sign_segments(&b64(header), &b64(payload))
}

/// Signs two already-encoded segments as they are.
fn sign_segments(header_b64: &str, payload_b64: &str) -> String {
    let message = format!("{header_b64}.{payload_b64}");
    let signature = b64(hs256(SECRET, message.as_bytes()));
    format!("{message}.{signature}")
}

fn header() -> String {
    format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{}"}}"#, kid())
}

/// Valid claims for step `verify-email` of run `r1`, issued now by `invite`.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISS,
        "aud": "verify-email",
        "exp": now + 60,
        "iat": now,
        "nbf": now,
        "jti": "forged-jti-0001",
        "wf": WF,
        "run": "r1",
        "stp": "invite",
        "rat": now,
    })
}

fn forge(claims: &Value) -> String {
    forge_raw(&header(), &claims.to_string())
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn payload_json(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

// ---- round trip and chaining ----------------------------------------------------------------------------------

#[test]
fn issue_then_verify_round_trip() {
    let wf = workflow(Binding::none());
    let attached = OtacClaims::new()
        .claim("user_id", "u-42")
        .claim("attempts", 2);
    let code = issue(&wf, "invite", &no_headers(), Some(&attached));
    assert_eq!(code.split('.').count(), 3);

    let verified = verify(&wf, "verify-email", &code, &no_headers()).unwrap();
    assert_eq!(verified.step(), "verify-email");
    assert_eq!(verified.workflow(), WF);
    assert_eq!(verified.issued_by(), "invite");
    assert!(!verified.run_id().is_empty());
    assert!(!verified.jti().is_empty());
    assert_eq!(verified.claim::<String>("user_id").as_deref(), Some("u-42"));
    assert_eq!(verified.claim::<u32>("attempts"), Some(2));
    assert_eq!(verified.claim::<u32>("user_id"), None, "wrong shape");
    assert_eq!(verified.claim::<String>("absent"), None);

    let claims = verified.claims();
    assert_eq!(claims.iss, ISS);
    assert_eq!(claims.sub, None, "no binding, no sub");
    assert_eq!(claims.aud.steps(), ["verify-email"]);
    let now = now();
    assert!(claims.iat <= now && claims.iat + 5 >= now);
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(
        claims.exp,
        claims.iat + 300,
        "default lifetime is 5 minutes"
    );
    assert_eq!(claims.rat, claims.iat, "a new run starts now");
    assert!(verified.expires_at() == claims.exp);

    #[derive(serde::Deserialize)]
    struct Custom {
        user_id: String,
        attempts: u32,
    }
    let custom: Custom = verified.custom().unwrap();
    assert_eq!((custom.user_id.as_str(), custom.attempts), ("u-42", 2));
}

#[test]
fn the_header_is_exactly_alg_typ_kid() {
    let wf = workflow(Binding::none());
    let code = issue(&wf, "invite", &no_headers(), None);
    let header = URL_SAFE_NO_PAD
        .decode(code.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(
        header,
        json!({"alg": "HS256", "typ": "otac+jwt", "kid": kid()})
    );
}

#[test]
fn chained_code_keeps_run_and_run_start() {
    let wf = workflow(Binding::none());
    let first = issue(
        &wf,
        "invite",
        &no_headers(),
        Some(&OtacClaims::new().claim("user_id", "u-1")),
    );
    let v1 = verify(&wf, "verify-email", &first, &no_headers()).unwrap();

    // The layers hand the verified code over in the request extensions.
    let mut p = no_headers();
    p.extensions.insert(v1.clone());
    let second = issue(
        &wf,
        "verify-email",
        &p,
        Some(&OtacClaims::new().claim("email_verified", true)),
    );
    let v2 = verify(&wf, "verify-mobile", &second, &no_headers()).unwrap();
    assert_eq!(v2.run_id(), v1.run_id());
    assert_eq!(v2.claims().rat, v1.claims().rat);
    assert_ne!(v2.jti(), v1.jti());
    assert_eq!(v2.issued_by(), "verify-email");
    assert_eq!(v2.claim::<String>("user_id").as_deref(), Some("u-1"));
    assert_eq!(v2.claim::<bool>("email_verified"), Some(true));

    // ... or through an IssueContext that carries it (the require layer inside the issue layer).
    let issuer = Issuer::new(&wf, "verify-email").unwrap();
    let mut ctx = IssueContext::default();
    ctx.carry(Some(&v1));
    let third = issuer.issue(&ctx, None).unwrap();
    let v3 = verify(&wf, "verify-mobile", &third, &no_headers()).unwrap();
    assert_eq!(v3.run_id(), v1.run_id());
    assert_eq!(v3.claims().rat, v1.claims().rat);

    // A second first step starts another run.
    let other = issue(&wf, "invite", &no_headers(), None);
    let other = verify(&wf, "verify-email", &other, &no_headers()).unwrap();
    assert_ne!(other.run_id(), v1.run_id());
}

#[test]
fn a_code_of_a_run_that_ends_soon_expires_with_the_run() {
    // The run lasts 10 minutes; a code issued 8 minutes in lives 2 minutes, not 5.
    let wf = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .run_lifetime(Duration::from_secs(600))
        .step(Step::new("invite").then("verify-email"))
        .step(Step::new("verify-email").then("verify-mobile"))
        .step(Step::new("verify-mobile"))
        .build()
        .unwrap();
    let rat = now() - 480;
    let carried = forge(&with(claims(), "rat", json!(rat)));
    let carried = verify(&wf, "verify-email", &carried, &no_headers()).unwrap();
    let issuer = Issuer::new(&wf, "verify-email").unwrap();
    let mut ctx = IssueContext::default();
    ctx.carry(Some(&carried));
    let code = issuer.issue(&ctx, None).unwrap();
    let v = verify(&wf, "verify-mobile", &code, &no_headers()).unwrap();
    assert_eq!(v.claims().exp, rat + 600);
    assert_eq!(v.claims().rat, rat);
}

#[test]
fn a_verifier_or_issuer_of_an_unknown_step_is_a_config_error() {
    let wf = workflow(Binding::none());
    assert!(Verifier::new(&wf, "nope").is_err());
    assert!(Issuer::new(&wf, "nope").is_err());
    assert!(
        Issuer::new(&wf, "set-password").is_err(),
        "no next step to issue for"
    );
}

// ---- keys -----------------------------------------------------------------------------------------------------

#[test]
fn rotation_keeps_old_codes_until_the_old_key_is_dropped() {
    let old = key();
    let new = Key::hs256(OTHER_SECRET).unwrap();
    let before = workflow(Binding::none());
    let old_code = issue(&before, "invite", &no_headers(), None);

    let rotated = KeySet::new(old.clone()).rotate(new.clone()).unwrap();
    assert_eq!(rotated.current().kid(), new.kid());
    let after = workflow_with(rotated.clone(), Binding::none(), WF);
    verify(&after, "verify-email", &old_code, &no_headers()).unwrap();

    // New codes are signed with the new key and verify too.
    let new_code = issue(&after, "invite", &no_headers(), None);
    let header = URL_SAFE_NO_PAD
        .decode(new_code.split('.').next().unwrap())
        .unwrap();
    assert!(String::from_utf8(header).unwrap().contains(new.kid()));
    verify(&after, "verify-email", &new_code, &no_headers()).unwrap();
    assert_kind(
        verify(&before, "verify-email", &new_code, &no_headers()),
        INVALID,
    );

    let dropped = workflow_with(rotated.without(old.kid()), Binding::none(), WF);
    assert_kind(
        verify(&dropped, "verify-email", &old_code, &no_headers()),
        INVALID,
    );
    verify(&dropped, "verify-email", &new_code, &no_headers()).unwrap();
}

#[test]
fn rotation_keeps_caller_bindings_of_codes_in_flight() {
    let device = HeaderName::from_static("device-id");
    let before = workflow(Binding::header(device.clone()));
    let p = parts(&[("device-id", "d-1")]);
    let code = issue(&before, "invite", &p, None);
    let rotated = KeySet::new(key())
        .rotate(Key::hs256(OTHER_SECRET).unwrap())
        .unwrap();
    let after = workflow_with(rotated, Binding::header(device), WF);
    verify(&after, "verify-email", &code, &p).unwrap();
    // And a code issued after the rotation binds the same way.
    let new_code = issue(&after, "invite", &p, None);
    assert_eq!(
        otac::dangerous::insecure_decode_claims(&new_code)
            .unwrap()
            .sub,
        otac::dangerous::insecure_decode_claims(&code).unwrap().sub,
    );
}

#[test]
fn a_code_of_another_secret_is_invalid() {
    let stranger = workflow_with(
        KeySet::new(Key::hs256(OTHER_SECRET).unwrap()),
        Binding::none(),
        WF,
    );
    let code = issue(&stranger, "invite", &no_headers(), None);
    let wf = workflow(Binding::none());
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), INVALID);

    // Same kid, other secret: the signature decides.
    let impostor = Key::hs256(OTHER_SECRET).unwrap().with_kid(kid()).unwrap();
    let impostor = workflow_with(KeySet::new(impostor), Binding::none(), WF);
    let code = issue(&impostor, "invite", &no_headers(), None);
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), INVALID);
}

// ---- hostile headers ------------------------------------------------------------------------------------------

#[test]
fn forged_baseline_verifies() {
    // The forging helpers produce exactly what a real issuer would, so every rejection below is about one change.
    let wf = workflow(Binding::none());
    let v = verify(&wf, "verify-email", &forge(&claims()), &no_headers()).unwrap();
    assert_eq!(v.run_id(), "r1");
}

#[test]
fn alg_none_is_rejected() {
    let wf = workflow(Binding::none());
    let none = format!(r#"{{"alg":"none","typ":"otac+jwt","kid":"{}"}}"#, kid());
    let payload = b64(claims().to_string());
    // With an empty signature (the classic form) and with any signature at all.
    let unsigned = format!("{}.{payload}.", b64(&none));
    assert_kind(
        verify(&wf, "verify-email", &unsigned, &no_headers()),
        MALFORMED,
    );
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(&none, &claims().to_string()),
            &no_headers(),
        ),
        INVALID,
    );
    let none_upper = format!(r#"{{"alg":"None","typ":"otac+jwt","kid":"{}"}}"#, kid());
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(&none_upper, &claims().to_string()),
            &no_headers(),
        ),
        INVALID,
    );
}

#[test]
fn another_algorithm_than_the_keys_is_rejected() {
    let wf = workflow(Binding::none());
    let header = format!(r#"{{"alg":"HS512","typ":"otac+jwt","kid":"{}"}}"#, kid());
    let message = format!("{}.{}", b64(&header), b64(claims().to_string()));
    // Properly HS512-signed with the very secret of the HS256 key.
    let token = format!("{message}.{}", b64(hs512(SECRET, message.as_bytes())));
    assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
    // HS512 in the header, HS256 signature.
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(&header, &claims().to_string()),
            &no_headers(),
        ),
        INVALID,
    );
    for alg in ["RS256", "ES256", "PS256", "EdDSA", "hs256", ""] {
        let header = format!(r#"{{"alg":"{alg}","typ":"otac+jwt","kid":"{}"}}"#, kid());
        assert_kind(
            verify(
                &wf,
                "verify-email",
                &forge_raw(&header, &claims().to_string()),
                &no_headers(),
            ),
            INVALID,
        );
    }
}

#[test]
fn kid_must_name_a_known_key() {
    let wf = workflow(Binding::none());
    let payload = claims().to_string();
    let unknown = r#"{"alg":"HS256","typ":"otac+jwt","kid":"no-such-key"}"#;
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(unknown, &payload),
            &no_headers(),
        ),
        INVALID,
    );
    let missing = r#"{"alg":"HS256","typ":"otac+jwt"}"#;
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(missing, &payload),
            &no_headers(),
        ),
        INVALID,
    );
    let not_a_string = r#"{"alg":"HS256","typ":"otac+jwt","kid":7}"#;
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(not_a_string, &payload),
            &no_headers(),
        ),
        MALFORMED,
    );
}

#[test]
fn typ_must_be_otac_jwt() {
    let wf = workflow(Binding::none());
    let payload = claims().to_string();
    for typ in [
        "JWT",
        "jwt",
        "at+jwt",
        "OTAC+JWT",
        "application/otac+jwt",
        "",
    ] {
        let header = format!(r#"{{"alg":"HS256","typ":"{typ}","kid":"{}"}}"#, kid());
        assert_kind(
            verify(
                &wf,
                "verify-email",
                &forge_raw(&header, &payload),
                &no_headers(),
            ),
            INVALID,
        );
    }
    let missing = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, kid());
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &forge_raw(&missing, &payload),
            &no_headers(),
        ),
        INVALID,
    );
}

#[test]
fn dangerous_header_members_are_rejected() {
    let wf = workflow(Binding::none());
    let payload = claims().to_string();
    for member in [
        r#""jku":"https://attacker.example/jwks.json""#,
        r#""x5u":"https://attacker.example/cert.pem""#,
        r#""jwk":{"kty":"oct","k":"AAAA"}"#,
        r#""x5c":["MIIB"]"#,
        r#""crit":["exp"]"#,
        r#""crit":[]"#,
        r#""b64":false"#,
        r#""zip":"DEF""#,
        r#""cty":"JWT""#,
    ] {
        let header = format!(
            r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{}",{member}}}"#,
            kid()
        );
        assert_kind(
            verify(
                &wf,
                "verify-email",
                &forge_raw(&header, &payload),
                &no_headers(),
            ),
            INVALID,
        );
    }
}

#[test]
fn duplicate_or_non_object_headers_are_malformed() {
    let wf = workflow(Binding::none());
    let payload = claims().to_string();
    let k = kid();
    for header in [
        format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{k}","alg":"HS256"}}"#),
        format!(r#"{{"alg":"none","alg":"HS256","typ":"otac+jwt","kid":"{k}"}}"#),
        format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{k}","kid":"{k}"}}"#),
        // The same member spelled with an escape is still the same member.
        format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{k}","\u0061lg":"HS256"}}"#),
        format!(r#"["HS256","otac+jwt","{k}"]"#),
        r#""HS256""#.to_owned(),
        "null".to_owned(),
        "42".to_owned(),
        format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{k}"}} {{}}"#),
        format!(r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{k}""#),
        String::new(),
    ] {
        let token = forge_raw(&header, &payload);
        assert_kind(
            verify(&wf, "verify-email", &token, &no_headers()),
            MALFORMED,
        );
    }
}

// ---- shape ----------------------------------------------------------------------------------------------------

#[test]
fn bad_base64_is_malformed() {
    let wf = workflow(Binding::none());
    let good = forge(&claims());
    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    for token in [
        format!("{h}!.{p}.{s}"),
        format!("{h}.{p}.{s}*"),
        format!("{h}.{p}.{s}="),
        // Standard (non-url) alphabet.
        format!("{}.{p}.{s}", h.replace('-', "+").replace('_', "/") + "+/"),
        // Padding on the header.
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode(header()) + "=="),
    ] {
        assert_kind(
            verify(&wf, "verify-email", &token, &no_headers()),
            MALFORMED,
        );
    }
    // A correctly signed payload segment that is not base64url.
    let bad_payload = sign_segments(&b64(header()), "not*base64");
    assert_kind(
        verify(&wf, "verify-email", &bad_payload, &no_headers()),
        MALFORMED,
    );
    // A payload that is base64url but not JSON.
    let not_json = forge_raw(&header(), "this is not json");
    assert_kind(
        verify(&wf, "verify-email", &not_json, &no_headers()),
        MALFORMED,
    );
}

#[test]
fn wrong_segment_counts_are_malformed() {
    let wf = workflow(Binding::none());
    let good = forge(&claims());
    let segs: Vec<&str> = good.split('.').collect();
    for token in [
        segs[..2].join("."),
        format!("{good}.{}", segs[2]),
        format!("{}.{}", segs[0], segs[1]),
        segs[0].to_owned(),
        format!("{}..{}", segs[0], segs[2]),
        format!(".{}.{}", segs[1], segs[2]),
        "..".to_owned(),
        "....".to_owned(),
    ] {
        assert_kind(
            verify(&wf, "verify-email", &token, &no_headers()),
            MALFORMED,
        );
    }
}

#[test]
fn oversized_codes_are_malformed() {
    let wf = workflow(Binding::none());
    // Correctly signed, merely too big.
    let big = with(claims(), "ctx", json!({ "pad": "x".repeat(4000) }));
    let token = forge(&big);
    assert!(token.len() > 4096);
    assert_kind(
        verify(&wf, "verify-email", &token, &no_headers()),
        MALFORMED,
    );
    // Just under the limit is fine.
    let fits = with(claims(), "ctx", json!({ "pad": "x".repeat(2500) }));
    let token = forge(&fits);
    assert!(token.len() <= 4096);
    verify(&wf, "verify-email", &token, &no_headers()).unwrap();
    // Also through the header path, before any parsing.
    let huge = "a".repeat(100_000);
    let v = Verifier::new(&wf, "verify-email").unwrap();
    assert_kind(
        v.verify(&parts(&[("one-time-authorization-code", &huge)])),
        MALFORMED,
    );
}

#[test]
fn tampered_payload_is_invalid() {
    let wf = workflow(Binding::none());
    let code = issue(
        &wf,
        "invite",
        &no_headers(),
        Some(&OtacClaims::new().claim("user_id", "u-1")),
    );
    let [h, _, s]: [&str; 3] = code.split('.').collect::<Vec<_>>().try_into().unwrap();
    let claims: Value = serde_json::from_str(&payload_json(&code)).unwrap();
    for tampered in [
        with(claims.clone(), "aud", json!("set-password")),
        with(
            claims.clone(),
            "exp",
            json!(claims["exp"].as_u64().unwrap() + 1),
        ),
        with(claims.clone(), "ctx", json!({"user_id": "u-2"})),
        with(claims.clone(), "run", json!("another-run")),
    ] {
        let token = format!("{h}.{}.{s}", b64(tampered.to_string()));
        assert_kind(verify(&wf, "set-password", &token, &no_headers()), INVALID);
        assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
    }
    // A flipped signature byte.
    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[0] ^= 1;
    let token = format!("{h}.{}.{}", code.split('.').nth(1).unwrap(), b64(&sig));
    assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
    // A truncated signature.
    let token = format!(
        "{h}.{}.{}",
        code.split('.').nth(1).unwrap(),
        b64(&sig[..16])
    );
    assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
}

// ---- claims ---------------------------------------------------------------------------------------------------

#[test]
fn issuer_and_workflow_must_match() {
    let wf = workflow(Binding::none());
    let token = forge(&with(claims(), "iss", json!("evil.example")));
    assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
    let token = forge(&with(claims(), "wf", json!("password-reset")));
    assert_kind(verify(&wf, "verify-email", &token, &no_headers()), INVALID);
    // A genuine code of another workflow with the same keys and issuer.
    let other = workflow_with(KeySet::new(key()), Binding::none(), "password-reset");
    let code = issue(&other, "invite", &no_headers(), None);
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), INVALID);
}

#[test]
fn expiry_and_leeway() {
    let wf = workflow(Binding::none());
    let now = now();
    let check = |c: Value| verify(&wf, "verify-email", &forge(&c), &no_headers());
    assert_kind(check(with(claims(), "exp", json!(now - 10))), EXPIRED);
    assert_kind(check(with(claims(), "exp", json!(0))), EXPIRED);
    // Within the default 5 s leeway.
    check(with(claims(), "exp", json!(now - 3))).unwrap();
    // Not valid yet, beyond the leeway; within it is fine.
    assert_kind(check(with(claims(), "nbf", json!(now + 30))), EXPIRED);
    check(with(claims(), "nbf", json!(now + 2))).unwrap();
    // The run's total lifetime (1 h) is over although the code itself is fresh.
    assert_kind(
        check(with(claims(), "rat", json!(now - 3600 - 30))),
        EXPIRED,
    );
    check(with(claims(), "rat", json!(now - 3000))).unwrap();
    // Issued, or a run started, in the future (beyond the leeway): a forgery or a broken clock. A run start ahead
    // of now would also escape revocations, which cover runs started until then.
    assert_kind(check(with(claims(), "iat", json!(now + 600))), INVALID);
    assert_kind(check(with(claims(), "rat", json!(now + 600))), INVALID);
    assert_kind(check(with(claims(), "rat", json!(u64::MAX))), INVALID);
    check(with(claims(), "rat", json!(now + 3))).unwrap();
}

#[test]
fn zero_leeway_is_exact() {
    let wf = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .leeway(Duration::ZERO)
        .step(Step::new("invite").then("verify-email"))
        .step(Step::new("verify-email"))
        .build()
        .unwrap();
    let now = now();
    let check = |c: Value| verify(&wf, "verify-email", &forge(&c), &no_headers());
    assert_kind(check(with(claims(), "exp", json!(now - 2))), EXPIRED);
    assert_kind(check(with(claims(), "nbf", json!(now + 2))), EXPIRED);
}

#[test]
fn a_code_living_longer_than_the_step_issues_is_invalid() {
    let wf = workflow(Binding::none());
    let now = now();
    let check = |c: Value| verify(&wf, "verify-email", &forge(&c), &no_headers());
    // 5 min lifetime + 5 s leeway.
    assert_kind(
        check(with(claims(), "exp", json!(now + 300 + 5 + 10))),
        INVALID,
    );
    assert_kind(check(with(claims(), "exp", json!(u64::MAX))), INVALID);
    check(with(claims(), "exp", json!(now + 299))).unwrap();

    // The bound follows the lifetime of the step that issues for this one.
    let short = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .step(
            Step::new("invite")
                .then("verify-email")
                .lifetime(Duration::from_secs(30)),
        )
        .step(Step::new("verify-email"))
        .build()
        .unwrap();
    let check = |c: Value| verify(&short, "verify-email", &forge(&c), &no_headers());
    check(with(claims(), "exp", json!(now + 30))).unwrap();
    assert_kind(check(with(claims(), "exp", json!(now + 60))), INVALID);
    // A first step nobody issues for accepts no code at all.
    let check = |c: Value| verify(&short, "invite", &forge(&c), &no_headers());
    assert_kind(
        check(with(
            with(claims(), "aud", json!("invite")),
            "exp",
            json!(now + 60),
        )),
        INVALID,
    );
}

#[test]
fn audience_must_name_this_step() {
    let wf = workflow(Binding::none());
    let check = |c: Value| verify(&wf, "verify-email", &forge(&c), &no_headers());
    assert_kind(
        check(with(claims(), "aud", json!("set-password"))),
        WRONG_STEP,
    );
    assert_kind(check(with(claims(), "aud", json!([]))), WRONG_STEP);
    assert_kind(
        check(with(
            claims(),
            "aud",
            json!(["verify-mobile", "set-password"]),
        )),
        WRONG_STEP,
    );
    assert_kind(check(with(claims(), "aud", json!(""))), WRONG_STEP);
    assert_kind(check(with(claims(), "aud", json!("*"))), WRONG_STEP);
    assert_kind(
        check(with(claims(), "aud", json!("VERIFY-EMAIL"))),
        WRONG_STEP,
    );
    check(with(
        claims(),
        "aud",
        json!(["set-password", "verify-email"]),
    ))
    .unwrap();
    check(with(claims(), "aud", json!(["verify-email"]))).unwrap();
    // Wrong JSON types are malformed, not "another step".
    assert_kind(check(with(claims(), "aud", json!(7))), MALFORMED);
    assert_kind(check(with(claims(), "aud", json!(null))), MALFORMED);
    assert_kind(
        check(with(claims(), "aud", json!({"step": "verify-email"}))),
        MALFORMED,
    );
    assert_kind(
        check(with(claims(), "aud", json!(["verify-email", 1]))),
        MALFORMED,
    );
    assert_kind(check(without(claims(), "aud")), MALFORMED);
    // The real issuer's code for the next step is the wrong step here.
    let code = issue(&wf, "invite", &no_headers(), None);
    assert_kind(
        verify(&wf, "verify-mobile", &code, &no_headers()),
        WRONG_STEP,
    );
}

#[test]
fn a_step_that_others_lead_to_issues_only_with_its_own_code() {
    // An issue layer without its require layer must not mint a fresh run mid-workflow (that would skip steps).
    let wf = workflow(Binding::none());
    let issuer = Issuer::new(&wf, "verify-email").unwrap();
    let err = issuer
        .issue(&issuer.prepare(&no_headers()), None)
        .unwrap_err();
    assert_eq!(err.code(), "otac_issue_failed");
    // With a code verified for this step it continues the run.
    let first = issue(&wf, "invite", &no_headers(), None);
    let verified = verify(&wf, "verify-email", &first, &no_headers()).unwrap();
    let mut carried = no_headers();
    carried.extensions.insert(verified.clone());
    let next = issue(&wf, "verify-email", &carried, None);
    let next = verify(&wf, "verify-mobile", &next, &no_headers()).unwrap();
    assert_eq!(next.run_id(), verified.run_id());
    // A code verified for another step does not count.
    let mut other = no_headers();
    other.extensions.insert(verified);
    assert!(
        Issuer::new(&wf, "verify-mobile")
            .unwrap()
            .issue(
                &Issuer::new(&wf, "verify-mobile").unwrap().prepare(&other),
                None
            )
            .is_err()
    );
    // `Step::entry` lets a step start runs anyway.
    let open = Workflow::builder("open")
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .step(Step::new("a").then("b"))
        .step(Step::new("b").then("a").entry())
        .build()
        .unwrap();
    let b = Issuer::new(&open, "b").unwrap();
    assert!(b.issue(&b.prepare(&no_headers()), None).is_ok());
}

#[test]
fn missing_or_mistyped_claims_are_malformed() {
    let wf = workflow(Binding::none());
    let check = |c: Value| verify(&wf, "verify-email", &forge(&c), &no_headers());
    for field in ["iss", "exp", "iat", "nbf", "jti", "wf", "run", "stp", "rat"] {
        assert_kind(check(without(claims(), field)), MALFORMED);
    }
    // Claims are a JSON object, never an array read positionally.
    assert_kind(check(json!(["accounts.test"])), MALFORMED);
    assert_kind(check(with(claims(), "exp", json!("9999999999"))), MALFORMED);
    assert_kind(check(with(claims(), "exp", json!(-1))), MALFORMED);
    assert_kind(check(with(claims(), "exp", json!(1.5e9))), MALFORMED);
    assert_kind(check(with(claims(), "jti", json!(""))), MALFORMED);
    assert_kind(check(with(claims(), "run", json!(""))), MALFORMED);
    assert_kind(check(with(claims(), "jti", json!(123))), MALFORMED);
    assert_kind(check(json!([1, 2, 3])), MALFORMED);
}

#[test]
fn duplicate_claims_are_malformed() {
    let wf = workflow(Binding::none());
    let base = claims().to_string();
    let body = base.strip_suffix('}').unwrap();
    for dup in [
        r#","exp":99999999999"#,
        r#","aud":"set-password""#,
        r#","jti":"other""#,
        r#","iss":"accounts.test""#,
    ] {
        let payload = format!("{body}{dup}}}");
        let token = forge_raw(&header(), &payload);
        assert_kind(
            verify(&wf, "verify-email", &token, &no_headers()),
            MALFORMED,
        );
    }
    // Trailing data after the object.
    let token = forge_raw(&header(), &format!("{base} {{}}"));
    assert_kind(
        verify(&wf, "verify-email", &token, &no_headers()),
        MALFORMED,
    );
}

// ---- the code header --------------------------------------------------------------------------------------------

#[test]
fn reading_the_code_header() {
    let wf = workflow(Binding::none());
    let v = Verifier::new(&wf, "verify-email").unwrap();
    let code = forge(&claims());
    assert_rejected(
        v.verify(&no_headers()),
        "otac_required",
        StatusCode::UNAUTHORIZED,
    );
    assert_rejected(
        v.verify(&parts(&[("one-time-authorization-code", "")])),
        "otac_required",
        StatusCode::UNAUTHORIZED,
    );
    // Another header name carries nothing.
    assert_rejected(
        v.verify(&parts(&[("authorization", &format!("Bearer {code}"))])),
        "otac_required",
        StatusCode::UNAUTHORIZED,
    );
    v.verify(&parts(&[("One-Time-Authorization-Code", &code)]))
        .unwrap();
    v.verify(&parts(&[(
        "one-time-authorization-code",
        &format!("  {code} "),
    )]))
    .unwrap();
    assert_kind(
        v.verify(&parts(&[
            ("one-time-authorization-code", &code),
            ("one-time-authorization-code", &code),
        ])),
        MALFORMED,
    );
    assert_kind(
        v.verify(&parts(&[(
            "one-time-authorization-code",
            &format!("{code}, {code}"),
        )])),
        MALFORMED,
    );
    let mut p = no_headers();
    p.headers.insert(
        "one-time-authorization-code",
        http::HeaderValue::from_bytes("caf\u{e9}.b.c".as_bytes()).unwrap(),
    );
    assert_kind(v.verify(&p), MALFORMED);
}

// ---- caller binding -------------------------------------------------------------------------------------------

#[test]
fn header_binding() {
    let wf = workflow(Binding::header(HeaderName::from_static("device-id")));
    let mine = parts(&[("device-id", "device-1234")]);
    let code = issue(&wf, "invite", &mine, None);
    verify(&wf, "verify-email", &code, &mine).unwrap();
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &code,
            &parts(&[("device-id", "device-9999")]),
        ),
        MISMATCH,
    );
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), MISMATCH);
    assert_kind(
        verify(&wf, "verify-email", &code, &parts(&[("device-id", "")])),
        MISMATCH,
    );
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &code,
            &parts(&[("device-id", "device-1234"), ("device-id", "device-1234")]),
        ),
        MISMATCH,
    );
    // A code with no sub at all, on a bound workflow.
    assert_kind(
        verify(&wf, "verify-email", &forge(&claims()), &mine),
        MISMATCH,
    );
    // A sub that is the raw value rather than its keyed hash.
    let raw = with(claims(), "sub", json!("device-1234"));
    assert_kind(verify(&wf, "verify-email", &forge(&raw), &mine), MISMATCH);
    // Without the binding value a code cannot be issued.
    let issuer = Issuer::new(&wf, "invite").unwrap();
    let err = issuer
        .issue(&issuer.prepare(&no_headers()), None)
        .unwrap_err();
    assert_eq!(err.code(), "otac_issue_failed");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn binding_hash_depends_on_the_workflow() {
    // The same device in another workflow (same keys) yields another sub.
    let device = HeaderName::from_static("device-id");
    let p = parts(&[("device-id", "device-1234")]);
    let a = workflow(Binding::header(device.clone()));
    let b = workflow_with(
        KeySet::new(key()),
        Binding::header(device),
        "password-reset",
    );
    let sub_a = otac::dangerous::insecure_decode_claims(&issue(&a, "invite", &p, None))
        .unwrap()
        .sub;
    let sub_b = otac::dangerous::insecure_decode_claims(&issue(&b, "invite", &p, None))
        .unwrap()
        .sub;
    assert!(sub_a.is_some());
    assert_ne!(sub_a, sub_b);
}

#[test]
fn cookie_binding() {
    let wf = workflow(Binding::cookie("sid"));
    let mine = parts(&[("cookie", "theme=dark; sid=session-abc")]);
    let code = issue(&wf, "invite", &mine, None);
    verify(
        &wf,
        "verify-email",
        &code,
        &parts(&[("cookie", "sid=session-abc")]),
    )
    .unwrap();
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &code,
            &parts(&[("cookie", "sid=session-xyz")]),
        ),
        MISMATCH,
    );
    assert_kind(
        verify(
            &wf,
            "verify-email",
            &code,
            &parts(&[("cookie", "sid=session-abc; sid=x")]),
        ),
        MISMATCH,
    );
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), MISMATCH);
    assert!(!payload_json(&code).contains("session-abc"));
}

#[test]
fn principal_binding() {
    #[derive(Clone)]
    struct User(String);
    impl otac::Principal for User {
        fn binding_id(&self) -> std::borrow::Cow<'_, str> {
            std::borrow::Cow::Borrowed(&self.0)
        }
    }
    let wf = workflow(Binding::principal::<User>());
    let as_user = |id: &str| {
        let mut p = no_headers();
        p.extensions.insert(User(id.to_owned()));
        p
    };
    let code = issue(&wf, "invite", &as_user("alice"), None);
    verify(&wf, "verify-email", &code, &as_user("alice")).unwrap();
    assert_kind(
        verify(&wf, "verify-email", &code, &as_user("bob")),
        MISMATCH,
    );
    assert_kind(verify(&wf, "verify-email", &code, &no_headers()), MISMATCH);
}

#[test]
fn subject_binding() {
    let wf = workflow(Binding::subject());
    let code = issue(
        &wf,
        "invite",
        &no_headers(),
        Some(&OtacClaims::new().subject("alice@example.com")),
    );
    let v = verify(&wf, "verify-email", &code, &no_headers()).unwrap();
    assert!(v.subject_is("alice@example.com"));
    assert!(!v.subject_is("bob@example.com"));
    assert!(!v.subject_is("alice@example.co"));
    assert!(!v.subject_is(""));

    // A code without sub on a subject-bound workflow.
    assert_kind(
        verify(&wf, "verify-email", &forge(&claims()), &no_headers()),
        MISMATCH,
    );
    let null_sub = with(claims(), "sub", Value::Null);
    assert_kind(
        verify(&wf, "verify-email", &forge(&null_sub), &no_headers()),
        MISMATCH,
    );
    // A forged sub that is the raw subject is present but never matches it.
    let raw = forge(&with(claims(), "sub", json!("alice@example.com")));
    let v = verify(&wf, "verify-email", &raw, &no_headers()).unwrap();
    assert!(!v.subject_is("alice@example.com"));

    // A handler that names no subject gets no code.
    let issuer = Issuer::new(&wf, "invite").unwrap();
    let err = issuer
        .issue(&issuer.prepare(&no_headers()), None)
        .unwrap_err();
    assert_eq!(err.code(), "otac_issue_failed");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn subject_binding_carries_along_the_chain_and_cannot_be_switched() {
    let wf = workflow(Binding::subject());
    let first = issue(
        &wf,
        "invite",
        &no_headers(),
        Some(&OtacClaims::new().subject("alice")),
    );
    let v1 = verify(&wf, "verify-email", &first, &no_headers()).unwrap();
    let issuer = Issuer::new(&wf, "verify-email").unwrap();
    let mut ctx = IssueContext::default();
    ctx.carry(Some(&v1));
    // Inherited without naming it again, or named again identically.
    let second = issuer.issue(&ctx, None).unwrap();
    let v2 = verify(&wf, "verify-mobile", &second, &no_headers()).unwrap();
    assert!(v2.subject_is("alice"));
    issuer
        .issue(&ctx, Some(&OtacClaims::new().subject("alice")))
        .unwrap();
    // Another subject mid-run is refused.
    let err = issuer
        .issue(&ctx, Some(&OtacClaims::new().subject("mallory")))
        .unwrap_err();
    assert_eq!(err.code(), "otac_issue_failed");
}

#[test]
fn binding_hash_never_contains_the_raw_value() {
    let secret_values = ["alice@example.com", "device-1234-5678", "+15551234567"];
    for value in secret_values {
        let subject = workflow(Binding::subject());
        let code = issue(
            &subject,
            "invite",
            &no_headers(),
            Some(&OtacClaims::new().subject(value)),
        );
        let device = workflow(Binding::header(HeaderName::from_static("device-id")));
        let code2 = issue(&device, "invite", &parts(&[("device-id", value)]), None);
        for code in [code, code2] {
            let payload = payload_json(&code);
            assert!(!payload.contains(value), "{payload}");
            assert!(!code.contains(&b64(value)));
            let sub = otac::dangerous::insecure_decode_claims(&code)
                .unwrap()
                .sub
                .unwrap();
            // base64url of a 32-byte HMAC.
            assert_eq!(sub.len(), 43);
            assert_eq!(URL_SAFE_NO_PAD.decode(&sub).unwrap().len(), 32);
            // Not a plain, unkeyed hash of the value either.
            let plain = {
                use sha2::Digest;
                b64(Sha256::digest(value.as_bytes()))
            };
            assert_ne!(sub, plain);
        }
    }
}

// ---- stateless mode -------------------------------------------------------------------------------------------

#[test]
fn verifying_never_spends_and_stateless_mode_has_nothing_to_spend() {
    let stateless = Workflow::builder(WF)
        .issuer(ISS)
        .keys(KeySet::new(key()))
        .binding(Binding::none())
        .replay(Replay::stateless())
        .step(Step::new("invite").then("verify-email"))
        .step(Step::new("verify-email"))
        .build()
        .unwrap();
    let code = issue(&stateless, "invite", &no_headers(), None);
    let v = Verifier::new(&stateless, "verify-email").unwrap();
    let first = v.verify_token(&code, &no_headers()).unwrap();
    // Documented: inside its lifetime a stateless code verifies again.
    let again = v.verify_token(&code, &no_headers()).unwrap();
    assert_eq!(first.jti(), again.jti());
    assert!(v.consume(&first).is_none(), "stateless: no store call");

    let stored = workflow(Binding::none());
    let code = issue(&stored, "invite", &no_headers(), None);
    let v = Verifier::new(&stored, "verify-email").unwrap();
    let verified = v.verify_token(&code, &no_headers()).unwrap();
    assert!(v.consume(&verified).is_some(), "store mode spends");
}

// ---- error values ---------------------------------------------------------------------------------------------

#[test]
fn error_responses_are_problem_json_without_the_token() {
    let wf = workflow(Binding::none());
    let v = Verifier::new(&wf, "verify-email").unwrap();
    let token = forge(&with(claims(), "exp", json!(now() - 100)));
    let err = v.verify_token(&token, &no_headers()).unwrap_err();
    let response = v.reject(&err);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["code"], "otac_expired");
    assert_eq!(body["status"], 401);
    let text = String::from_utf8(response.body().to_vec()).unwrap();
    for part in token.split('.') {
        assert!(!text.contains(part));
    }
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(token.split('.').nth(2).unwrap()));
}
