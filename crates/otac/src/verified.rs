//! What handlers see and say: the verified code of a request ([`VerifiedOtac`]) and the claims a handler attaches
//! to the code its response will carry ([`OtacClaims`]).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::binding;
use crate::claims::Claims;

/// A code that passed every check of its step (signature, expiry, audience, binding, one-time use).
///
/// The require layer puts it into the request extensions (and into the response extensions, for an issue layer
/// further out); the framework adapters offer it as an extractor.
#[derive(Clone, Debug)]
pub struct VerifiedOtac {
    claims: Arc<Claims>,
    binding_key: Arc<[u8; 32]>,
    step: Arc<str>,
}

impl VerifiedOtac {
    pub(crate) fn new(claims: Claims, binding_key: [u8; 32], step: &str) -> Self {
        Self {
            claims: Arc::new(claims),
            binding_key: Arc::new(binding_key),
            step: step.into(),
        }
    }

    /// All claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The step this code was verified for.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The id of the workflow run, the same along the whole chain.
    pub fn run_id(&self) -> &str {
        &self.claims.run
    }

    /// The workflow name.
    pub fn workflow(&self) -> &str {
        &self.claims.wf
    }

    /// The step whose success issued this code.
    pub fn issued_by(&self) -> &str {
        &self.claims.stp
    }

    /// The code's unique id.
    pub fn jti(&self) -> &str {
        &self.claims.jti
    }

    /// Expiry, seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.claims.exp
    }

    /// One custom claim, deserialised; `None` when absent or of another shape.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.claims
            .ctx
            .get(name)
            .and_then(|v| T::deserialize(v).ok())
    }

    /// All custom claims as one typed value.
    pub fn custom<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.claims.ctx.clone()))
    }

    /// Whether the code was issued for this server-state `fingerprint` (constant-time). `false` for codes that are
    /// not state-bound.
    pub fn state_is(&self, fingerprint: &[u8]) -> bool {
        let Some(sfp) = &self.claims.sfp else {
            return false;
        };
        let expected = binding::state_hash(&self.binding_key, &self.claims.wf, fingerprint);
        binding::same_subject(sfp, &expected)
    }

    /// Whether the code is bound to `subject` (constant-time). For [`Binding::subject`](crate::Binding::subject).
    pub fn subject_is(&self, subject: &str) -> bool {
        let Some(sub) = &self.claims.sub else {
            return false;
        };
        let expected =
            binding::subject_hash(&self.binding_key, &self.claims.wf, subject.as_bytes());
        binding::same_subject(sub, &expected)
    }
}

/// Claims a handler attaches to the code that will be issued for its response: the subject the code is bound to
/// (with [`Binding::subject`](crate::Binding::subject)) and custom claims the next step's handler can read.
///
/// Put it into the response extensions; the framework adapters make that a one-liner.
#[derive(Clone, Debug, Default)]
pub struct OtacClaims {
    pub(crate) subject: Option<String>,
    pub(crate) ctx: Map<String, Value>,
    pub(crate) state: Option<Vec<u8>>,
}

impl OtacClaims {
    /// No claims yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the code to `subject` (hashed before it goes into the code).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Binds the code to a fingerprint of server state that the next step changes (e.g. the user's current
    /// password hash, or a per-user version counter): once that state changes, the code is dead, with no replay
    /// store. The next step checks it with [`Step::state_bound`](crate::Step::state_bound) (before its handler) or
    /// [`VerifiedOtac::state_is`]. Only a keyed hash of it goes into the code.
    pub fn state(mut self, fingerprint: impl AsRef<[u8]>) -> Self {
        self.state = Some(fingerprint.as_ref().to_vec());
        self
    }

    /// Adds one custom claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.ctx.insert(name.into(), value.into());
        self
    }

    /// Adds every field of a serialisable struct (or map) as custom claims.
    pub fn claims<T: Serialize>(mut self, value: &T) -> Result<Self, serde_json::Error> {
        match serde_json::to_value(value)? {
            Value::Object(map) => {
                self.ctx.extend(map);
                Ok(self)
            }
            _ => Err(serde::ser::Error::custom(
                "custom claims must serialise to a JSON object",
            )),
        }
    }
}
