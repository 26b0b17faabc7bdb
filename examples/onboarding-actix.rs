//! Consumer onboarding on actix-web: the same HTTP contract as `examples/onboarding.rs` (axum), on the same
//! workflow configuration: invite → verify email → verify mobile → set password.
//!
//! ```text
//! cargo run --example onboarding-actix      # 127.0.0.1:3000, in-memory store, development key
//! OTAC_ADDR=127.0.0.1:8080 OTAC_SECRET=... cargo run --example onboarding-actix
//! OTAC_CORS_ORIGIN=http://127.0.0.1:8080 cargo run --example onboarding-actix -- --addr 127.0.0.1:3001
//! ```
//!
//! `GET /metrics` serves otac's Prometheus metrics. Instances of either framework with the same `OTAC_SECRET` (and
//! `OTAC_REDIS_URL`) accept each other's codes.

use otac_examples::config::{Settings, onboarding_workflow};
use otac_examples::domain::Directory;
use otac_examples::onboarding_actix;
use tracing_subscriber::EnvFilter;

fn main() -> Result<(), otac_examples::config::Fatal> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,otac=debug")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    actix_rt::System::new().block_on(async move {
        let replay = settings.replay().await?;
        let workflow =
            onboarding_workflow(settings.keys()?, replay, settings.cors_origin.is_some())?;
        let listener = std::net::TcpListener::bind(settings.addr)?;
        eprintln!(
            "onboarding (actix-web) listening on http://{}",
            listener.local_addr()?
        );
        // Stops gracefully on Ctrl-C.
        onboarding_actix::server(
            &workflow,
            Directory::default(),
            settings.cors_origin.as_deref(),
            listener,
        )?
        .await?;
        Ok(())
    })
}
