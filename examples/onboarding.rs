//! Consumer onboarding on axum: invite → verify email → verify mobile → set password, chained with one-time
//! authorization codes.
//!
//! ```text
//! cargo run --example onboarding            # 127.0.0.1:3000, in-memory store, development key
//! OTAC_ADDR=127.0.0.1:8080 OTAC_SECRET=... cargo run --example onboarding
//! OTAC_REDIS_URL=redis://127.0.0.1:6379/ OTAC_SECRET=... cargo run --example onboarding   # Redis replay store
//! ```
//!
//! `GET /metrics` serves otac's Prometheus metrics.
//!
//! Instances with the same `OTAC_SECRET` and `OTAC_REDIS_URL` accept each other's codes, and each code once across
//! all of them.

use otac_examples::config::{Settings, onboarding_workflow};
use otac_examples::domain::Directory;
use otac_examples::onboarding;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), otac_examples::config::Fatal> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,otac=debug")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    let replay = settings.replay().await?;
    let workflow = onboarding_workflow(settings.keys()?, replay, settings.cors_origin.is_some())?;
    // Prometheus metrics of the codes issued, spent and refused, at GET /metrics.
    let mut app = onboarding::router(&workflow, Directory::default())
        .merge(otac_examples::metrics::prometheus_route()?);
    if let Some(origin) = &settings.cors_origin {
        app = app.layer(onboarding::cors(&workflow, origin)?);
    }
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    eprintln!(
        "onboarding (axum) listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
