//! A Redis [`ReplayStore`] for otac: one-time use of codes across many processes.
//!
//! [`RedisStore`] keeps one Redis key per code, named `prefix + hex(StoreKey)` (the [`StoreKey`] is already a
//! SHA-256 over issuer, workflow and `jti`, so neither tenants nor workflows can collide). Every entry carries an
//! absolute expiry (`PXAT`), so Redis forgets it by itself; nothing on a request path deletes a spent entry.
//!
//! | call | Redis |
//! |---|---|
//! | [`consume`](ReplayStore::consume) | `SET key 1 NX PXAT exp`: one atomic command, `OK` wins, nil is a replay |
//! | [`reserve`](ReplayStore::reserve) | `SET key r:<token> NX PXAT lease` |
//! | [`commit`](ReplayStore::commit) | a script: the key becomes `1` until the later of `exp` and its current expiry |
//! | [`release`](ReplayStore::release) | a script: `DEL key` only if it still holds `r:<token>` |
//!
//! Each call is bounded by a timeout (250 ms by default). A Redis error, a lost connection or a timeout is an
//! `Err`, so the middleware answers `503 otac_store_unavailable` and the handler does not run (fail closed). The
//! connection is a [`ConnectionManager`]: after Redis comes back, the same store serves again without any action.
//!
//! ```no_run
//! use std::time::Duration;
//! use otac::{Key, KeySet, Replay, Step, Workflow};
//! use otac_redis::RedisStore;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/")
//!     .await?
//!     .prefix("myapp:otac:")
//!     .timeout(Duration::from_millis(200));
//! let workflow = Workflow::builder("onboarding")
//!     .issuer("accounts.example.com")
//!     .keys(KeySet::new(Key::hs256(b"a secret of at least thirty-two bytes!")?))
//!     .replay(Replay::store(store))
//!     .step(Step::new("verify-email").then("set-password"))
//!     .step(Step::new("set-password"))
//!     .build()?;
//! # let _ = workflow;
//! # Ok(())
//! # }
//! ```
//!
//! The store needs a Tokio runtime with its time driver enabled (as `#[tokio::main]` sets up). Redis 6.2 or newer
//! is required (`PXAT`).
//!
//! A call that times out may still have been carried out by Redis: a code is then spent (or reserved until its
//! lease ends) although the request was refused, which errs on the safe side.

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use otac::ReplayStore;
use otac::StoreError;
use otac::store::{Guard, Outcome, Spend, StoreFuture, StoreKey};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, RedisResult, Script, Value};

/// The `redis` crate this store is built on, for building a [`ConnectionManager`] of the same version.
pub use redis;

#[doc(hidden)]
pub mod testing;

/// The default bound on each store call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "otac:";

/// The value of a spent entry.
const SPENT: &str = "1";

/// Spent until the later of `ARGV[1]` and the entry's current expiry, whatever the entry was (absent, a reservation
/// of any token, or already spent), so a commit never shortens the life of a spent code.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -1 then
  redis.call('SET', KEYS[1], '1', 'KEEPTTL')
  return 0
end
if pttl >= 0 then
  local t = redis.call('TIME')
  local current = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + pttl
  if current > tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '1', 'KEEPTTL')
    return 0
  end
end
redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
return 1
",
    )
});

/// Deletes the entry only while it is the reservation `ARGV[1]`.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Checks the guards on their marks (`KEYS[2..]`) and, when all pass, records the use (`KEYS[1]`), in one atomic
/// call. `ARGV`: spend mode (`c` consume, `r` reserve, `n` nothing but check that the key is absent), value, PXAT, then a rule and an operand per
/// guard (`rev` since-at-least, compared as numbers; `live` tag, compared as strings so that 64-bit tags stay
/// exact). Returns 1 inserted, 0 already present, 2 revoked, 3 superseded.
static USE_GUARDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local guards = (#ARGV - 3) / 2
for i = 1, guards do
  local rule = ARGV[2 + 2 * i]
  local operand = ARGV[3 + 2 * i]
  local mark = redis.call('GET', KEYS[i + 1])
  if rule == 'rev' then
    if mark and tonumber(mark) >= tonumber(operand) then return 2 end
  elseif mark ~= operand then
    return 3
  end
end
if ARGV[1] == 'n' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  return 1
end
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PXAT', ARGV[3]) then return 1 end
return 0
",
    )
});

