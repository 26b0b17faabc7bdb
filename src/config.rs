//! Configuration of the onboarding examples, from the environment and the command line, with embedded defaults.

use std::net::SocketAddr;
use std::time::Duration;

use otac::{Binding, ConfigError, Consume, Key, KeySet, MemoryStore, Replay, Step, Workflow};

/// The issuer name of the example service. Fixed, so instances sharing `OTAC_SECRET` issue interchangeable codes.
pub const ISSUER: &str = "otac-onboarding-example";

/// Settings of an onboarding example.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen (`--addr`, `OTAC_ADDR`, default `127.0.0.1:3000`).
    pub addr: SocketAddr,
    /// The HS256 secret (`OTAC_SECRET`); `None` generates a development key.
    pub secret: Option<String>,
    /// A Redis URL for the replay store (`OTAC_REDIS_URL`); `None` keeps one-time state in memory.
    pub redis_url: Option<String>,
    /// A browser origin allowed to drive the workflow (`OTAC_CORS_ORIGIN`).
    pub cors_origin: Option<String>,
}

impl Settings {
    /// Reads the environment and the arguments (`--addr HOST:PORT`).
    pub fn from_env() -> Result<Self, String> {
        let mut addr = std::env::var("OTAC_ADDR").ok();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--addr" {
                addr = Some(args.next().ok_or("--addr needs HOST:PORT")?);
            } else if let Some(value) = arg.strip_prefix("--addr=") {
                addr = Some(value.to_owned());
            } else {
                return Err(format!("unknown argument `{arg}` (only --addr HOST:PORT)"));
            }
        }
        let addr = addr
            .as_deref()
            .unwrap_or("127.0.0.1:3000")
            .parse()
            .map_err(|_| "OTAC_ADDR / --addr must be HOST:PORT, e.g. 127.0.0.1:3000".to_owned())?;
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            addr,
            secret: non_empty("OTAC_SECRET"),
            redis_url: non_empty("OTAC_REDIS_URL"),
            cors_origin: non_empty("OTAC_CORS_ORIGIN"),
        })
    }

    /// The key set: from `OTAC_SECRET`, or a fresh development key with a warning on stderr.
    pub fn keys(&self) -> Result<KeySet, ConfigError> {
        match &self.secret {
            Some(secret) => Ok(KeySet::new(Key::hs256(secret.as_bytes())?)),
            None => {
                eprintln!(
                    "warning: OTAC_SECRET is not set; using a generated development key. Codes will not verify \
                     on other instances or after a restart."
                );
                Ok(KeySet::new(Key::generate_hs256()?))
            }
        }
    }
}

/// The onboarding workflow: `verify-email` → `verify-mobile` → `set-password`, bound to the user id the
/// `verify-email` handler verified. The `verify-mobile` code is spent only on success, so a mistyped SMS code can be
/// retried with the same code.
pub fn onboarding_workflow(
    keys: KeySet,
    replay: Replay,
    expose_header: bool,
) -> Result<Workflow, ConfigError> {
    Workflow::builder("onboarding")
        .issuer(ISSUER)
        .keys(keys)
        .binding(Binding::subject())
        .replay(replay)
        .code_lifetime(Duration::from_secs(300))
        .run_lifetime(Duration::from_secs(1800))
        .expose_header(expose_header)
        .step(Step::new("verify-email").then("verify-mobile"))
        .step(
            Step::new("verify-mobile")
                .then("set-password")
                .consume(Consume::OnSuccess),
        )
        .step(Step::new("set-password"))
        .build()
}

/// The in-memory replay store of the examples.
pub fn memory_replay() -> Replay {
    Replay::store(MemoryStore::default())
}
