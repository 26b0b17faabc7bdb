//! Keys beyond HS256: every algorithm round trip, asymmetric rotation, JWKS export and import, verify-only sets,
//! and key confusion. The PEM fixtures in `tests/keys/` were made once with `openssl genpkey`.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http::request::Parts;
use otac::{
    Algorithm, Binding, ConfigError, Issuer, Key, KeySet, OtacClaims, OtacError, Replay, Step,
    VerifiedOtac, Verifier, Workflow,
};
use serde_json::{Value, json};
use sha2::Sha256;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/", $name))
    };
}

const RSA_A: &str = fixture!("rsa-a.pem");
const RSA_A_PUB: &str = fixture!("rsa-a.pub.pem");
const RSA_B: &str = fixture!("rsa-b.pem");
const RSA_1024: &str = fixture!("rsa-1024.pem");
const EC_A: &str = fixture!("ec-a.pem");
const EC_A_PUB: &str = fixture!("ec-a.pub.pem");
const EC_B: &str = fixture!("ec-b.pem");
const EC_P384: &str = fixture!("ec-p384.pem");
const ED_A: &str = fixture!("ed-a.pem");
const ED_A_PUB: &str = fixture!("ed-a.pub.pem");
const ED_B: &str = fixture!("ed-b.pem");

const BINDING_SECRET: &[u8] = b"a binding secret shared by every service";

fn workflow(keys: KeySet, binding: Binding) -> Result<Workflow, ConfigError> {
    Workflow::builder("wf")
        .issuer("iss.test")
        .keys(keys)
        .binding(binding)
        .replay(Replay::stateless())
        .step(Step::new("start").then("next"))
        .step(Step::new("next"))
        .build()
}

fn wf(keys: KeySet) -> Workflow {
    workflow(keys, Binding::none()).unwrap()
}

fn parts() -> Parts {
    http::Request::new(()).into_parts().0
}

fn issue(wf: &Workflow, claims: Option<&OtacClaims>) -> String {
    let issuer = Issuer::new(wf, "start").unwrap();
    issuer.issue(&issuer.prepare(&parts()), claims).unwrap()
}

fn verify(wf: &Workflow, code: &str) -> Result<VerifiedOtac, OtacError> {
    Verifier::new(wf, "next")
        .unwrap()
        .verify_token(code, &parts())
}

#[track_caller]
fn assert_invalid(result: Result<VerifiedOtac, OtacError>) {
    match result {
        Ok(_) => panic!("expected otac_invalid, the code verified"),
        Err(err) => assert_eq!(err.code(), "otac_invalid", "reason: {}", err.reason()),
    }
}

fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn segments(code: &str) -> (String, String, String) {
    let mut it = code.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

fn header_json(code: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments(code).0).unwrap()).unwrap()
}

fn hs256(secret: &[u8], message: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(message.as_bytes());
    b64(mac.finalize().into_bytes())
}

// ---- every algorithm ------------------------------------------------------------------------------------------

#[test]
fn every_algorithm_round_trips() {
    let keys = [
        Key::hs256([1u8; 32]).unwrap(),
        Key::hs384([2u8; 48]).unwrap(),
        Key::hs512([3u8; 64]).unwrap(),
        Key::rs256_pem(RSA_A).unwrap(),
        Key::ps256_pem(RSA_A).unwrap(),
        Key::es256_pem(EC_A).unwrap(),
        Key::ed25519_pem(ED_A).unwrap(),
    ];
    let names = [
        "HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA",
    ];
    for (key, name) in keys.into_iter().zip(names) {
        assert!(key.can_sign(), "{name}");
        let wf = wf(KeySet::new(key.clone()));
        let code = issue(&wf, Some(&OtacClaims::new().claim("n", 7)));
        let header = header_json(&code);
        assert_eq!(header["alg"], name);
        assert_eq!(header["typ"], "otac+jwt");
        assert_eq!(header["kid"], key.kid());
        let verified = verify(&wf, &code).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.claim::<u32>("n"), Some(7), "{name}");

        // A flipped signature byte never verifies.
        let (h, p, s) = segments(&code);
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[0] ^= 1;
        assert_invalid(verify(&wf, &format!("{h}.{p}.{}", b64(sig))));
    }
}

