//! The framework-neutral core: verifying a request's code for a step ([`Verifier`]) and issuing the code for the
//! next step(s) ([`Issuer`]). The tower layers and the framework adapters are thin shells around these.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Extensions, StatusCode};

use crate::binding::{self, BindingKind};
use crate::claims::{Audience, Claims};
use crate::error::{ConfigError, OtacError, OtacErrorKind, StoreError};
use crate::store::{Outcome, ReplayStore, StoreFuture, StoreKey};
use crate::token;
use crate::verified::{OtacClaims, VerifiedOtac};
use crate::workflow::{Consume, Workflow};

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
}

impl Verifier {
    /// The verifier of `step`; an unknown step is an error.
    pub fn new(workflow: &Workflow, step: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            step: workflow.index(step)?,
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
        self.verify_token(token, parts)
    }

    /// The single code in `headers`.
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, OtacError> {
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
    /// a [`Ticket`] to judge its answer and, for [`Consume::OnSuccess`], to finish the use after the handler.
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
        let (future, token) = match step.consume {
            Consume::BeforeHandler => (store.consume(&key, spent_until_ms), 0),
            Consume::OnSuccess => {
                let token = random_u64();
                let lease_until = now_ms.saturating_add(wf.lease.as_millis() as u64);
                (
                    store.reserve(&key, token, lease_until.min(spent_until_ms)),
                    token,
                )
            }
        };
        Some((
            future,
            Ticket {
                store: Arc::clone(store),
                key,
                token,
                spent_until_ms,
                on_success: step.consume == Consume::OnSuccess,
                is_success: step.is_success,
            },
        ))
    }

    /// The workflow's error response for `error`.
    pub fn reject(&self, error: &OtacError) -> http::Response<bytes::Bytes> {
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
}

impl std::fmt::Debug for dyn ReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayStore")
    }
}

impl Ticket {
    /// Judges the store's answer: the first use passes, a second is `otac_replayed`, a store failure is
    /// `otac_store_unavailable`.
    pub fn check(&self, outcome: Result<Outcome, StoreError>) -> Result<(), OtacError> {
        match outcome {
            Ok(Outcome::Inserted) => Ok(()),
            Ok(Outcome::AlreadyPresent) => {
                Err(OtacError::new(OtacErrorKind::Replayed, "code already used"))
            }
            Err(err) => {
                tracing::warn!(reason = err.reason(), "otac replay store unavailable");
                Err(err.into())
            }
        }
    }

    /// After the handler answered with `status`: commits a reservation on success, releases it otherwise. `None`
    /// when the code was already spent before the handler.
    pub fn finish(self, status: StatusCode) -> Option<StoreFuture<()>> {
        if !self.on_success {
            return None;
        }
        Some(if (self.is_success)(status) {
            self.store
                .commit(&self.key, self.token, self.spent_until_ms)
        } else {
            self.store.release(&self.key, self.token)
        })
    }
}

/// Issues codes on the success of one step, for its next step(s).
#[derive(Clone, Debug)]
pub struct Issuer {
    workflow: Workflow,
    step: usize,
    audience: Audience,
    expose: Option<HeaderValue>,
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

    /// Whether a response with `status` gets a code.
    pub fn is_success(&self, status: StatusCode) -> bool {
        (self.workflow.step_config(self.step).is_success)(status)
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
    pub fn issue(
        &self,
        ctx: &IssueContext,
        attached: Option<&OtacClaims>,
    ) -> Result<String, OtacError> {
        self.issue_at(ctx, attached, now_secs())
    }

    pub(crate) fn issue_at(
        &self,
        ctx: &IssueContext,
        attached: Option<&OtacClaims>,
        now: u64,
    ) -> Result<String, OtacError> {
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
            Some(c) => (c.run.clone(), c.rat),
            None => (random_id()?, now),
        };
        let run_end = rat.saturating_add(wf.run_lifetime.as_secs());
        if now >= run_end {
            return Err(OtacError::expired("workflow run lifetime is over"));
        }
        let exp = now
            .saturating_add(step.lifetime.as_secs().max(1))
            .min(run_end);
        let mut custom = carried.map(|c| c.ctx.clone()).unwrap_or_default();
        if let Some(attached) = attached {
            custom.extend(attached.ctx.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let claims = Claims {
            iss: wf.issuer.clone(),
            sub,
            aud: self.audience.clone(),
            exp,
            iat: now,
            nbf: now,
            jti: random_id()?,
            wf: wf.name.clone(),
            run,
            stp: step.name.clone(),
            rat,
            ctx: custom,
        };
        let code = token::encode(wf.keys.current(), &claims)?;
        tracing::debug!(workflow = %wf.name, step = %step.name, run = %claims.run, "otac issued");
        Ok(code)
    }

    /// Puts `code` into response headers: the code header, `Cache-Control: no-store` and, when configured,
    /// `Access-Control-Expose-Headers`.
    pub fn decorate(&self, headers: &mut HeaderMap, code: &str) -> Result<(), OtacError> {
        let value = HeaderValue::from_str(code)
            .map_err(|_| OtacError::issue("code is not a header value"))?;
        headers.insert(self.workflow.inner.header.clone(), value);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(expose) = &self.expose {
            headers.append(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        Ok(())
    }

    /// For a response with `status`: issues and adds the code if it is a success; on failure no code is added, the
    /// error is logged and returned. A rejection (a response whose extensions carry an [`OtacError`] of a require
    /// layer) never gets a code, whatever its status.
    pub fn complete(
        &self,
        ctx: &IssueContext,
        status: StatusCode,
        headers: &mut HeaderMap,
        extensions: &Extensions,
    ) -> Result<bool, OtacError> {
        if !self.is_success(status) {
            return Ok(false);
        }
        if extensions
            .get::<OtacError>()
            .is_some_and(|e| e.kind() != OtacErrorKind::IssueFailed)
        {
            return Ok(false);
        }
        let result = self
            .issue(ctx, extensions.get::<OtacClaims>())
            .and_then(|code| self.decorate(headers, &code));
        if let Err(err) = &result {
            tracing::warn!(
                workflow = %self.workflow.inner.name,
                step = %self.step(),
                code = err.code(),
                reason = err.reason(),
                "otac not issued"
            );
        }
        result.map(|()| true)
    }
}
