//! Observability: a full onboarding run leaves one span per require and per issue, with workflow, step, run id and
//! outcome, a debug event for the rejection with its stable code, and never a token.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarding_run_is_traced_without_tokens() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_env_filter("otac=debug")
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this test binary");

    let server = start(Framework::Axum).await;
    let (user_id, to_mobile) = server.through_email().await;
    let sms = server.latest_code(&user_id, "sms").await;
    let res = server
        .post("/verify-mobile", Some(&to_mobile), json!({"code": sms}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let to_password = otac_of(&res);
    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // One replay attempt.
    let res = server
        .post(
            "/set-password",
            Some(&to_password),
            json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    drop(server);

    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let run = claims_of(&to_mobile)["run"]
        .as_str()
        .expect("run")
        .to_owned();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    // Spans close with their fields: issue at verify-email and verify-mobile, require at verify-mobile and twice at
    // set-password.
    assert!(
        lines("otac.issue{workflow=onboarding step=verify-email") >= 1,
        "issue span for verify-email:\n{log}"
    );
    assert!(
        lines("otac.issue{workflow=onboarding step=verify-mobile") >= 1,
        "{log}"
    );
    assert!(
        lines("otac.require{workflow=onboarding step=verify-mobile") >= 1,
        "{log}"
    );
    assert!(
        lines("otac.require{workflow=onboarding step=set-password") >= 2,
        "{log}"
    );
    assert!(
        lines(&format!("run=\"{run}\"")) >= 4,
        "the run id is on the spans:\n{log}"
    );
    assert!(lines("outcome=\"issued\"") >= 2, "{log}");
    assert!(lines("outcome=\"passed\"") >= 2, "{log}");
    assert!(lines("outcome=\"otac_replayed\"") >= 1, "{log}");
    assert_eq!(
        lines("outcome=\"passed\" outcome="),
        0,
        "one outcome per span:\n{log}"
    );
    assert!(
        lines("otac rejected") >= 1 && log.contains("otac_replayed"),
        "{log}"
    );
    // Never a token, nor a signature or payload segment of one.
    for token in [&to_mobile, &to_password] {
        assert!(!log.contains(token.as_str()), "a token was logged");
        for segment in token.split('.').skip(1) {
            assert!(!log.contains(segment), "a token segment was logged");
        }
    }
    assert!(!log.contains(&sms), "the SMS code was not logged");
}
