//! The framework-neutral core: verifying a request's code for a step ([`Verifier`]) and issuing the code for the
//! next step(s) ([`Issuer`]). The tower layers and the framework adapters are thin shells around these.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{
    ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, HeaderMap, HeaderValue, SET_COOKIE,
};
use http::request::Parts;
use http::{Extensions, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::binding::{self, BindingKind};
use crate::claims::Audience;
use crate::error::{ConfigError, OtacError, OtacErrorKind, StoreError};
use crate::observe;
use crate::store::{Guard, Outcome, ReplayStore, Spend, StoreFuture, StoreKey};
use crate::token;
use crate::verified::{OtacClaims, VerifiedOtac};
use crate::workflow::{Consume, Workflow, WorkflowInner};

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// 128 random bits, base64url.
pub(crate) fn random_id() -> Result<String, OtacError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| OtacError::issue("no system randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Verifies codes presented to one step of a workflow.
#[derive(Clone, Debug)]
pub struct Verifier {
    workflow: Workflow,
    step: usize,
    metrics: observe::StepMetrics,
}

impl Verifier {
    /// The verifier of `step`; an unknown step is an error.
    pub fn new(workflow: &Workflow, step: &str) -> Result<Self, ConfigError> {
        let index = workflow.index(step)?;
        Ok(Self {
            step: index,
            metrics: observe::StepMetrics::new(workflow.name(), step),
            workflow: workflow.clone(),
        })
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The step name.
    pub fn step(&self) -> &str {
        &self.workflow.step_config(self.step).name
    }

    /// Reads the code from the request's headers and checks it: form, header, signature, issuer, workflow, time,
    /// audience and caller binding. One-time use is checked afterwards by [`Verifier::consume`].
    pub fn verify(&self, parts: &Parts) -> Result<VerifiedOtac, OtacError> {
        let token = self.token(&parts.headers)?;
        let verified = self.verify_token(token, parts)?;
        tracing::Span::current().record("run", verified.run_id());
        Ok(verified)
    }

    /// The single code in `headers`.
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, OtacError> {
        if let Some(name) = &self.workflow.inner.cookie {
            let token = match binding::find_cookie(headers, name) {
                binding::CookieLookup::Absent => return Err(OtacError::required()),
                binding::CookieLookup::Many => {
                    return Err(OtacError::malformed("more than one code cookie"));
                }
                binding::CookieLookup::One(token) => token.trim(),
            };
            if token.len() > self.workflow.inner.max_len {
                return Err(OtacError::malformed("code exceeds the size limit"));
            }
            if token.is_empty() {
                return Err(OtacError::required());
            }
            return Ok(token);
        }
        let mut values = headers.get_all(&self.workflow.inner.header).iter();
        let value = values.next().ok_or_else(OtacError::required)?;
        if values.next().is_some() {
            return Err(OtacError::malformed("more than one code header"));
        }
        if value.len() > self.workflow.inner.max_len {
            return Err(OtacError::malformed("code exceeds the size limit"));
        }
        let token = value
            .to_str()
            .map_err(|_| OtacError::malformed("code header is not visible ASCII"))?
            .trim();
        if token.is_empty() {
            return Err(OtacError::required());
        }
        Ok(token)
    }

    /// Checks `token` for this step, with the request `parts` for the caller binding.
    pub fn verify_token(&self, token: &str, parts: &Parts) -> Result<VerifiedOtac, OtacError> {
        self.verify_token_at(token, parts, now_secs())
    }

    pub(crate) fn verify_token_at(
        &self,
        token: &str,
        parts: &Parts,
        now: u64,
    ) -> Result<VerifiedOtac, OtacError> {
        let wf = &*self.workflow.inner;
        let step = self.workflow.step_config(self.step);
        let (_key, claims) = token::decode(token, &wf.keys, wf.max_len)?;
        if claims.iss != wf.issuer {
            return Err(OtacError::invalid("wrong issuer"));
        }
        if claims.wf != wf.name {
            return Err(OtacError::invalid("code of another workflow"));
        }
        if claims.jti.is_empty() || claims.run.is_empty() {
            return Err(OtacError::malformed("empty jti or run id"));
        }
        let leeway = wf.leeway.as_secs();
        if now > claims.exp.saturating_add(leeway) {
            return Err(OtacError::expired("code expired"));
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(OtacError::expired("code not valid yet"));
        }
        // Times from the future are forgeries or broken clocks: a run start ahead of now would also escape
        // revocations (which cover runs started until the revocation).
        if claims.iat > now.saturating_add(leeway) || claims.rat > now.saturating_add(leeway) {
            return Err(OtacError::invalid("issued in the future"));
        }

        if claims.exp
            > now
                .saturating_add(step.max_incoming.as_secs())
                .saturating_add(leeway)
        {
            return Err(OtacError::invalid(
                "code lives longer than this step ever issues",
            ));
        }
        if now
            > claims
                .rat
                .saturating_add(wf.run_lifetime.as_secs())
                .saturating_add(leeway)
        {
            return Err(OtacError::expired("workflow run lifetime is over"));
        }
        if !claims.aud.contains(&step.name) {
            return Err(OtacError::new(
                OtacErrorKind::WrongStep,
                "code is for another step",
            ));
        }
        let binding_key = *wf.keys.binding_key();
        match &wf.binding.0 {
            BindingKind::None => {}
            BindingKind::Subject => {
                if claims.sub.is_none() {
                    return Err(mismatch());
                }
            }
            _ => {
                let value = wf.binding.value(parts).ok_or_else(mismatch)?;
                let expected = binding::subject_hash(&binding_key, &wf.name, &value);
                match &claims.sub {
                    Some(sub) if binding::same_subject(sub, &expected) => {}
                    _ => return Err(mismatch()),
                }
            }
        }
        Ok(VerifiedOtac::new(claims, binding_key, &step.name))
    }

    /// Starts the one-time use of a verified code: `None` in stateless mode, otherwise the store call to await and
    /// a [`Ticket`] to judge its answer and, for [`Consume::OnSuccess`], to finish the use after the handler. With
    /// revocation or one live code per run, the same store call checks those marks.
    pub fn consume(&self, verified: &VerifiedOtac) -> Option<(StoreFuture<Outcome>, Ticket)> {
        let wf = &*self.workflow.inner;
        let store = wf.replay.0.as_ref()?;
        let claims = verified.claims();
        let key = StoreKey::new(&wf.issuer, &wf.name, &claims.jti);
        // The entry outlives the code: the code verifies while `now_secs <= exp + leeway`, that is until the end of
        // that second, and the entry never lives less than the leeway (at least a second) whatever the clocks say.
        let now_ms = now_millis();
        let spent_until_ms = claims
            .exp
            .saturating_add(wf.leeway.as_secs())
            .saturating_add(1)
            .saturating_mul(1000)
            .max(now_ms.saturating_add(wf.leeway.as_millis().max(1000) as u64));
        let step = self.workflow.step_config(self.step);
        let token = match step.consume {
            Consume::OnSuccess => random_u64(),
            _ => 0,
        };
        let spend = match step.consume {
            Consume::BeforeHandler => Spend::Consume {
                expires_at_ms: spent_until_ms,
            },
            Consume::OnSuccess => Spend::Reserve {
                token,
                lease_until_ms: now_ms
                    .saturating_add(wf.lease.as_millis() as u64)
                    .min(spent_until_ms),
            },
            Consume::Replace => Spend::Nothing,
        };
        let mut guards = Vec::new();
        if wf.revocation {
            guards.push(Guard::Revoked {
                key: StoreKey::for_run(&wf.issuer, &wf.name, &claims.run),
                at: claims.rat,
            });
            if let Some(sub) = &claims.sub {
                guards.push(Guard::Revoked {
                    key: StoreKey::for_subject(&wf.issuer, &wf.name, sub),
                    at: claims.rat,
                });
            }
        }
        if wf.one_live_code {
            guards.push(Guard::Live {
                key: StoreKey::for_live_code(&wf.issuer, &wf.name, &claims.run),
                tag: live_tag(&key),
            });
        }
        let future = self.metrics.timed(|| {
            if guards.is_empty() {
                crate::store::spend_unguarded(&**store, &key, spend)
            } else {
                store.use_guarded(&key, spend, &guards)
            }
        });
        Some((
            future,
            Ticket {
                store: Arc::clone(store),
                key,
                token,
                spent_until_ms,
                on_success: step.consume == Consume::OnSuccess,
                is_success: step.is_success,
                abort: wf.revocation.then(|| {
                    (
                        StoreKey::for_run(&wf.issuer, &wf.name, &claims.run),
                        revocation_until_ms(wf),
                    )
                }),
            },
        ))
    }

    /// Records that a code passed every check and the handler ran: the span's outcome and the
    /// `otac_consumed_total` metric. Adapters call it once the handler has answered.
    pub fn record_pass(&self) {
        tracing::Span::current().record("outcome", "passed");
        self.metrics.consumed();
    }

    /// Whether one-time use goes through a replay store (not stateless).
    pub fn uses_store(&self) -> bool {
        self.workflow.inner.replay.0.is_some()
    }

    /// For a state-bound step: the lookup of the current state fingerprint, to await and pass to
    /// [`check_state`](Self::check_state) before [`consume`](Self::consume). `None` for other steps.
    pub fn state_lookup(&self, verified: &VerifiedOtac) -> Option<StoreFuture<Option<Vec<u8>>>> {
        let step = self.workflow.step_config(self.step);
        step.state.as_ref().map(|hook| hook.0.fingerprint(verified))
    }

    /// Judges a state lookup: the code passes only if it was issued for the state as it is now.
    pub fn check_state(
        &self,
        verified: &VerifiedOtac,
        current: Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<(), OtacError> {
        match current {
            Ok(Some(fingerprint)) if verified.state_is(&fingerprint) => Ok(()),
            Ok(_) => Err(OtacError::new(
                OtacErrorKind::Replayed,
                "the state this code was issued for has changed",
            )),
            Err(err) => Err(err.into()),
        }
    }

    /// A span for one require: workflow, step, and (recorded later) run id and outcome.
    pub fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            "otac.require",
            workflow = %self.workflow.inner.name,
            step = %self.step(),
            run = tracing::field::Empty,
            outcome = tracing::field::Empty,
        )
    }

    /// The workflow's error response for `error`.
    pub fn reject(&self, error: &OtacError) -> http::Response<bytes::Bytes> {
        self.metrics.rejected(error.kind());
        tracing::Span::current().record("outcome", error.code());
        tracing::debug!(
            workflow = %self.workflow.inner.name,
            step = %self.step(),
            code = error.code(),
            reason = error.reason(),
            "otac rejected"
        );
        self.workflow.error_response(error)
    }
}

fn mismatch() -> OtacError {
    OtacError::new(
        OtacErrorKind::BindingMismatch,
        "code was issued to another caller",
    )
}

fn random_u64() -> u64 {
    // A reservation token only has to differ from concurrent ones (it guards `release`, not one-time use).
    let mut bytes = now_millis().to_ne_bytes();
    let _ = getrandom::fill(&mut bytes);
    u64::from_ne_bytes(bytes).max(1)
}

/// The one-time use of a code in progress.
#[derive(Debug)]
pub struct Ticket {
    store: Arc<dyn ReplayStore>,
    key: StoreKey,
    token: u64,
    spent_until_ms: u64,
    on_success: bool,
    is_success: fn(StatusCode) -> bool,
    /// The run's revocation mark and how long it must live, when the workflow is revocable.
    abort: Option<(StoreKey, u64)>,
}

impl std::fmt::Debug for dyn ReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayStore")
    }
}