#[test]
fn asymmetric_kid_is_the_rfc7638_thumbprint() {
    // Computed independently from the openssl output of the fixtures.
    let rsa = Key::rs256_pem(RSA_A).unwrap();
    let ec = Key::es256_pem(EC_A).unwrap();
    let ed = Key::ed25519_pem(ED_A).unwrap();
    assert_eq!(rsa.kid(), "MnvJHBMiM0pbKcVHzbaXMRvmy_iUCZbmQdbtVC1WdZI");
    assert_eq!(ec.kid(), "6UQ1Ruq9eFJtRLXJ0PpJr2_BogOMCLy-_kkZM5uGSSA");
    assert_eq!(ed.kid(), "TQo6TL0IsgD0OgPYusLqJt3ckQzT811VIgZHFj-3GaA");
    assert_eq!(rsa.thumbprint().as_deref(), Some(rsa.kid()));
    assert_eq!(Key::hs256([1u8; 32]).unwrap().thumbprint(), None);

    // The public PEM gives the same key id, and verifies what the private key signed.
    let pairs = [
        (rsa, Key::public_pem(Algorithm::RS256, RSA_A_PUB).unwrap()),
        (ec, Key::public_pem(Algorithm::ES256, EC_A_PUB).unwrap()),
        (ed, Key::public_pem(Algorithm::EdDSA, ED_A_PUB).unwrap()),
    ];
    for (private, public) in pairs {
        assert_eq!(private.kid(), public.kid());
        assert!(!public.can_sign());
        let code = issue(&wf(KeySet::new(private)), None);
        verify(&wf(KeySet::new(public)), &code).unwrap();
    }

    // An explicit kid replaces the thumbprint, in the header and in the JWK.
    let named = Key::es256_pem(EC_A).unwrap().with_kid("ec-2026").unwrap();
    assert_eq!(named.public_jwk().unwrap()["kid"], "ec-2026");
    assert_eq!(named.thumbprint().unwrap(), ec_thumbprint());
}

fn ec_thumbprint() -> String {
    "6UQ1Ruq9eFJtRLXJ0PpJr2_BogOMCLy-_kkZM5uGSSA".to_owned()
}

#[test]
fn rs256_and_ps256_of_one_rsa_key_are_two_keys() {
    let rs = Key::rs256_pem(RSA_A).unwrap();
    let ps = Key::ps256_pem(RSA_A).unwrap();
    assert_eq!(rs.kid(), ps.kid(), "same public key, same thumbprint");
    assert!(matches!(
        KeySet::new(rs.clone()).with_previous(ps.clone()),
        Err(ConfigError::DuplicateKid(_))
    ));
    let ps = ps.with_kid("rsa-a-pss").unwrap();
    let set = KeySet::new(rs.clone()).with_previous(ps.clone()).unwrap();
    let wf_both = wf(set);

    // A PS256 code relabelled RS256 (same kid) is refused before any signature work, and vice versa.
    let ps_code = issue(&wf(KeySet::new(ps)), None);
    verify(&wf_both, &ps_code).unwrap();
    let (_, p, s) = segments(&ps_code);
    let relabelled = b64(r#"{"alg":"RS256","typ":"otac+jwt","kid":"rsa-a-pss"}"#);
    assert_invalid(verify(&wf_both, &format!("{relabelled}.{p}.{s}")));
    let rs_code = issue(&wf(KeySet::new(rs.clone())), None);
    let (_, p, s) = segments(&rs_code);
    let relabelled = b64(format!(
        r#"{{"alg":"PS256","typ":"otac+jwt","kid":"{}"}}"#,
        rs.kid()
    ));
    assert_invalid(verify(&wf_both, &format!("{relabelled}.{p}.{s}")));
}

// ---- key confusion --------------------------------------------------------------------------------------------

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let rsa = Key::rs256_pem(RSA_A).unwrap();
    let wf = wf(KeySet::new(rsa.clone()));
    let (_, payload, _) = segments(&issue(&wf, None));
    let jwk = rsa.public_jwk().unwrap();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    // Every form of "the public key" an attacker could use as the HMAC secret.
    let jwk_text = jwk.to_string();
    for secret in [RSA_A_PUB.as_bytes(), n.as_slice(), jwk_text.as_bytes()] {
        let header = b64(format!(
            r#"{{"alg":"HS256","typ":"otac+jwt","kid":"{}"}}"#,
            rsa.kid()
        ));
        let message = format!("{header}.{payload}");
        let forged = format!("{message}.{}", hs256(secret, &message));
        assert_invalid(verify(&wf, &forged));
    }
}

