//! Errors: rejections of a request ([`OtacError`]), configuration mistakes ([`ConfigError`]) and replay-store
//! failures ([`StoreError`]).

use http::StatusCode;

/// Why a code was rejected. Every kind has a stable machine-readable [`code`](OtacErrorKind::code) and an HTTP
/// [`status`](OtacErrorKind::status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OtacErrorKind {
    /// No code on a step that needs one.
    Required,
    /// Not a compact JWS, bad base64, bad JSON, duplicate header or member, oversized.
    Malformed,
    /// Bad signature, unknown `kid`, disallowed algorithm or header, wrong issuer, workflow or `typ`.
    Invalid,
    /// Past `exp` (plus leeway), before `nbf`, or the workflow run's total lifetime is over.
    Expired,
    /// A valid code whose audience does not name this step.
    WrongStep,
    /// A valid code presented by another caller than the one it was issued to.
    BindingMismatch,
    /// A code that was already used.
    Replayed,
    /// The workflow run this code belongs to was revoked or aborted.
    RunRevoked,
    /// The replay store failed or timed out; the request is refused (fail closed).
    StoreUnavailable,
    /// The code could not be issued (missing caller binding, signing failure, store refusal).
    IssueFailed,
}

impl OtacErrorKind {
    /// The stable machine-readable error code, e.g. `otac_expired`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Required => "otac_required",
            Self::Malformed => "otac_malformed",
            Self::Invalid => "otac_invalid",
            Self::Expired => "otac_expired",
            Self::WrongStep => "otac_wrong_step",
            Self::BindingMismatch => "otac_binding_mismatch",
            Self::Replayed => "otac_replayed",
            Self::RunRevoked => "otac_run_revoked",
            Self::StoreUnavailable => "otac_store_unavailable",
            Self::IssueFailed => "otac_issue_failed",
        }
    }

    /// The HTTP status a rejection of this kind answers with.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Required
            | Self::Malformed
            | Self::Invalid
            | Self::Expired
            | Self::Replayed
            | Self::RunRevoked => StatusCode::UNAUTHORIZED,
            Self::WrongStep | Self::BindingMismatch => StatusCode::FORBIDDEN,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::IssueFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, stable, human-readable title.
    pub const fn title(self) -> &'static str {
        match self {
            Self::Required => "One-time authorization code required",
            Self::Malformed => "Malformed one-time authorization code",
            Self::Invalid => "Invalid one-time authorization code",
            Self::Expired => "One-time authorization code expired",
            Self::WrongStep => "One-time authorization code is not for this step",
            Self::BindingMismatch => "One-time authorization code was issued to another caller",
            Self::Replayed => "One-time authorization code already used",
            Self::RunRevoked => "Workflow run revoked",
            Self::StoreUnavailable => "One-time use cannot be checked right now",
            Self::IssueFailed => "One-time authorization code could not be issued",
        }
    }
}

/// A rejected (or unissuable) one-time authorization code.
///
/// Carries a [`kind`](Self::kind) with a stable [`code`](Self::code) and [`status`](Self::status), and a short
/// static reason for logs. It never holds the token or any secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", kind.code())]
pub struct OtacError {
    kind: OtacErrorKind,
    reason: &'static str,
}

impl OtacError {
    /// A new error of `kind` with a short static `reason` (shown in logs and in the problem's `detail`).
    pub const fn new(kind: OtacErrorKind, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// What went wrong.
    pub const fn kind(&self) -> OtacErrorKind {
        self.kind
    }

    /// The stable machine-readable error code, e.g. `otac_replayed`.
    pub const fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The HTTP status to answer with.
    pub const fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// A short static explanation, safe to show to clients and to log.
    pub const fn reason(&self) -> &'static str {
        self.reason
    }