/// The tag of a code in its run's live-code mark.
fn live_tag(key: &StoreKey) -> u64 {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&key.as_bytes()[..8]);
    u64::from_be_bytes(tag)
}

/// A revocation mark must outlive every code of the runs it covers.
fn revocation_until_ms(wf: &WorkflowInner) -> u64 {
    now_millis()
        .saturating_add(wf.run_lifetime.as_millis() as u64)
        .saturating_add(wf.leeway.as_millis() as u64)
        .saturating_add(1000)
}

impl Ticket {
    /// Judges the store's answer: the first use passes, a second is `otac_replayed` (so is a code a newer one of
    /// its run replaced), a revoked run is `otac_run_revoked`, a store failure is `otac_store_unavailable`.
    pub fn check(&self, outcome: Result<Outcome, StoreError>) -> Result<(), OtacError> {
        match outcome {
            Ok(Outcome::Inserted) => Ok(()),
            Ok(Outcome::AlreadyPresent) => {
                Err(OtacError::new(OtacErrorKind::Replayed, "code already used"))
            }
            Ok(Outcome::Superseded) => Err(OtacError::new(
                OtacErrorKind::Replayed,
                "a newer code of this run replaced this one",
            )),
            Ok(Outcome::Revoked) => Err(OtacError::new(
                OtacErrorKind::RunRevoked,
                "this workflow run was revoked",
            )),
            Err(err) => {
                tracing::warn!(reason = err.reason(), "otac replay store unavailable");
                Err(err.into())
            }
        }
    }

