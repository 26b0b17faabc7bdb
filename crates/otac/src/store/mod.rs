//! Replay stores: where the one-time use of a code is recorded.
//!
//! A [`ReplayStore`] offers atomic insert-if-absent with an expiry: [`consume`](ReplayStore::consume) spends a code
//! in one step; [`reserve`](ReplayStore::reserve), [`commit`](ReplayStore::commit) and
//! [`release`](ReplayStore::release) implement consume-on-success with a short lease. Entries expire by themselves;
//! nothing on a request path deletes a spent entry.
//!
//! [`MemoryStore`] serves one process. For many processes use a shared store such as the one in `otac-redis`.

mod memory;

pub use memory::MemoryStore;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// The key of one code in a store: SHA-256 over issuer, workflow and `jti`, so that no other issuer, workflow or
/// tenant sharing the store can collide with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The key of code `jti` of `workflow` issued by `issuer`.
    pub fn new(issuer: &str, workflow: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"otac jti v1\0");
        for part in [issuer, workflow, jti] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Self(h.finalize().into())
    }

    /// The key of a run's revocation mark, in a namespace of its own.
    pub fn for_run(issuer: &str, workflow: &str, run: &str) -> Self {
        Self::new(issuer, workflow, &format!("\0run\0{run}"))
    }

    /// The key of the revocation mark of every run of a subject (`sub` is the code's binding hash).
    pub fn for_subject(issuer: &str, workflow: &str, sub: &str) -> Self {
        Self::new(issuer, workflow, &format!("\0sub\0{sub}"))
    }

    /// The key of the mark naming a run's live code.
    pub fn for_live_code(issuer: &str, workflow: &str, run: &str) -> Self {
        Self::new(issuer, workflow, &format!("\0live\0{run}"))
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the key bytes, for stores keyed by strings.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        out
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}…)", &self.to_hex()[..12])
    }
}

/// The answer of an insert-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The key was absent and is now recorded: this request is the one that uses the code.
    Inserted,
    /// The key was present (spent or reserved by another request).
    AlreadyPresent,
    /// A [`Guard::Revoked`] matched: the run (or every run of the subject) was revoked. Nothing was recorded.
    Revoked,
    /// A [`Guard::Live`] did not match: a newer code of the run replaced this one. Nothing was recorded.
    Superseded,
}

/// What a guarded use records when every guard passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Spend the key until `expires_at_ms` (as [`ReplayStore::consume`]).
    Consume {
        /// When the entry may be forgotten.
        expires_at_ms: u64,
    },
    /// Reserve the key (as [`ReplayStore::reserve`]).
    Reserve {
        /// The reservation token.
        token: u64,
        /// When the reservation lapses.
        lease_until_ms: u64,
    },
    /// Record nothing: check the guards, and that the key is absent (neither spent nor reserved). For steps that
    /// replace a code with a newer one instead of spending it.
    Nothing,
}

/// A condition on a mark (see [`ReplayStore::mark`]) checked together with a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Revoked when the mark at `key` is present with a value of at least `at` (a revocation time in seconds; `at`
    /// is when the run started).
    Revoked {
        /// The mark's key.
        key: StoreKey,
        /// The run's start, seconds since the epoch.
        at: u64,
    },
    /// Superseded unless the mark at `key` is present and equals `tag` (the live code of a run).
    Live {
        /// The mark's key.
        key: StoreKey,
        /// The tag of the code being used.
        tag: u64,
    },
}

impl Guard {
    /// The outcome this guard forces for a mark value (`None` = absent), or `None` when it passes.
    pub fn judge(&self, mark: Option<u64>) -> Option<Outcome> {
        match *self {
            Guard::Revoked { at, .. } => {
                mark.filter(|since| *since >= at).map(|_| Outcome::Revoked)
            }
            Guard::Live { tag, .. } => (mark != Some(tag)).then_some(Outcome::Superseded),
        }
    }

    /// The mark's key.
    pub fn key(&self) -> &StoreKey {
        match self {
            Guard::Revoked { key, .. } | Guard::Live { key, .. } => key,
        }
    }
}

