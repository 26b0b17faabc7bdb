//! Metrics: after an onboarding run with one replay attempt, the Prometheus endpoint shows the counters moved.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_endpoint_counts_issues_uses_and_replays() {
    let metrics_route = otac_examples::metrics::prometheus_route().expect("recorder");
    let workflow = workflow_with(otac_examples::config::memory_replay(), false);
    let app =
        otac_examples::onboarding::router(&workflow, otac_examples::domain::Directory::default())
            .merge(metrics_route);
    let server = serve_router(app, workflow).await;
    let (_, to_password) = server.through_mobile().await;
    let body = json!({"password": "correct horse battery"});
    assert_eq!(
        server
            .post("/set-password", Some(&to_password), body.clone())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .post("/set-password", Some(&to_password), body)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let scraped = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let issued = |step: &str| {
        value(
            &scraped,
            &format!("otac_issued_total{{workflow=\"onboarding\",step=\"{step}\"}}"),
        )
    };
    assert_eq!(issued("verify-email"), 1.0, "{scraped}");
    assert_eq!(issued("verify-mobile"), 1.0, "{scraped}");
    assert_eq!(
        value(
            &scraped,
            "otac_consumed_total{workflow=\"onboarding\",step=\"set-password\"}"
        ),
        1.0,
        "{scraped}"
    );
    assert_eq!(
        value(
            &scraped,
            "otac_rejected_total{workflow=\"onboarding\",step=\"set-password\",code=\"otac_replayed\"}"
        ),
        1.0,
        "{scraped}"
    );
    assert_eq!(
        value(
            &scraped,
            "otac_replay_attempts_total{workflow=\"onboarding\",step=\"set-password\"}"
        ),
        1.0,
        "{scraped}"
    );
    assert!(scraped.contains("otac_store_seconds"), "{scraped}");
    assert!(!scraped.contains(&to_password), "no token in metrics");
}