    /// After the handler answered with `status`: commits a reservation on success, releases it otherwise, and
    /// revokes the run when the handler aborted it ([`AbortRun`] in the response extensions). `None` when there is
    /// nothing left to do.
    pub fn finish(self, status: StatusCode, extensions: &Extensions) -> Option<StoreFuture<()>> {
        let use_done = self.on_success.then(|| {
            if (self.is_success)(status) {
                self.store
                    .commit(&self.key, self.token, self.spent_until_ms)
            } else {
                self.store.release(&self.key, self.token)
            }
        });
        let abort = self
            .abort
            .filter(|_| extensions.get::<AbortRun>().is_some())
            .map(|(run, until)| self.store.mark(&run, now_secs(), until));
        match (use_done, abort) {
            (None, None) => None,
            (Some(f), None) | (None, Some(f)) => Some(f),
            (Some(first), Some(second)) => Some(StoreFuture::boxed(async move {
                let first = first.await;
                second.await.and(first)
            })),
        }
    }
}

impl Workflow {
    /// Revokes a workflow run: every code of it, issued or still to come, answers `otac_run_revoked` from now on.
    /// Needs [`revocation`](crate::WorkflowBuilder::revocation).
    pub fn revoke_run(&self, run_id: &str) -> StoreFuture<()> {
        let wf = &*self.inner;
        self.revocation_mark(StoreKey::for_run(&wf.issuer, &wf.name, run_id))
    }

