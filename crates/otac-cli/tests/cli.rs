//! The `otac` binary end to end: keygen → mint → verify, inspect, and rejections.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const BINDING_SECRET: &str = "the binding secret of both services, 32+ bytes";

fn otac() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otac"));
    cmd.env_remove("OTAC_TEST_SECRET");
    cmd
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("otac-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The code with one signature character changed (still base64url).
fn tamper_signature(code: &str) -> String {
    let (message, signature) = code.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = signature.chars().collect();
    sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
    format!("{message}.{}", sig.into_iter().collect::<String>())
}

/// The code with another audience in its claims, the signature kept.
fn tamper_claims(code: &str) -> String {
    let parts: Vec<&str> = code.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["ctx"]["user_id"] = Value::from("someone-else");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[test]
fn hs256_keygen_mint_verify_round_trip() {
    let dir = scratch("hs256");
    let secret_file = dir.join("secret");
    let keygen = otac()
        .args(["keygen", "--alg", "HS256", "--out", path(&secret_file)])
        .assert()
        .success();
    assert!(
        stdout(keygen.get_output()).is_empty(),
        "the secret went to the file"
    );
    assert!(stderr(keygen.get_output()).contains("kid: "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.trim().len() >= 43, "32 random bytes, base64url");

    // Mint with the file, verify with the same secret from the environment.
    let minted = otac()
        .args([
            "mint",
            "--workflow",
            "onboarding",
            "--issuer",
            "accounts.test",
        ])
        .args(["--step-from", "verify-email", "--to", "verify-mobile"])
        .args([
            "--secret-file",
            path(&secret_file),
            "--claim",
            "user_id=u-1",
            "--claim",
            "tries=2",
        ])
        .assert()
        .success();
    let code = stdout(minted.get_output()).trim().to_owned();
    assert_eq!(code.split('.').count(), 3);

    let verified = otac()
        .env("OTAC_TEST_SECRET", secret.trim())
        .args([
            "verify",
            &code,
            "--step",
            "verify-mobile",
            "--workflow",
            "onboarding",
            "--issuer",
            "accounts.test",
            "--secret-env",
            "OTAC_TEST_SECRET",
        ])
        .assert()
        .success();
    let claims: Value = serde_json::from_str(&stdout(verified.get_output())).unwrap();
    assert_eq!(claims["aud"], "verify-mobile");
    assert_eq!(claims["stp"], "verify-email");
    assert_eq!(claims["ctx"]["user_id"], "u-1");
    assert_eq!(claims["ctx"]["tries"], 2);
    assert!(stderr(verified.get_output()).contains("VERIFIED"));

    // The wrong step, issuer or secret, and tampering, are rejected with the stable code and exit status 1.
    let reject = |args: &[&str], code_expected: &str| {
        let out = otac()
            .env("OTAC_TEST_SECRET", secret.trim())
            .args(args)
            .args([
                "--workflow",
                "onboarding",
                "--secret-env",
                "OTAC_TEST_SECRET",
            ])
            .assert()
            .code(1);
        assert_eq!(stdout(out.get_output()).trim(), code_expected, "{args:?}");
    };
    reject(
        &[
            "verify",
            &code,
            "--step",
            "set-password",
            "--issuer",
            "accounts.test",
        ],
        "otac_wrong_step",
    );
    reject(
        &["verify", &code, "--step", "verify-mobile"],
        "otac_invalid",
    );
    let tampered = tamper_signature(&code);
    reject(
        &[
            "verify",
            &tampered,
            "--step",
            "verify-mobile",
            "--issuer",
            "accounts.test",
        ],
        "otac_invalid",
    );
    let tampered = tamper_claims(&code);
    reject(
        &[
            "verify",
            &tampered,
            "--step",
            "verify-mobile",
            "--issuer",
            "accounts.test",
        ],
        "otac_invalid",
    );
    let out = otac()
        .env(
            "OTAC_TEST_SECRET",
            "another secret that is at least 32 bytes long",
        )
        .args([
            "verify",
            &code,
            "--step",
            "verify-mobile",
            "--workflow",
            "onboarding",
        ])
        .args([
            "--issuer",
            "accounts.test",
            "--secret-env",
            "OTAC_TEST_SECRET",
        ])
        .assert()
        .code(1);
    assert_eq!(stdout(out.get_output()).trim(), "otac_invalid");
}

#[test]
fn es256_keygen_mint_verify_round_trip_with_the_jwks() {
    let dir = scratch("es256");
    let key = dir.join("key.pem");
    let jwks = dir.join("jwks.json");
    otac()
        .args([
            "keygen",
            "--alg",
            "ES256",
            "--out",
            path(&key),
            "--jwks-out",
            path(&jwks),
        ])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();
    let jwk = &doc["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "no private member in the JWKS");

    // Without --force an existing key is never overwritten.
    otac()
        .args([
            "keygen",
            "--alg",
            "ES256",
            "--out",
            path(&key),
            "--jwks-out",
            path(&jwks),
        ])
        .assert()
        .code(2);

    let minted = otac()
        .env("OTAC_BINDING", BINDING_SECRET)
        .args([
            "mint",
            "--workflow",
            "onboarding",
            "--step-from",
            "verify-email",
            "--to",
            "verify-mobile",
        ])
        .args([
            "--key",
            path(&key),
            "--subject",
            "u-1",
            "--binding-secret-env",
            "OTAC_BINDING",
        ])
        .assert()
        .success();
    let code = stdout(minted.get_output()).trim().to_owned();

    let verify = |code: &str, source: &[&str], subject: &str| {
        otac()
            .env("OTAC_BINDING", BINDING_SECRET)
            .args([
                "verify",
                code,
                "--workflow",
                "onboarding",
                "--step",
                "verify-mobile",
            ])
            .args(source)
            .args(["--subject", subject, "--binding-secret-env", "OTAC_BINDING"])
            .assert()
    };
    let out = verify(&code, &["--jwks", path(&jwks)], "u-1").success();
    let claims: Value = serde_json::from_str(&stdout(out.get_output())).unwrap();
    assert!(
        claims["sub"].is_string() && claims["sub"] != "u-1",
        "only a keyed hash of the subject"
    );
    verify(&code, &["--key", path(&key)], "u-1").success();
    let out = verify(&code, &["--jwks", path(&jwks)], "u-2").code(1);
    assert_eq!(stdout(out.get_output()).trim(), "otac_binding_mismatch");
    let out = verify(&tamper_signature(&code), &["--jwks", path(&jwks)], "u-1").code(1);
    assert_eq!(stdout(out.get_output()).trim(), "otac_invalid");
    let out = verify(&tamper_claims(&code), &["--jwks", path(&jwks)], "u-1").code(1);
    assert_eq!(stdout(out.get_output()).trim(), "otac_invalid");

    // A subject binding with an asymmetric key needs the binding secret.
    let out = otac()
        .args([
            "mint",
            "--workflow",
            "onboarding",
            "--step-from",
            "a",
            "--to",
            "b",
        ])
        .args(["--key", path(&key), "--subject", "u-1"])
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("binding secret"));
    // A JWKS never signs.
    otac()
        .args([
            "mint",
            "--workflow",
            "onboarding",
            "--step-from",
            "a",
            "--to",
            "b",
        ])
        .args(["--jwks", path(&jwks)])
        .assert()
        .code(2);
}

#[test]
fn eddsa_keys_print_to_standard_output() {
    let out = otac().args(["keygen", "--alg", "EdDSA"]).assert().success();
    let text = stdout(out.get_output());
    let (pem, jwks) = text.split_once("-----END PRIVATE KEY-----\n").unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let doc: Value = serde_json::from_str(jwks).unwrap();
    assert_eq!(doc["keys"][0]["kty"], "OKP");
    assert_eq!(doc["keys"][0]["crv"], "Ed25519");

    let dir = scratch("eddsa");
    let key = dir.join("ed.pem");
    std::fs::write(&key, format!("{pem}-----END PRIVATE KEY-----\n")).unwrap();
    let minted = otac()
        .args([
            "mint",
            "--workflow",
            "w",
            "--step-from",
            "a",
            "--to",
            "b",
            "--to",
            "c",
            "--key",
            path(&key),
        ])
        .assert()
        .success();
    let code = stdout(minted.get_output()).trim().to_owned();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    for step in ["b", "c"] {
        otac()
            .args([
                "verify",
                &code,
                "--workflow",
                "w",
                "--step",
                step,
                "--jwks",
                path(&jwks_file),
            ])
            .assert()
            .success();
    }
}

#[test]
fn inspect_decodes_without_verifying() {
    let secret = "a secret for inspect tests, 32 bytes or more";
    let minted = otac()
        .env("OTAC_TEST_SECRET", secret)
        .args([
            "mint",
            "--workflow",
            "w",
            "--issuer",
            "iss",
            "--step-from",
            "a",
            "--to",
            "b",
        ])
        .args([
            "--secret-env",
            "OTAC_TEST_SECRET",
            "--claim",
            "user_id=u-9",
            "--lifetime",
            "120",
        ])
        .assert()
        .success();
    let code = stdout(minted.get_output()).trim().to_owned();
    // Even a tampered code is shown, and clearly labelled as not verified.
    for code in [code.clone(), tamper_claims(&code)] {
        let out = otac().args(["inspect", &code]).assert().success();
        let text = stdout(out.get_output());
        assert!(text.starts_with("NOT VERIFIED"), "{text}");
        assert!(text.contains("\"alg\": \"HS256\""));
        assert!(text.contains("\"typ\": \"otac+jwt\""));
        assert!(text.contains("\"aud\": \"b\""));
        assert!(text.contains("expires:"));
        assert!(text.contains("(in 1m") || text.contains("(in 2m"), "{text}");
    }
    // From standard input too.
    let out = otac()
        .args(["inspect", "-"])
        .write_stdin(format!("{code}\n"))
        .assert()
        .success();
    assert!(stdout(out.get_output()).contains("u-9"));
    otac().args(["inspect", "not-a-code"]).assert().code(2);
}

#[test]
fn secrets_are_never_taken_from_the_command_line() {
    otac()
        .args([
            "mint",
            "--workflow",
            "w",
            "--step-from",
            "a",
            "--to",
            "b",
            "--secret",
            "x",
        ])
        .assert()
        .code(2);
    // Exactly one key source.
    otac()
        .args(["mint", "--workflow", "w", "--step-from", "a", "--to", "b"])
        .assert()
        .code(2);
    let out = otac()
        .args([
            "mint",
            "--workflow",
            "w",
            "--step-from",
            "a",
            "--to",
            "b",
            "--secret-env",
            "OTAC_TEST_SECRET",
        ])
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("OTAC_TEST_SECRET"));
}