#[test]
fn rs256_header_naming_an_hmac_kid_is_refused() {
    let hs = Key::hs256([5u8; 32]).unwrap();
    let rsa = Key::rs256_pem(RSA_A).unwrap();
    let mixed = wf(KeySet::new(hs.clone()).with_previous(rsa.clone()).unwrap());
    // A genuine RS256 signature under a header that names the HMAC key.
    let rs_code = issue(&wf(KeySet::new(rsa)), None);
    let (_, p, s) = segments(&rs_code);
    let header = b64(format!(
        r#"{{"alg":"RS256","typ":"otac+jwt","kid":"{}"}}"#,
        hs.kid()
    ));
    assert_invalid(verify(&mixed, &format!("{header}.{p}.{s}")));
    // And the other way round: an HS256 header naming the RSA key, signed with the HMAC secret.
    let hs_code = issue(&mixed, None);
    verify(&mixed, &hs_code).unwrap();
}

#[test]
fn all_zero_and_truncated_signatures_are_refused() {
    for key in [
        Key::es256_pem(EC_A).unwrap(),
        Key::ed25519_pem(ED_A).unwrap(),
        Key::rs256_pem(RSA_A).unwrap(),
    ] {
        let wf = wf(KeySet::new(key));
        let (h, p, s) = segments(&issue(&wf, None));
        let len = URL_SAFE_NO_PAD.decode(&s).unwrap().len();
        assert_invalid(verify(&wf, &format!("{h}.{p}.{}", b64(vec![0u8; len]))));
        assert_invalid(verify(&wf, &format!("{h}.{p}.{}", b64(vec![0u8; 64]))));
        assert_invalid(verify(&wf, &format!("{h}.{p}.{}", b64([1u8]))));
        let sig = URL_SAFE_NO_PAD.decode(&s).unwrap();
        assert_invalid(verify(&wf, &format!("{h}.{p}.{}", b64(&sig[..len - 1]))));
    }
}

#[test]
fn ecdsa_signature_of_another_key_is_refused() {
    let a = wf(KeySet::new(Key::es256_pem(EC_A).unwrap()));
    let b_key = Key::es256_pem(EC_B).unwrap();
    let (_, p, s) = segments(&issue(&wf(KeySet::new(b_key)), None));
    // ec-b's signature under ec-a's header: right alg, right kid, wrong key.
    let (h, _, _) = segments(&issue(&a, None));
    assert_invalid(verify(&a, &format!("{h}.{p}.{s}")));
}

// ---- rotation -------------------------------------------------------------------------------------------------