    /// Revokes every run of a binding subject that started until now (e.g. after a password change or an abuse
    /// report): `subject` is the binding value (the subject a handler named, the principal's id, the header or
    /// cookie value). Runs started later are not affected. Needs
    /// [`revocation`](crate::WorkflowBuilder::revocation).
    pub fn revoke_subject(&self, subject: &str) -> StoreFuture<()> {
        let wf = &*self.inner;
        let sub = binding::subject_hash(wf.keys.binding_key(), &wf.name, subject.as_bytes());
        self.revocation_mark(StoreKey::for_subject(&wf.issuer, &wf.name, &sub))
    }

    fn revocation_mark(&self, key: StoreKey) -> StoreFuture<()> {
        let wf = &*self.inner;
        match (&wf.replay.0, wf.revocation) {
            (Some(store), true) => store.mark(&key, now_secs(), revocation_until_ms(wf)),
            _ => StoreFuture::ready(Err(StoreError::new(
                "this workflow is not revocable: enable revocation(true) with a replay store",
            ))),
        }
    }
}

/// The claims of a code being issued, borrowing what the workflow and the carried code already hold (no copies of
/// the issuer, workflow, step and audience names, the run id or the custom claims). Serialises exactly as
/// [`Claims`](crate::Claims): the same members in the same order, omitted in the same cases.
#[derive(Serialize)]
struct Issued<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    aud: &'a Audience,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
    wf: &'a str,
    run: Cow<'a, str>,
    stp: &'a str,
    rat: u64,
    #[serde(skip_serializing_if = "no_custom_claims")]
    ctx: Cow<'a, Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sfp: Option<String>,
}

// serde hands `skip_serializing_if` a reference to the field itself.
#[allow(clippy::ptr_arg)]
fn no_custom_claims(ctx: &Cow<'_, Map<String, Value>>) -> bool {
    ctx.is_empty()
}

/// Put into a response's extensions by a handler to abort the workflow run of the request's code (e.g. after too
/// many wrong verification codes): the run is revoked and every later use of its codes answers
/// `otac_run_revoked`. Needs [`revocation`](crate::WorkflowBuilder::revocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct AbortRun;

/// Issues codes on the success of one step, for its next step(s).
#[derive(Clone, Debug)]
pub struct Issuer {
    workflow: Workflow,
    step: usize,
    audience: Audience,
    expose: Option<HeaderValue>,
    metrics: observe::StepMetrics,
}

/// What an [`Issuer`] learns from the request before the handler runs.
#[derive(Debug, Default)]
pub struct IssueContext {
    carried: Option<VerifiedOtac>,
    request_sub: Option<String>,
}

