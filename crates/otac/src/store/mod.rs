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

    /// A key for run-level records (revocation), in a namespace of its own.
    pub fn for_run(issuer: &str, workflow: &str, run: &str) -> Self {
        Self::new(issuer, workflow, &format!("\0run\0{run}"))
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
pub enum Outcome {
    /// The key was absent and is now recorded: this request is the one that uses the code.
    Inserted,
    /// The key was present (spent or reserved by another request).
    AlreadyPresent,
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
        assert_eq!(a.to_hex().len(), 64);
    }
}