#[test]
fn rotation_with_asymmetric_keys() {
    for (old, new) in [
        (Key::es256_pem(EC_A).unwrap(), Key::es256_pem(EC_B).unwrap()),
        (
            Key::ed25519_pem(ED_A).unwrap(),
            Key::ed25519_pem(ED_B).unwrap(),
        ),
        (
            Key::rs256_pem(RSA_A).unwrap(),
            Key::rs256_pem(RSA_B).unwrap(),
        ),
    ] {
        let before = KeySet::new(old.clone());
        let old_code = issue(&wf(before.clone()), None);

        let rotated = before.rotate(new.clone()).unwrap();
        assert_eq!(rotated.current().kid(), new.kid());
        let wf_rotated = wf(rotated.clone());
        verify(&wf_rotated, &old_code).expect("signed before the rotation, still valid");
        let new_code = issue(&wf_rotated, None);
        assert_eq!(header_json(&new_code)["kid"], new.kid());
        verify(&wf_rotated, &new_code).unwrap();
        let kids: Vec<Value> = rotated.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids, [json!(new.kid()), json!(old.kid())], "current first");

        let dropped = wf(rotated.without(old.kid()));
        assert_invalid(verify(&dropped, &old_code));
        verify(&dropped, &new_code).unwrap();
    }
}

#[test]
fn next_key_is_published_before_it_signs() {
    let old = Key::es256_pem(EC_A).unwrap();
    let next = Key::es256_pem(EC_B).unwrap();
    // Step 1: the next key is published (in the JWKS), the old one still signs.
    let staged = KeySet::new(old.clone())
        .with_previous(next.verify_only())
        .unwrap();
    assert_eq!(staged.jwks()["keys"].as_array().unwrap().len(), 2);
    let code = issue(&wf(staged.clone()), None);
    assert_eq!(header_json(&code)["kid"], old.kid());
    // A verifier that loaded this JWKS already accepts codes of the next key.
    let verifier = wf(KeySet::from_jwks(staged.jwks().to_string()).unwrap());
    // Step 2: rotate to it; the published copy is replaced by the signing key.
    let rotated = staged.rotate(next.clone()).unwrap();
    assert_eq!(rotated.iter().count(), 2);
    let new_code = issue(&wf(rotated), None);
    verify(&verifier, &code).unwrap();
    verify(&verifier, &new_code).unwrap();
}

// ---- JWKS and verify-only sets --------------------------------------------------------------------------------

#[test]
fn jwks_export_and_import_verify_the_issuing_sets_codes() {
    let issuing = KeySet::new(Key::es256_pem(EC_A).unwrap())
        .with_previous(Key::rs256_pem(RSA_A).unwrap())
        .unwrap()
        .with_previous(Key::ed25519_pem(ED_A).unwrap())
        .unwrap()
        .with_previous(Key::hs256([4u8; 32]).unwrap())
        .unwrap();
    let jwks = issuing.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "HMAC keys are never published");
    for jwk in keys {
        assert_eq!(jwk["use"], "sig");
        assert!(jwk["kid"].is_string() && jwk["alg"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(jwk.get(private).is_none());
        }
    }
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[1]["kty"], "RSA");
    assert_eq!(keys[1]["e"], "AQAB");
    assert_eq!(keys[2]["kty"], "OKP");

    let verifying = KeySet::from_jwks(serde_json::to_vec(&jwks).unwrap()).unwrap();
    assert_eq!(verifying.iter().count(), 3);
    assert_eq!(
        verifying.jwks(),
        jwks,
        "a verifier republishes the same document"
    );
    let verifier = wf(verifying);
    let code = issue(&wf(issuing.clone()), None);
    verify(&verifier, &code).unwrap();
    // Codes of the previous keys too.
    for kid in keys.iter().skip(1).map(|k| k["kid"].as_str().unwrap()) {
        let key = issuing.find(kid).unwrap().clone();
        verify(&verifier, &issue(&wf(KeySet::new(key)), None)).unwrap();
    }
    // But nothing signed with the unpublished HMAC key.
    assert_invalid(verify(
        &verifier,
        &issue(&wf(KeySet::new(Key::hs256([4u8; 32]).unwrap())), None),
    ));
}

