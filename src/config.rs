//! Configuration of the onboarding examples, from the environment and the command line, with embedded defaults.

use std::net::SocketAddr;
use std::time::Duration;

use otac::{Binding, ConfigError, Consume, Key, KeySet, MemoryStore, Replay, Step, Workflow};
use otac_redis::RedisStore;

/// The issuer name of the example service. Fixed, so instances sharing `OTAC_SECRET` issue interchangeable codes.
pub const ISSUER: &str = "otac-onboarding-example";

/// What `--help` prints.
pub const USAGE: &str = "\
usage: onboarding [--addr HOST:PORT]

environment:
  OTAC_ADDR         listen address (default 127.0.0.1:3000; --addr wins)
  OTAC_SECRET       HS256 secret, at least 32 bytes (default: a generated development key)
  OTAC_REDIS_URL    Redis replay store shared by instances (default: in memory)
  OTAC_CORS_ORIGIN  a browser origin allowed to drive the workflow
  RUST_LOG          log filter (default info,otac=debug)";

/// An error that `main` prints as its message rather than its `Debug` form.
pub struct Fatal(Box<dyn std::error::Error>);

impl<E: Into<Box<dyn std::error::Error>>> From<E> for Fatal {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl std::fmt::Debug for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

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
            } else if arg == "--help" || arg == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
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

    /// The replay store: Redis at `OTAC_REDIS_URL` when it is set (waiting for the first connection, so a wrong URL
    /// or a server that is down stops the example at start), the in-memory store otherwise. Says on stderr which one
    /// is used, never with the URL's password.
    pub async fn replay(&self) -> Result<Replay, String> {
        match &self.redis_url {
            Some(url) => {
                let shown = redacted_url(url);
                let store = RedisStore::connect(url.as_str())
                    .await
                    .map_err(|err| format!("OTAC_REDIS_URL: cannot connect to {shown}: {err}"))?;
                eprintln!(
                    "replay store: redis at {shown}; instances sharing this Redis and OTAC_SECRET share one-time use"
                );
                Ok(Replay::store(store))
            }
            None => {
                eprintln!(
                    "replay store: in memory (this process only; set OTAC_REDIS_URL to share it between instances)"
                );
                Ok(memory_replay())
            }
        }
    }
}

/// `url` for messages: everything up to the last `@` (user name and password, whatever characters they hold) and
/// the query (which may carry `pass=`) replaced with `***`. Errs on hiding too much.
fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "a Redis URL that does not parse".to_owned();
    };
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let rest = match rest.find(['?', '#']) {
        Some(q) => format!("{}?***", &rest[..q]),
        None => rest.to_owned(),
    };
    format!("{scheme}://{credentials}{rest}")
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
        // verify-mobile aborts the run after too many wrong SMS codes.
        .revocation(true)
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

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn redis_urls_are_shown_without_credentials() {
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redacted_url("redis://:s3cret@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redacted_url("redis://app:s3cret@db"), "redis://***@db");
        assert_eq!(
            redacted_url("rediss://u:p@w@db:6380/1"),
            "rediss://***@db:6380/1"
        );
        assert_eq!(
            redacted_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?***"
        );
        assert_eq!(
            redacted_url("redis://:pa/ss?wo#rd@db/2"),
            "redis://***@db/2"
        );
        assert_eq!(redacted_url("s3cret"), "a Redis URL that does not parse");
    }
}
