//! Helpers for your own tests (cargo feature `testing`): genuine codes for any step of your workflow, and a clock
//! for the verifying side.
//!
//! [`mint`] goes through the real [`Issuer`] of a step that leads to the one you name, with your workflow's keys,
//! binding and lifetimes, so the code is exactly what your service would issue; no test-only path exists in the
//! verifier. Enable the feature for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! otac = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```
//! use otac::testing::{FakeClock, TestCode, mint};
//! use otac::{Binding, Key, KeySet, Replay, Step, Verifier, Workflow};
//! use std::time::Duration;
//!
//! let workflow = Workflow::builder("onboarding")
//!     .keys(KeySet::new(Key::hs256(b"a secret of at least thirty-two bytes!")?))
//!     .binding(Binding::subject())
//!     .replay(Replay::stateless())
//!     .step(Step::new("verify-email").then("verify-mobile"))
//!     .step(Step::new("verify-mobile").then("set-password"))
//!     .step(Step::new("set-password"))
//!     .build()?;
//!
//! // A code as `verify-email` would issue it, for `verify-mobile`, bound to user u1.
//! let code = mint(&workflow, "verify-mobile", TestCode::new().subject("u1").claim("user_id", "u1"));
//! let request = http::Request::builder().header("one-time-authorization-code", &code).body(())?;
//! let verifier = Verifier::new(&workflow, "verify-mobile")?;
//! assert!(verifier.verify(&request.into_parts().0).is_ok());
//!
//! // Six minutes later it has expired.
//! let clock = FakeClock::now();
//! clock.advance(Duration::from_secs(360));
//! let parts = http::Request::new(()).into_parts().0;
//! assert_eq!(clock.verify(&verifier, &code, &parts).unwrap_err().code(), "otac_expired");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The fake clock drives [`Verifier`]s you call directly; the tower layers and framework adapters keep reading
//! the system clock.

pub mod conformance;

use std::fmt;
use std::future::Future as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use http::{Extensions, HeaderMap, StatusCode};
use serde_json::Value;

use crate::claims::Claims;
use crate::engine::{Issuer, Verifier, now_secs, random_id};
use crate::error::{ConfigError, OtacError};
use crate::verified::{OtacClaims, VerifiedOtac};
use crate::workflow::Workflow;

/// What the test code carries: the subject, custom claims, the request it is issued on, the run it continues.
#[derive(Debug, Default)]
#[must_use]
pub struct TestCode {
    claims: OtacClaims,
    request: Option<Parts>,
    from: Option<String>,
    run: Option<String>,
}

impl TestCode {
    /// A code with no subject and no custom claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the code to `subject`, as a handler does with [`OtacClaims::subject`] (for
    /// [`Binding::subject`](crate::Binding::subject)).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.claims = self.claims.subject(subject);
        self
    }

    /// Adds one custom claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims = self.claims.claim(name, value);
        self
    }

    /// Uses these claims as the issuing handler would attach them (subject, custom claims, state fingerprint),
    /// replacing those set so far.
    pub fn attach(mut self, claims: OtacClaims) -> Self {
        self.claims = claims;
        self
    }

    /// The request the code is issued on, for bindings that read the request (header, cookie, principal,
    /// closure): the code is bound to its binding value, so present it with the same value.
    pub fn request<B>(mut self, request: http::Request<B>) -> Self {
        self.request = Some(request.into_parts().0);
        self
    }

    /// The step that issues the code, when several steps lead to the one you mint for (default: the first step,
    /// in definition order, whose next steps name it).
    pub fn issued_by(mut self, step: impl Into<String>) -> Self {
        self.from = Some(step.into());
        self
    }

    /// The workflow run the code belongs to (default: a new random run id), e.g. to chain codes of one run.
    pub fn run_id(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }
}

/// Why [`try_mint`] could not mint a code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MintError {
    /// The step is unknown, no step leads to it, or the workflow's keys cannot sign.
    Config(ConfigError),
    /// The issuer refused (e.g. [`Binding::subject`](crate::Binding::subject) without a subject, or a request
    /// without the binding value).
    Issue(OtacError),
    /// The replay store answered asynchronously while writing the run's live-code mark: use [`mint_async`].
    Pending,
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(err) => write!(f, "cannot mint a test code: {err}"),
            Self::Issue(err) => write!(f, "cannot mint a test code: {err}"),
            Self::Pending => f.write_str(
                "cannot mint a test code: the replay store answers asynchronously, use mint_async",
            ),
        }
    }
}

impl std::error::Error for MintError {}

impl From<ConfigError> for MintError {
    fn from(err: ConfigError) -> Self {
        Self::Config(err)
    }
}

impl From<OtacError> for MintError {
    fn from(err: OtacError) -> Self {
        Self::Issue(err)
    }
}

/// A genuine code for `step` of `workflow`, issued by the step that leads to it. Panics with the reason when it
/// cannot be minted; see [`try_mint`].
#[track_caller]
pub fn mint(workflow: &Workflow, step: &str, code: TestCode) -> String {
    match try_mint(workflow, step, code) {
        Ok(code) => code,
        Err(err) => panic!("{err}"),
    }
}