#[test]
fn jwks_file_loads() {
    let path = std::env::temp_dir().join(format!("otac-jwks-{}.json", std::process::id()));
    let set = KeySet::new(Key::ed25519_pem(ED_A).unwrap());
    std::fs::write(&path, set.jwks().to_string()).unwrap();
    let loaded = KeySet::from_jwks_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.current().kid(), set.current().kid());
    assert!(matches!(
        KeySet::from_jwks_file(&path),
        Err(ConfigError::BadJwks(_))
    ));
}

#[test]
fn verify_only_sets_cannot_issue() {
    let from_jwks = KeySet::from_jwks(
        KeySet::new(Key::es256_pem(EC_A).unwrap())
            .jwks()
            .to_string(),
    )
    .unwrap();
    let from_pem = KeySet::new(Key::public_pem(Algorithm::ES256, EC_A_PUB).unwrap());
    let explicit = KeySet::verify_only([
        Key::es256_pem(EC_A).unwrap(),
        Key::hs256([1u8; 32]).unwrap(),
    ])
    .unwrap();
    assert!(explicit.iter().all(|k| !k.can_sign()));
    for set in [from_jwks, from_pem, explicit] {
        let wf = wf(set);
        assert_eq!(
            Issuer::new(&wf, "start").unwrap_err(),
            ConfigError::NoSigningKey
        );
        // The verifier side builds and works.
        Verifier::new(&wf, "next").unwrap();
    }
    assert_eq!(KeySet::verify_only([]).unwrap_err(), ConfigError::NoKeys);
}

fn jwk_error(jwk: Value) -> ConfigError {
    KeySet::from_jwks(json!({ "keys": [jwk] }).to_string()).unwrap_err()
}