/// A [`ReplayStore`] in Redis, shared by every process that uses the same Redis and prefix.
///
/// Cheap to clone: clones share one auto-reconnecting connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    // The connection is left out: its settings may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `info` (such as `redis://:password@host:6379/0` or `rediss://…` where the `redis`
    /// crate is built with TLS) and waits for the first connection.
    ///
    /// Each connection attempt is bounded to one second, and a lost connection is re-established in the
    /// background. Use [`RedisStore::new`] to configure the connection yourself.
    pub async fn connect(info: impl IntoConnectionInfo) -> RedisResult<Self> {
        let client = Client::open(info)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // Each store call has its own timeout; see `RedisStore::timeout`.
            .set_response_timeout(None)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self::new(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    /// A store on an existing connection manager, with the default prefix and timeout.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Bounds each store call (default 250 ms); past it the call fails and the request is refused with 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Prepends `prefix` to every key (default `otac:`), to keep otac's keys apart from other data in the same
    /// Redis, or one deployment's from another's.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The Redis key that holds the entry of `key`.
    pub fn redis_key(&self, key: &StoreKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 64);
        out.push_str(&self.prefix);
        out.push_str(&key.to_hex());
        out
    }

    /// `SET key value NX PXAT at`: `Inserted` when set, `AlreadyPresent` when the key exists.
    fn set_nx(
        &self,
        key: &StoreKey,
        value: String,
        at_ms: u64,
        op: &'static str,
    ) -> StoreFuture<Outcome> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(value)
            .arg("NX")
            .arg("PXAT")
            .arg(redis_time(at_ms));
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            match bounded(op, timeout, cmd.query_async::<Value>(&mut conn)).await? {
                Value::Okay => Ok(Outcome::Inserted),
                Value::Nil => Ok(Outcome::AlreadyPresent),
                other => {
                    tracing::debug!(op, reply = ?other, "unexpected redis reply");
                    Err(StoreError::new("unexpected redis reply"))
                }
            }
        })
    }
}

fn reservation(token: u64) -> String {
    format!("r:{token}")
}

/// Redis takes a `PXAT` from 1 to `i64::MAX`; an instant already past makes an entry that is gone at once.
fn redis_time(at_ms: u64) -> u64 {
    at_ms.clamp(1, i64::MAX as u64)
}

/// Runs one Redis call within `timeout`, turning any failure into a [`StoreError`].
async fn bounded<T>(
    op: &'static str,
    timeout: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            tracing::debug!(op, error = %err, "redis call failed");
            Err(StoreError::new("redis call failed"))
        }
        Err(_) => {
            tracing::debug!(op, ?timeout, "redis call timed out");
            Err(StoreError::new("redis call timed out"))
        }
    }
}

impl ReplayStore for RedisStore {
    fn consume(&self, key: &StoreKey, expires_at_ms: u64) -> StoreFuture<Outcome> {
        self.set_nx(key, SPENT.to_owned(), expires_at_ms, "consume")
    }

    fn reserve(&self, key: &StoreKey, token: u64, lease_until_ms: u64) -> StoreFuture<Outcome> {
        self.set_nx(key, reservation(token), lease_until_ms, "reserve")
    }

    fn commit(&self, key: &StoreKey, _token: u64, expires_at_ms: u64) -> StoreFuture<()> {
        let mut conn = self.conn.clone();
        let key = self.redis_key(key);
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            let mut call = COMMIT.key(key);
            call.arg(redis_time(expires_at_ms));
            bounded("commit", timeout, call.invoke_async::<i64>(&mut conn)).await?;
            Ok(())
        })
    }

    fn mark(&self, key: &StoreKey, value: u64, until_ms: u64) -> StoreFuture<()> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(value.to_string())
            .arg("PXAT")
            .arg(redis_time(until_ms));
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            bounded("mark", timeout, cmd.query_async::<Value>(&mut conn)).await?;
            Ok(())
        })
    }

    fn use_guarded(&self, key: &StoreKey, spend: Spend, guards: &[Guard]) -> StoreFuture<Outcome> {
        let mut call = USE_GUARDED.key(self.redis_key(key));
        for guard in guards {
            call.key(self.redis_key(guard.key()));
        }
        match spend {
            Spend::Consume { expires_at_ms } => {
                call.arg("c").arg(SPENT).arg(redis_time(expires_at_ms))
            }
            Spend::Reserve {
                token,
                lease_until_ms,
            } => call
                .arg("r")
                .arg(reservation(token))
                .arg(redis_time(lease_until_ms)),
            Spend::Nothing => call.arg("n").arg("").arg(1),
        };
        for guard in guards {
            match guard {
                Guard::Revoked { at, .. } => call.arg("rev").arg(at.to_string()),
                Guard::Live { tag, .. } => call.arg("live").arg(tag.to_string()),
            };
        }
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            match bounded("use_guarded", timeout, call.invoke_async::<i64>(&mut conn)).await? {
                1 => Ok(Outcome::Inserted),
                0 => Ok(Outcome::AlreadyPresent),
                2 => Ok(Outcome::Revoked),
                3 => Ok(Outcome::Superseded),
                _ => Err(StoreError::new("unexpected redis reply")),
            }
        })
    }

    fn release(&self, key: &StoreKey, token: u64) -> StoreFuture<()> {
        let mut conn = self.conn.clone();
        let key = self.redis_key(key);
        let timeout = self.timeout;
        StoreFuture::boxed(async move {
            let mut call = RELEASE.key(key);
            call.arg(reservation(token));
            bounded("release", timeout, call.invoke_async::<i64>(&mut conn)).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_clamped_to_what_redis_accepts() {
        assert_eq!(redis_time(0), 1);
        assert_eq!(redis_time(1_700_000_000_000), 1_700_000_000_000);
        assert_eq!(redis_time(u64::MAX), i64::MAX as u64);
    }

    #[test]
    fn reservations_never_look_spent() {
        assert_ne!(reservation(1), SPENT);
        assert_eq!(reservation(42), "r:42");
    }
}