impl IssueContext {
    /// Uses `verified` as the code this request consumed, if none was seen on the request (e.g. the require layer
    /// runs inside the issue layer and reports it on the response).
    pub fn carry(&mut self, verified: Option<&VerifiedOtac>) {
        if self.carried.is_none() {
            self.carried = verified.cloned();
        }
    }
}

impl Issuer {
    /// The issuer of `step`; an unknown step, or one with no next step, is an error.
    pub fn new(workflow: &Workflow, step: &str) -> Result<Self, ConfigError> {
        let index = workflow.index(step)?;
        let config = workflow.step_config(index);
        if config.next.is_empty() {
            return Err(ConfigError::NoNextStep(step.to_owned()));
        }
        if !workflow.inner.keys.can_sign() {
            return Err(ConfigError::NoSigningKey);
        }
        let expose = if workflow.inner.expose_header {
            Some(
                HeaderValue::from_str(workflow.inner.header.as_str())
                    .map_err(|e| ConfigError::InvalidHeader(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Self {
            audience: Audience(config.next.clone()),
            step: index,
            metrics: observe::StepMetrics::new(workflow.name(), step),
            workflow: workflow.clone(),
            expose,
        })
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The step name.
    pub fn step(&self) -> &str {
        &self.workflow.step_config(self.step).name
    }

    /// A span for one issue: workflow, step, and (recorded later) run id and outcome.
    pub fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            "otac.issue",
            workflow = %self.workflow.inner.name,
            step = %self.step(),
            run = tracing::field::Empty,
            outcome = tracing::field::Empty,
        )
    }

    /// Whether a response with `status` gets a code.
    pub fn is_success(&self, status: StatusCode) -> bool {
        (self.workflow.step_config(self.step).is_success)(status)
    }

    /// Whether [`prepare`](Self::prepare) reads the request beyond its extensions (the caller binding comes from a
    /// header, cookie, principal or closure). Adapters that convert requests can skip the headers otherwise.
    pub fn reads_request(&self) -> bool {
        self.workflow.inner.binding.is_request_derived()
    }

    /// Captures what issuing needs from the request: the code it consumed (a chain continues its run) and the
    /// request-derived caller binding.
    pub fn prepare(&self, parts: &Parts) -> IssueContext {
        let wf = &*self.workflow.inner;
        let carried = parts
            .extensions
            .get::<VerifiedOtac>()
            .filter(|v| v.workflow() == wf.name)
            .cloned();
        let request_sub = if wf.binding.is_request_derived() {
            wf.binding
                .value(parts)
                .map(|v| binding::subject_hash(wf.keys.binding_key(), &wf.name, &v))
        } else {
            None
        };
        IssueContext {
            carried,
            request_sub,
        }
    }

    /// Mints the code for a successful response, continuing the run of the carried code if any.
    ///
    /// With [`one_live_code`](crate::WorkflowBuilder::one_live_code) use [`complete`](Self::complete), which also
    /// writes the live-code mark; a code from `issue` alone is then refused as replaced.
    pub fn issue(
        &self,
        ctx: &IssueContext,
        attached: Option<&OtacClaims>,
    ) -> Result<String, OtacError> {
        self.issue_claims_at(ctx, attached, now_secs())
            .map(|(code, _)| code)
    }

    fn issue_claims_at<'a>(
        &'a self,
        ctx: &'a IssueContext,
        attached: Option<&OtacClaims>,
        now: u64,
    ) -> Result<(String, Issued<'a>), OtacError> {
        let wf = &*self.workflow.inner;
        let step = self.workflow.step_config(self.step);
        // Only a code of this workflow continues its run (a code of another workflow may reach here through
        // `IssueContext::carry`, from a require layer of that workflow on the same route).
        // Only a code verified for this very step continues the run.
        let carried = ctx
            .carried
            .as_ref()
            .filter(|v| v.workflow() == wf.name && v.step() == step.name)
            .map(VerifiedOtac::claims);
        if carried.is_none() && !step.starts_runs {
            // Other steps lead here: issuing without this step's own code would let a caller skip them.
            return Err(OtacError::issue(
                "this step continues a run: its request must carry a verified code for it",
            ));
        }
        let sub = match &wf.binding.0 {
            BindingKind::None => None,
            BindingKind::Subject => {
                let named = attached
                    .and_then(|a| a.subject.as_deref())
                    .map(|s| binding::subject_hash(wf.keys.binding_key(), &wf.name, s.as_bytes()));
                let inherited = carried.and_then(|c| c.sub.clone());
                match (named, inherited) {
                    (Some(n), Some(i)) if !binding::same_subject(&n, &i) => {
                        return Err(OtacError::issue(
                            "handler named another subject than the run's",
                        ));
                    }
                    (Some(n), _) => Some(n),
                    (None, Some(i)) => Some(i),
                    (None, None) => {
                        return Err(OtacError::issue("handler named no subject to bind to"));
                    }
                }
            }
            _ => Some(
                ctx.request_sub
                    .clone()
                    .ok_or(OtacError::issue("request has no caller binding value"))?,
            ),
        };
        let (run, rat) = match carried {
            Some(c) => (Cow::Borrowed(c.run.as_str()), c.rat),
            None => (Cow::Owned(random_id()?), now),
        };
        let run_end = rat.saturating_add(wf.run_lifetime.as_secs());
        if now >= run_end {
            return Err(OtacError::expired("workflow run lifetime is over"));
        }
        let exp = now
            .saturating_add(step.lifetime.as_secs().max(1))
            .min(run_end);
        // The carried custom claims as they are, unless the handler attached more.
        let custom = match (carried, attached) {
            (_, Some(attached)) if !attached.ctx.is_empty() => {
                let mut merged = carried.map(|c| c.ctx.clone()).unwrap_or_default();
                merged.extend(attached.ctx.iter().map(|(k, v)| (k.clone(), v.clone())));
                Cow::Owned(merged)
            }
            (Some(c), _) => Cow::Borrowed(&c.ctx),
            (None, _) => Cow::Owned(Map::new()),
        };
        let claims = Issued {
            iss: &wf.issuer,
            sub,
            aud: &self.audience,
            exp,
            iat: now,
            nbf: now,
            jti: random_id()?,
            wf: &wf.name,
            run,
            stp: &step.name,
            rat,
            ctx: custom,
            sfp: attached
                .and_then(|a| a.state.as_deref())
                .map(|fp| binding::state_hash(wf.keys.binding_key(), &wf.name, fp)),
        };
        let code = token::encode(wf.keys.current(), &claims)?;
        let span = tracing::Span::current();
        span.record("run", &*claims.run);
        span.record("outcome", "issued");
        self.metrics.issued();
        tracing::debug!(workflow = %wf.name, step = %step.name, run = %claims.run, "otac issued");
        Ok((code, claims))
    }

    /// Puts `code` into response headers: the code header, `Cache-Control: no-store` and, when configured,
    /// `Access-Control-Expose-Headers`.
    pub fn decorate(&self, headers: &mut HeaderMap, code: &str) -> Result<(), OtacError> {
        let wf = &*self.workflow.inner;
        if let Some(name) = &wf.cookie {
            // One cookie per next step, scoped to its path: the browser sends it there and nowhere else.
            let max_age = self
                .workflow
                .step_config(self.step)
                .lifetime
                .as_secs()
                .max(1);
            for next in &self.audience.0 {
                let Some(path) = wf
                    .steps
                    .iter()
                    .find(|s| &s.name == next)
                    .and_then(|s| s.path.as_deref())
                else {
                    continue;
                };
                let cookie = format!(
                    "{name}={code}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
                );
                let value = HeaderValue::from_str(&cookie)
                    .map_err(|_| OtacError::issue("code is not a cookie value"))?;
                headers.append(SET_COOKIE, value);
            }
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(());
        }
        let value = HeaderValue::from_str(code)
            .map_err(|_| OtacError::issue("code is not a header value"))?;
        headers.insert(wf.header.clone(), value);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(expose) = &self.expose {
            headers.append(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        Ok(())
    }

    /// For a response with `status`: issues and adds the code if it is a success. `Ok(Some(future))` when the
    /// run's live-code mark must still be written ([`one_live_code`](crate::WorkflowBuilder::one_live_code)): await
    /// it, and on failure take the code back with [`withdraw`](Self::withdraw). On failure no code is added, the
    /// error is logged and returned.
    pub fn complete(
        &self,
        ctx: &IssueContext,
        status: StatusCode,
        headers: &mut HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<StoreFuture<()>>, OtacError> {
        let span = tracing::Span::current();
        if !self.is_success(status) {
            span.record("outcome", "not_success");
            return Ok(None);
        }
        // A rejection that a custom responder answered with a "success" status never gets a code.
        if extensions
            .get::<OtacError>()
            .is_some_and(|e| e.kind() != OtacErrorKind::IssueFailed)
        {
            span.record("outcome", "rejected");
            return Ok(None);
        }
        let result = self
            .mint(ctx, extensions.get::<OtacClaims>())
            .and_then(|(code, mark)| self.decorate(headers, &code).map(|()| mark));
        if let Err(err) = &result {
            self.log_failure(err);
        }
        result
    }

    /// Removes a code that [`complete`](Self::complete) added, when its live-code mark could not be written.
    pub fn withdraw(&self, headers: &mut HeaderMap, error: &OtacError) {
        headers.remove(&self.workflow.inner.header);
        if let Some(name) = &self.workflow.inner.cookie {
            let prefix = format!("{name}=");
            let kept: Vec<HeaderValue> = headers
                .get_all(SET_COOKIE)
                .iter()
                .filter(|v| !v.as_bytes().starts_with(prefix.as_bytes()))
                .cloned()
                .collect();
            headers.remove(SET_COOKIE);
            for value in kept {
                headers.append(SET_COOKIE, value);
            }
        }
        self.log_failure(error);
    }

    fn log_failure(&self, err: &OtacError) {
        tracing::Span::current().record("outcome", err.code());
        tracing::warn!(
            workflow = %self.workflow.inner.name,
            step = %self.step(),
            code = err.code(),
            reason = err.reason(),
            "otac not issued"
        );
    }

    /// The code, and the write of its live-code mark when the workflow keeps one live code per run.
    fn mint(
        &self,
        ctx: &IssueContext,
        attached: Option<&OtacClaims>,
    ) -> Result<(String, Option<StoreFuture<()>>), OtacError> {
        let (code, claims) = self.issue_claims_at(ctx, attached, now_secs())?;
        let wf = &*self.workflow.inner;
        let mark = match (&wf.replay.0, wf.one_live_code) {
            (Some(store), true) => {
                let jti = StoreKey::new(&wf.issuer, &wf.name, &claims.jti);
                let until = claims
                    .rat
                    .saturating_add(wf.run_lifetime.as_secs())
                    .saturating_add(wf.leeway.as_secs())
                    .saturating_add(1)
                    .saturating_mul(1000);
                Some(store.mark(
                    &StoreKey::for_live_code(&wf.issuer, &wf.name, &claims.run),
                    live_tag(&jti),
                    until,
                ))
            }
            _ => None,
        };
        Ok((code, mark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    /// The borrowed view of every member of `claims` (a member added to [`Claims`] fails to compile here).
    fn view(claims: &Claims) -> Issued<'_> {
        let Claims {
            iss,
            sub,
            aud,
            exp,
            iat,
            nbf,
            jti,
            wf,
            run,
            stp,
            rat,
            ctx,
            sfp,
        } = claims;
        Issued {
            iss,
            sub: sub.clone(),
            aud,
            exp: *exp,
            iat: *iat,
            nbf: *nbf,
            jti: jti.clone(),
            wf,
            run: Cow::Borrowed(run),
            stp,
            rat: *rat,
            ctx: Cow::Borrowed(ctx),
            sfp: sfp.clone(),
        }
    }

    #[test]
    fn issued_claims_serialise_as_claims() {
        let mut ctx = Map::new();
        ctx.insert("user_id".to_owned(), Value::from("u_1"));
        ctx.insert("tries".to_owned(), Value::from(2));
        let full = Claims {
            iss: "accounts.test".to_owned(),
            sub: Some("c3Vi".to_owned()),
            aud: Audience(vec!["verify-mobile".to_owned(), "resend".to_owned()]),
            exp: 1_700_000_300,
            iat: 1_700_000_000,
            nbf: 1_700_000_000,
            jti: "anRp".to_owned(),
            wf: "onboarding".to_owned(),
            run: "cnVu".to_owned(),
            stp: "verify-email".to_owned(),
            rat: 1_699_999_000,
            ctx,
            sfp: Some("c2Zw".to_owned()),
        };
        let bare = Claims {
            sub: None,
            aud: Audience(vec!["verify-mobile".to_owned()]),
            ctx: Map::new(),
            sfp: None,
            ..full.clone()
        };
        for claims in [full, bare] {
            assert_eq!(
                serde_json::to_string(&view(&claims)).unwrap(),
                serde_json::to_string(&claims).unwrap()
            );
        }
    }
}