#[test]
fn jwks_import_is_strict() {
    let good = Key::es256_pem(EC_A).unwrap().public_jwk().unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut jwk = good.clone();
        f(jwk.as_object_mut().unwrap());
        jwk
    };
    let bad_key = |e: ConfigError| matches!(e, ConfigError::BadJwk { index: 0, .. });
    assert!(bad_key(jwk_error(edit(&|j| {
        j.remove("kid");
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.remove("alg");
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("d".into(), json!("AAAA"));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("use".into(), json!("enc"));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("key_ops".into(), json!(["sign"]));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("alg".into(), json!("ES384"));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("alg".into(), json!("HS256"));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("crv".into(), json!("P-384"));
    }))));
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("x".into(), json!("not base64!"));
    }))));
    assert!(
        bad_key(jwk_error(edit(&|j| {
            j.insert("x".into(), json!(b64([7u8; 32])));
        }))),
        "a point not on the curve"
    );
    assert!(bad_key(jwk_error(edit(&|j| {
        j.insert("kid".into(), json!(7));
    }))));
    assert!(bad_key(jwk_error(
        json!({"kty":"oct","alg":"HS256","kid":"s","k": b64([1u8; 32])})
    )));
    assert!(bad_key(jwk_error(
        json!({"kty":"RSA","alg":"RS256","kid":"short","n": b64([0xffu8; 128]),"e":"AQAB"})
    )));
    let ed = Key::ed25519_pem(ED_A).unwrap().public_jwk().unwrap();
    let mut short = ed.clone();
    short["x"] = json!(b64([1u8; 31]));
    assert!(bad_key(jwk_error(short)));
    let mut wrong_alg = ed;
    wrong_alg["alg"] = json!("ES256");
    assert!(bad_key(jwk_error(wrong_alg)));

    // Whole-document problems.
    assert!(matches!(
        KeySet::from_jwks("nope"),
        Err(ConfigError::BadJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks("{}"),
        Err(ConfigError::BadJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(r#"{"keys":[]}"#),
        Err(ConfigError::BadJwks(_))
    ));
    let dup = json!({ "keys": [good.clone(), good.clone()] }).to_string();
    assert!(matches!(
        KeySet::from_jwks(dup),
        Err(ConfigError::DuplicateKid(_))
    ));
    // The position of the bad key is reported.
    let second = json!({ "keys": [good.clone(), {"kty": "RSA"}] }).to_string();
    assert!(matches!(
        KeySet::from_jwks(second),
        Err(ConfigError::BadJwk { index: 1, .. })
    ));
    // Unknown members are ignored (RFC 7517), so documents of other tools load.
    let mut extra = good;
    extra["x5t#S256"] = json!("whatever");
    KeySet::from_jwks(json!({ "keys": [extra] }).to_string()).unwrap();
}

#[test]
fn pem_loading_is_strict() {
    assert!(Key::rs256_pem(RSA_A_PUB).is_err(), "public key as private");
    assert!(Key::rs256_pem(EC_A).is_err(), "EC key as RSA");
    assert!(Key::rs256_pem(RSA_1024).is_err(), "1024-bit RSA");
    assert!(Key::es256_pem(EC_P384).is_err(), "P-384 key as ES256");
    assert!(Key::es256_pem(RSA_A).is_err());
    assert!(Key::es256_pem(ED_A).is_err());
    assert!(Key::ed25519_pem(EC_A).is_err());
    assert!(Key::ed25519_pem("garbage").is_err());
    assert!(
        Key::public_pem(Algorithm::RS256, RSA_A).is_err(),
        "private key as public"
    );
    assert!(Key::public_pem(Algorithm::ES256, RSA_A_PUB).is_err());
    assert!(Key::public_pem(Algorithm::EdDSA, EC_A_PUB).is_err());
    assert!(Key::public_pem(Algorithm::HS256, RSA_A_PUB).is_err());
    assert!(Key::public_pem(Algorithm::ES384, EC_A_PUB).is_err());
    // The JWK of a PS256 key says PS256.
    let ps = Key::public_pem(Algorithm::PS256, RSA_A_PUB).unwrap();
    assert_eq!(ps.public_jwk().unwrap()["alg"], "PS256");
}

// ---- binding secrets ------------------------------------------------------------------------------------------

#[test]
fn bound_workflows_with_asymmetric_keys_need_a_binding_secret() {
    let ec = || KeySet::new(Key::es256_pem(EC_A).unwrap());
    assert_eq!(
        workflow(ec(), Binding::subject()).unwrap_err(),
        ConfigError::BindingSecretRequired
    );
    assert_eq!(
        workflow(ec(), Binding::cookie("sid")).unwrap_err(),
        ConfigError::BindingSecretRequired
    );
    workflow(ec(), Binding::none()).unwrap();
    // An HMAC set has one already; an HMAC key rotated to an asymmetric one keeps it.
    let rotated = KeySet::new(Key::hs256([1u8; 32]).unwrap())
        .rotate(Key::es256_pem(EC_A).unwrap())
        .unwrap();
    workflow(rotated, Binding::subject()).unwrap();

    // Issuer and verifier share the binding secret, not a signing key.
    let issuing = workflow(
        ec().with_binding_secret(BINDING_SECRET).unwrap(),
        Binding::subject(),
    )
    .unwrap();
    let code = issue(&issuing, Some(&OtacClaims::new().subject("u-1")));
    let verifying_keys = KeySet::from_jwks(ec().jwks().to_string())
        .unwrap()
        .with_binding_secret(BINDING_SECRET)
        .unwrap();
    let verifying = workflow(verifying_keys, Binding::subject()).unwrap();
    let verified = verify(&verifying, &code).unwrap();
    assert!(verified.subject_is("u-1"));
    assert!(!verified.subject_is("u-2"));
    // A verifier with another binding secret does not recognise the subject.
    let other = KeySet::from_jwks(ec().jwks().to_string())
        .unwrap()
        .with_binding_secret(b"some other binding secret, 32+ bytes")
        .unwrap();
    let verified = verify(&workflow(other, Binding::subject()).unwrap(), &code).unwrap();
    assert!(!verified.subject_is("u-1"));
}
