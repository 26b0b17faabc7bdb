//! An authenticated API (bearer tokens `alice-token` and `bob-token`) whose email-change steps are bound to the
//! authenticated principal, and an open device-pairing API bound to a `Device-Id` header.
//!
//! ```text
//! cargo run --example change-email          # 127.0.0.1:3001 (OTAC_ADDR or --addr to change)
//! ```

use otac_examples::change_email::{self, Accounts};
use otac_examples::config::{Settings, memory_replay};

#[tokio::main]
async fn main() -> Result<(), otac_examples::config::Fatal> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut settings = Settings::from_env()?;
    if std::env::var_os("OTAC_ADDR").is_none() && !std::env::args().any(|a| a.starts_with("--addr"))
    {
        // Beside the onboarding example's default port.
        settings.addr.set_port(3001);
    }
    let keys = settings.keys()?;
    let email = change_email::email_change_workflow(keys.clone(), memory_replay())?;
    let device = change_email::device_workflow(keys, memory_replay())?;
    let app = change_email::router(&email, &device, Accounts::default());
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    eprintln!(
        "change-email (axum) listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