/// A store of spent (and reserved) codes.
///
/// Times are milliseconds since the Unix epoch. Implementations must make `consume` and `reserve` atomic: of any
/// number of concurrent calls with one key, exactly one sees [`Outcome::Inserted`]. Any failure or timeout is an
/// `Err`, and requests then fail closed.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` as spent until `expires_at_ms`, if it is absent.
    fn consume(&self, key: &StoreKey, expires_at_ms: u64) -> StoreFuture<Outcome>;

    /// Reserves `key` under `token` until `lease_until_ms`, if it is absent.
    fn reserve(&self, key: &StoreKey, token: u64, lease_until_ms: u64) -> StoreFuture<Outcome>;

    /// Turns a reservation into a spent entry that lives until `expires_at_ms` (also when the lease has lapsed).
    fn commit(&self, key: &StoreKey, token: u64, expires_at_ms: u64) -> StoreFuture<()>;

    /// Removes the reservation made under `token`; a spent entry, or another request's reservation, stays.
    fn release(&self, key: &StoreKey, token: u64) -> StoreFuture<()>;

    /// Sets the mark at `key` to `value` until `until_ms`, replacing any earlier value: run revocations and the
    /// live code of a run. Stores that do not support marks keep this default, which fails (so workflows that
    /// need marks fail closed).
    fn mark(&self, key: &StoreKey, value: u64, until_ms: u64) -> StoreFuture<()> {
        let _ = (key, value, until_ms);
        StoreFuture::ready(Err(StoreError::new("this store does not support marks")))
    }

    /// Checks `guards` and, if every one passes, records `spend`, ideally in one round trip. The default runs
    /// without guards only; stores that support marks override it.
    fn use_guarded(&self, key: &StoreKey, spend: Spend, guards: &[Guard]) -> StoreFuture<Outcome> {
        if !guards.is_empty() {
            return StoreFuture::ready(Err(StoreError::new("this store does not support marks")));
        }
        spend_unguarded(self, key, spend)
    }
}

/// Records `spend` with the store's plain calls (no guards): for [`ReplayStore::use_guarded`] implementations once
/// their guards passed.
pub fn spend_unguarded<S: ReplayStore + ?Sized>(
    store: &S,
    key: &StoreKey,
    spend: Spend,
) -> StoreFuture<Outcome> {
    match spend {
        Spend::Consume { expires_at_ms } => store.consume(key, expires_at_ms),
        Spend::Reserve {
            token,
            lease_until_ms,
        } => store.reserve(key, token, lease_until_ms),
        // Checking for absence needs more than insert-if-absent: only stores with marks offer it.
        Spend::Nothing => StoreFuture::ready(Err(StoreError::new(
            "a check-only use needs a store that supports marks",
        ))),
    }
}

type BoxedStoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// The future of a store call: an immediate answer (no allocation, as from [`MemoryStore`]) or a boxed future of a
/// networked store.
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T>(StoreFutureInner<T>);

enum StoreFutureInner<T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(BoxedStoreFuture<T>),
}

impl<T> StoreFuture<T> {
    /// An answer that is already known.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self(StoreFutureInner::Ready(Some(result)))
    }

    /// An answer still to come.
    pub fn boxed<F>(future: F) -> Self
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        Self(StoreFutureInner::Boxed(Box::pin(future)))
    }
}

impl<T> StoreFuture<T> {
    /// Whether the answer is already known (polling it will not wait).
    pub fn is_ready(&self) -> bool {
        matches!(self.0, StoreFutureInner::Ready(Some(_)))
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            StoreFutureInner::Ready(_) => "StoreFuture::Ready",
            StoreFutureInner::Boxed(_) => "StoreFuture::Boxed",
        })
    }
}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are `Unpin` (an `Option` and a `Pin<Box<_>>`).
        match &mut self.get_mut().0 {
            StoreFutureInner::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or(Err(StoreError::new("store future polled after completion"))),
            ),
            StoreFutureInner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> Unpin for StoreFuture<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        let a = StoreKey::new("iss", "wf", "j1");
        assert_eq!(a, StoreKey::new("iss", "wf", "j1"));
        assert_ne!(a, StoreKey::new("iss2", "wf", "j1"));
        assert_ne!(a, StoreKey::new("iss", "wf2", "j1"));
        // Length-prefixed parts: moving a boundary changes the key.
        assert_ne!(StoreKey::new("ab", "c", "j"), StoreKey::new("a", "bc", "j"));
        assert_ne!(a, StoreKey::for_run("iss", "wf", "j1"));
        assert_ne!(
            StoreKey::for_run("iss", "wf", "r"),
            StoreKey::for_subject("iss", "wf", "r")
        );
        assert_ne!(
            StoreKey::for_run("iss", "wf", "r"),
            StoreKey::for_live_code("iss", "wf", "r")
        );
        assert_eq!(a.to_hex().len(), 64);
    }
}