    pub(crate) const fn required() -> Self {
        Self::new(
            OtacErrorKind::Required,
            "this step needs a one-time authorization code",
        )
    }
    pub(crate) const fn malformed(reason: &'static str) -> Self {
        Self::new(OtacErrorKind::Malformed, reason)
    }
    pub(crate) const fn invalid(reason: &'static str) -> Self {
        Self::new(OtacErrorKind::Invalid, reason)
    }
    pub(crate) const fn expired(reason: &'static str) -> Self {
        Self::new(OtacErrorKind::Expired, reason)
    }
    pub(crate) const fn store(reason: &'static str) -> Self {
        Self::new(OtacErrorKind::StoreUnavailable, reason)
    }
    pub(crate) const fn issue(reason: &'static str) -> Self {
        Self::new(OtacErrorKind::IssueFailed, reason)
    }
}

impl From<StoreError> for OtacError {
    fn from(err: StoreError) -> Self {
        Self::store(err.reason())
    }
}

/// A mistake in configuration, found when a [`Workflow`](crate::Workflow), [`KeySet`](crate::KeySet) or layer is
/// built, never at request time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A step name that the workflow does not define.
    #[error("unknown step `{0}`")]
    UnknownStep(String),
    /// A step defined twice.
    #[error("step `{0}` is defined twice")]
    DuplicateStep(String),
    /// A step name that is empty or not printable ASCII.
    #[error("invalid step name `{0}`")]
    InvalidStepName(String),
    /// Issuing needs a step with at least one next step.
    #[error("step `{0}` has no next step to issue a code for")]
    NoNextStep(String),
    /// The workflow did not say how codes are bound to their caller (use `Binding::none()` to opt out explicitly).
    #[error("no caller binding chosen: set one, or `Binding::none()` explicitly")]
    BindingNotChosen,
    /// The workflow did not say how one-time use is enforced.
    #[error("no replay mode chosen: set `Replay::store(..)` or `Replay::stateless()` explicitly")]
    ReplayNotChosen,
    /// The workflow has no keys.
    #[error("no signing key configured")]
    NoKeys,
    /// A secret that is too short for its algorithm.
    #[error("secret too short: {alg} needs at least {min} bytes")]
    WeakSecret {
        /// The algorithm the secret was meant for.
        alg: &'static str,
        /// The minimum length in bytes.
        min: usize,
    },
    /// Two keys with one `kid`.
    #[error("duplicate key id `{0}`")]
    DuplicateKid(String),
    /// A key that cannot be used (bad PEM, wrong algorithm family, not usable for signing).
    #[error("unusable key: {0}")]
    BadKey(&'static str),
    /// A JWKS document that cannot be used as a whole (not JSON, no `keys` array, no keys).
    #[error("unusable JWKS: {0}")]
    BadJwks(&'static str),
    /// One key of a JWKS document that cannot be used.
    #[error("unusable JWKS: key {index}: {reason}")]
    BadJwk {
        /// The position of the key in the `keys` array, from 0.
        index: usize,
        /// Why the key was refused.
        reason: &'static str,
    },
    /// Issuing needs a key set whose current key can sign (not a verify-only set, not a public key).
    #[error("the key set has no signing key: a verify-only set cannot issue codes")]
    NoSigningKey,
    /// A workflow with a caller binding or state-bound steps needs a binding key, which asymmetric and verify-only
    /// key sets do not have by themselves.
    #[error(
        "caller bindings need a shared binding secret: the key set has none (asymmetric or verify-only keys); set \
         `KeySet::with_binding_secret(..)` on every service of the workflow, or use `Binding::none()`"
    )]
    BindingSecretRequired,
    /// A header name or value that is not valid HTTP.
    #[error("invalid header name or value: {0}")]
    InvalidHeader(String),
    /// A lifetime, lease or size that makes no sense (zero, or a code outliving its run).
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
}

/// A replay store failed to answer. Requests fail closed with
/// [`otac_store_unavailable`](OtacErrorKind::StoreUnavailable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay store unavailable: {reason}")]
pub struct StoreError {
    reason: &'static str,
}

impl StoreError {
    /// A store failure with a short static reason.
    pub const fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    /// The short static reason.
    pub const fn reason(&self) -> &'static str {
        self.reason
    }
}
