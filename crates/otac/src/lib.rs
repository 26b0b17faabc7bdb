#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binding;
pub mod claims;
mod engine;
mod error;
mod keys;
pub mod layer;
mod observe;
#[cfg(feature = "openapi")]
pub mod openapi;
mod problem;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
mod verified;
mod workflow;

pub use binding::{Binding, Principal};
pub use claims::{Audience, Claims};
pub use engine::{AbortRun, IssueContext, Issuer, Ticket, Verifier};
pub use error::{ConfigError, OtacError, OtacErrorKind, StoreError};
pub use jsonwebtoken::Algorithm;
pub use keys::{Key, KeySet};
pub use layer::{IssueOtacLayer, RequireOtacLayer};
pub use problem::{ErrorResponder, ProblemJson, problem_response};
pub use store::{MemoryStore, ReplayStore};
pub use verified::{OtacClaims, VerifiedOtac};
pub use workflow::{
    Consume, DEFAULT_HEADER, Replay, StateFingerprint, Step, Workflow, WorkflowBuilder,
};

/// The `typ` header of every code.
pub const TOKEN_TYPE: &str = "otac+jwt";

/// Risky helpers, for diagnostics only.
pub mod dangerous {
    /// Decodes a code's claims **without verifying anything** (no signature, expiry or audience check). Never base
    /// a decision on the result.
    pub fn insecure_decode_claims(code: &str) -> Option<crate::Claims> {
        crate::token::decode_unverified(code)
    }
}