/// A genuine code for `step` of `workflow`: the issuing step's real [`Issuer`] signs it with the workflow's current
/// key, binds it, and (with [`one_live_code`](crate::WorkflowBuilder::one_live_code)) writes the live-code mark. A
/// step that continues runs gets the code as if its own code of the run had been verified.
pub fn try_mint(workflow: &Workflow, step: &str, code: TestCode) -> Result<String, MintError> {
    let (issuer, ctx_parts, carried, claims) = prepare(workflow, step, code)?;
    let (code, mark) = complete(&issuer, &ctx_parts, carried.as_ref(), claims)?;
    if let Some(mut mark) = mark {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut mark).poll(&mut cx) {
            Poll::Ready(result) => result.map_err(|e| MintError::Issue(e.into()))?,
            Poll::Pending => return Err(MintError::Pending),
        }
    }
    Ok(code)
}

/// [`try_mint`] for replay stores that answer asynchronously (e.g. Redis) when the workflow keeps one live code
/// per run.
pub async fn mint_async(
    workflow: &Workflow,
    step: &str,
    code: TestCode,
) -> Result<String, MintError> {
    let (issuer, ctx_parts, carried, claims) = prepare(workflow, step, code)?;
    let (code, mark) = complete(&issuer, &ctx_parts, carried.as_ref(), claims)?;
    if let Some(mark) = mark {
        mark.await.map_err(|e| MintError::Issue(e.into()))?;
    }
    Ok(code)
}

type Prepared = (Issuer, Parts, Option<VerifiedOtac>, OtacClaims);

fn prepare(workflow: &Workflow, step: &str, code: TestCode) -> Result<Prepared, MintError> {
    workflow.index(step)?;
    let from = match code.from {
        Some(from) => {
            if !workflow.next_steps(&from)?.iter().any(|s| s == step) {
                return Err(ConfigError::InvalidSetting(
                    "the issuing step does not lead to the step to mint for",
                )
                .into());
            }
            from
        }
        None => workflow
            .steps()
            .find(|s| {
                workflow
                    .next_steps(s)
                    .is_ok_and(|n| n.iter().any(|n| n == step))
            })
            .ok_or(ConfigError::InvalidSetting(
                "no step of the workflow issues codes for this step",
            ))?
            .to_owned(),
    };
    let issuer = Issuer::new(workflow, &from)?;
    // The issuing step's own code of the run, as its require layer would have verified it.
    let now = now_secs();
    let run = match code.run {
        Some(run) => run,
        None => random_id()?,
    };
    let carried = Claims {
        iss: workflow.issuer().to_owned(),
        sub: None,
        aud: crate::claims::Audience(vec![from.clone()]),
        exp: now.saturating_add(60),
        iat: now,
        nbf: now,
        jti: random_id()?,
        wf: workflow.name().to_owned(),
        run,
        stp: from.clone(),
        rat: now,
        ctx: serde_json::Map::new(),
        sfp: None,
    };
    let carried = VerifiedOtac::new(carried, *workflow.keys().binding_key(), &from);
    let parts = code
        .request
        .unwrap_or_else(|| http::Request::new(()).into_parts().0);
    Ok((issuer, parts, Some(carried), code.claims))
}

type Minted = (String, Option<crate::store::StoreFuture<()>>);

fn complete(
    issuer: &Issuer,
    parts: &Parts,
    carried: Option<&VerifiedOtac>,
    claims: OtacClaims,
) -> Result<Minted, MintError> {
    let mut ctx = issuer.prepare(parts);
    ctx.carry(carried);
    let status = (200..=599)
        .filter_map(|s| StatusCode::from_u16(s).ok())
        .find(|s| issuer.is_success(*s))
        .ok_or(ConfigError::InvalidSetting(
            "the issuing step counts no status as success",
        ))?;
    let mut headers = HeaderMap::new();
    let mut extensions = Extensions::new();
    extensions.insert(claims);
    let mark = issuer.complete(&ctx, status, &mut headers, &extensions)?;
    let code = headers
        .get(issuer.workflow().header())
        .and_then(|v| v.to_str().ok())
        .ok_or(OtacError::issue("no code was issued"))?
        .to_owned();
    Ok((code, mark))
}

/// A clock for the verifying side of your tests: [`FakeClock::verify`] checks a code as a [`Verifier`] would at the
/// clock's time (expiry, not-before, the run's lifetime). Clones share one time.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicU64>);

impl FakeClock {
    /// A clock at the current system time.
    pub fn now() -> Self {
        Self::at(now_secs())
    }

    /// A clock at `unix_secs` seconds since the Unix epoch.
    pub fn at(unix_secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix_secs)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// Moves the clock back (e.g. to test `nbf`).
    pub fn rewind(&self, by: Duration) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_sub(by.as_secs()))
            });
    }

    /// Sets the clock.
    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs, Ordering::SeqCst);
    }

    /// The clock's time, seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// [`Verifier::verify_token`] at this clock's time.
    pub fn verify(
        &self,
        verifier: &Verifier,
        code: &str,
        parts: &Parts,
    ) -> Result<VerifiedOtac, OtacError> {
        verifier.verify_token_at(code, parts, self.unix_secs())
    }
}
