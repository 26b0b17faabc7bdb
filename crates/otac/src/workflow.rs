//! A workflow: named steps, which step's success issues a code for which next step(s), and how codes are signed,
//! bound and spent. Defined once in code; both framework adapters consume the same object.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::HeaderName;

use crate::binding::{Binding, BindingKind};
use crate::error::ConfigError;
use crate::keys::KeySet;
use crate::problem::{ErrorResponder, ProblemJson, Responder};
use crate::store::{ReplayStore, StoreFuture};
use crate::verified::VerifiedOtac;

/// The default header that carries codes on requests and responses (the name the WSO2 Identity Server extension
/// uses, so its clients work unchanged).
pub const DEFAULT_HEADER: &str = "one-time-authorization-code";

/// When a code that passed every check is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consume {
    /// Before the handler runs: a retried request cannot replay the code. The default.
    #[default]
    BeforeHandler,
    /// Reserved before the handler (a short lease), committed when the response is a success, released otherwise,
    /// so the caller can retry after e.g. a mistyped SMS code. Still exactly one concurrent request gets through.
    OnSuccess,
    /// Not spent here: the code this step issues replaces it (a "resend" step). Needs
    /// [`one_live_code`](WorkflowBuilder::one_live_code), so the replaced code dies as soon as its successor is
    /// issued, and a next step.
    Replace,
}

/// How one-time use is enforced.
#[derive(Clone)]
pub struct Replay(pub(crate) Option<Arc<dyn ReplayStore>>);

impl Replay {
    /// Expiry alone: a code can be replayed inside its (short) lifetime. No state anywhere.
    pub fn stateless() -> Self {
        Self(None)
    }

    /// Every code's `jti` is spent atomically in `store`.
    pub fn store(store: impl ReplayStore) -> Self {
        Self(Some(Arc::new(store)))
    }

    /// Like [`Replay::store`], with a store shared with other code.
    pub fn shared(store: Arc<dyn ReplayStore>) -> Self {
        Self(Some(store))
    }
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Replay::Store"
        } else {
            "Replay::Stateless"
        })
    }
}

/// The current server-state fingerprint for a code presented to a state-bound step (see
/// [`Step::state_bound`]): for example the password hash of the user the code names. `Ok(None)` means the state is
/// gone (the code is refused); an error fails closed (503).
///
/// Implemented for closures `Fn(&VerifiedOtac) -> Option<Vec<u8>>`; implement it on a type for an async lookup,
/// returning [`StoreFuture::boxed`].
pub trait StateFingerprint: Send + Sync + 'static {
    /// The fingerprint of the state `code` was issued for, as it is now.
    fn fingerprint(&self, code: &VerifiedOtac) -> StoreFuture<Option<Vec<u8>>>;
}

impl<F> StateFingerprint for F
where
    F: Fn(&VerifiedOtac) -> Option<Vec<u8>> + Send + Sync + 'static,
{
    fn fingerprint(&self, code: &VerifiedOtac) -> StoreFuture<Option<Vec<u8>>> {
        StoreFuture::ready(Ok(self(code)))
    }
}

#[derive(Clone)]
pub(crate) struct StateHook(pub(crate) Arc<dyn StateFingerprint>);

impl fmt::Debug for StateHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateFingerprint")
    }
}

/// One step of a workflow.
#[derive(Debug, Clone)]
pub struct Step {
    name: String,
    next: Vec<String>,
    consume: Consume,
    lifetime: Option<Duration>,
    issue_when: fn(StatusCode) -> bool,
    entry: bool,
    state: Option<StateHook>,
    path: Option<String>,
}

impl Step {
    /// A step named `name` (printable ASCII, e.g. `verify-email`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            next: Vec::new(),
            consume: Consume::BeforeHandler,
            lifetime: None,
            issue_when: |status| status.is_success(),
            entry: false,
            state: None,
            path: None,
        }
    }

    /// Makes this step state-bound: a code presented to it passes only while `fingerprint` of the current server
    /// state matches the one the issuing handler put in with [`OtacClaims::state`](crate::OtacClaims::state) —
    /// checked before the handler, and refused as `otac_replayed` once the state changed (e.g. the password this
    /// step sets). One-time use with no replay store: combine with [`Replay::stateless`] if you like.
    pub fn state_bound(mut self, fingerprint: impl StateFingerprint) -> Self {
        self.state = Some(StateHook(Arc::new(fingerprint)));
        self
    }

    /// The URL path of this step's route, with [`cookie_transport`](WorkflowBuilder::cookie_transport): a code for
    /// this step goes into a cookie scoped to this path, so the browser sends it to this step only.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Lets this step start new runs even though other steps lead to it (e.g. a "resend" loop). By default only
    /// steps that no other step leads to start runs; any other step issues a code only when its request carried a
    /// verified code for it, so an issue layer without its require layer cannot be used to skip steps.
    pub fn entry(mut self) -> Self {
        self.entry = true;
        self
    }

    /// A step that the success of this one issues a code for. Call again for branches: the code's audience names
    /// every next step.
    pub fn then(mut self, next: impl Into<String>) -> Self {
        self.next.push(next.into());
        self
    }

    /// When a code presented to this step is spent.
    pub fn consume(mut self, consume: Consume) -> Self {
        self.consume = consume;
        self
    }

    /// The lifetime of codes this step issues (default: the workflow's).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Which response statuses count as success, for issuing (and for committing an
    /// [`OnSuccess`](Consume::OnSuccess) consume). Default: 2xx.
    pub fn success_when(mut self, predicate: fn(StatusCode) -> bool) -> Self {
        self.issue_when = predicate;
        self
    }
}

#[derive(Debug)]
pub(crate) struct StepConfig {
    pub(crate) name: String,
    pub(crate) next: Vec<String>,
    pub(crate) consume: Consume,
    pub(crate) lifetime: Duration,
    pub(crate) is_success: fn(StatusCode) -> bool,
    /// The longest lifetime of any code issued for this step (+ leeway is added when checking).
    pub(crate) max_incoming: Duration,
    /// Whether issuing may start a new run (no step leads here, or `Step::entry`).
    pub(crate) starts_runs: bool,
    /// The current-state fingerprint of a state-bound step.
    pub(crate) state: Option<StateHook>,
    /// The route's path, for cookie transport.
    pub(crate) path: Option<String>,
}

/// A workflow definition. Cheap to clone (an `Arc`).
///
/// ```
/// use otac::{Binding, Consume, Key, KeySet, MemoryStore, Replay, Step, Workflow};
///
/// let workflow = Workflow::builder("onboarding")
///     .issuer("accounts.example.com")
///     .keys(KeySet::new(Key::hs256(b"a secret of at least thirty-two bytes!")?))
///     .binding(Binding::subject())
///     .replay(Replay::store(MemoryStore::default()))
///     .step(Step::new("verify-email").then("verify-mobile"))
///     .step(Step::new("verify-mobile").then("set-password").consume(Consume::OnSuccess))
///     .step(Step::new("set-password"))
///     .build()?;
/// assert_eq!(workflow.name(), "onboarding");
/// # Ok::<(), otac::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Workflow {
    pub(crate) inner: Arc<WorkflowInner>,
}

#[derive(Debug)]
pub(crate) struct WorkflowInner {
    pub(crate) name: String,
    pub(crate) issuer: String,
    pub(crate) keys: KeySet,
    pub(crate) binding: Binding,
    pub(crate) replay: Replay,
    pub(crate) steps: Vec<StepConfig>,
    pub(crate) header: HeaderName,
    pub(crate) run_lifetime: Duration,
    pub(crate) leeway: Duration,
    pub(crate) max_len: usize,
    pub(crate) lease: Duration,
    pub(crate) expose_header: bool,
    pub(crate) revocation: bool,
    pub(crate) one_live_code: bool,
    pub(crate) cookie: Option<String>,
    pub(crate) responder: Responder,
}

impl Workflow {
    /// Starts a workflow named `name`.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            name: name.into(),
            issuer: None,
            keys: None,
            binding: None,
            replay: None,
            steps: Vec::new(),
            header: HeaderName::from_static(DEFAULT_HEADER),
            lifetime: Duration::from_secs(300),
            run_lifetime: Duration::from_secs(3600),
            leeway: Duration::from_secs(5),
            max_len: 4096,
            lease: Duration::from_secs(30),
            expose_header: false,
            revocation: false,
            one_live_code: false,
            cookie: None,
            responder: Box::new(ProblemJson),
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The issuer name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The header that carries codes.
    pub fn header(&self) -> &HeaderName {
        &self.inner.header
    }

    /// The key set.
    pub fn keys(&self) -> &KeySet {
        &self.inner.keys
    }

    /// The step names, in definition order.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.inner.steps.iter().map(|s| s.name.as_str())
    }

    /// The steps a success of `step` issues a code for.
    pub fn next_steps(&self, step: &str) -> Result<&[String], ConfigError> {
        Ok(&self.inner.steps[self.index(step)?].next)
    }

    pub(crate) fn index(&self, step: &str) -> Result<usize, ConfigError> {
        self.inner
            .steps
            .iter()
            .position(|s| s.name == step)
            .ok_or_else(|| ConfigError::UnknownStep(step.to_owned()))
    }

    pub(crate) fn step_config(&self, index: usize) -> &StepConfig {
        &self.inner.steps[index]
    }

    /// The steps and their edges as a Mermaid flowchart (renders on GitHub and in most markdown viewers). An edge
    /// means "success of the first step issues a code for the second"; steps that spend their code only on
    /// success are marked.
    pub fn to_mermaid(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::from("flowchart LR\n");
        for (i, step) in self.inner.steps.iter().enumerate() {
            let note = match step.consume {
                Consume::OnSuccess => "<br/><small>spent on success</small>",
                Consume::Replace => "<br/><small>replaces its code</small>",
                Consume::BeforeHandler => "",
            };
            let _ = writeln!(
                out,
                "    s{i}[\"{}{note}\"]",
                step.name.replace('"', "#quot;")
            );
        }
        for (i, step) in self.inner.steps.iter().enumerate() {
            for next in &step.next {
                if let Some(j) = self.inner.steps.iter().position(|s| &s.name == next) {
                    let _ = writeln!(out, "    s{i} -->|code| s{j}");
                }
            }
        }
        out
    }

    /// The error response for `error`, from the workflow's [`ErrorResponder`].
    pub fn error_response(&self, error: &crate::OtacError) -> http::Response<bytes::Bytes> {
        self.inner.responder.0.respond(error)
    }
}

/// Builds a [`Workflow`]; every mistake is reported by [`build`](WorkflowBuilder::build).
#[must_use]
pub struct WorkflowBuilder {
    name: String,
    issuer: Option<String>,
    keys: Option<KeySet>,
    binding: Option<Binding>,
    replay: Option<Replay>,
    steps: Vec<Step>,
    header: HeaderName,
    lifetime: Duration,
    run_lifetime: Duration,
    leeway: Duration,
    max_len: usize,
    lease: Duration,
    expose_header: bool,
    revocation: bool,
    one_live_code: bool,
    cookie: Option<String>,
    responder: Box<dyn ErrorResponder>,
}

impl fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WorkflowBuilder {
    /// The issuer name (`iss`) of this service; defaults to `otac`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The keys codes are signed and verified with. Required.
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = Some(keys);
        self
    }

    /// How codes are bound to their caller. Required; [`Binding::none`] opts out explicitly.
    pub fn binding(mut self, binding: Binding) -> Self {
        self.binding = Some(binding);
        self
    }

    /// How one-time use is enforced. Required: [`Replay::store`] or, explicitly, [`Replay::stateless`].
    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = Some(replay);
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// The header that carries codes (default `One-Time-Authorization-Code`).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Default lifetime of a code (5 minutes).
    pub fn code_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The longest a whole run may last, from its first code (1 hour).
    pub fn run_lifetime(mut self, lifetime: Duration) -> Self {
        self.run_lifetime = lifetime;
        self
    }

    /// Clock leeway for `exp`/`nbf` (5 seconds; may be zero).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Largest accepted code in bytes (4096).
    pub fn max_code_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// How long an [`OnSuccess`](Consume::OnSuccess) reservation holds a code before a crashed request frees it
    /// (30 seconds).
    ///
    /// Keep every request of such a step shorter than the lease (a request timeout in front, e.g. tower-http's
    /// `TimeoutLayer`, which drops the handler): a handler still running when its lease ends lets a second request
    /// with the same code in. A timed-out request leaves the reservation to lapse, so the code is usable again
    /// after the lease.
    pub fn reservation_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Adds the code header to `Access-Control-Expose-Headers` on responses that carry a code, so browser scripts
    /// can read it.
    pub fn expose_header(mut self, expose: bool) -> Self {
        self.expose_header = expose;
        self
    }

    /// Makes runs revocable: [`Workflow::revoke_run`], [`Workflow::revoke_subject`] and [`AbortRun`](crate::AbortRun)
    /// take effect on every later use of the run's codes (`otac_run_revoked`), checked in the same store call that
    /// spends the code. Needs a replay store that supports marks (the memory and Redis stores do).
    pub fn revocation(mut self, on: bool) -> Self {
        self.revocation = on;
        self
    }

    /// Keeps one live code per run: issuing a new code for a run (e.g. a resend) invalidates the older unspent one
    /// (`otac_replayed`). Each issue then writes the run's live-code mark to the store before the code goes out.
    pub fn one_live_code(mut self, on: bool) -> Self {
        self.one_live_code = on;
        self
    }

    /// Carries codes in a cookie named `name` instead of the header, for browser flows where page script should
    /// never see them: `Set-Cookie: name=code; Path=<next step's path>; Max-Age=<lifetime>; HttpOnly; Secure;
    /// SameSite=Strict`, and the require side reads that cookie (two cookies of that name are `otac_malformed`).
    /// Every step that codes are issued for needs its [`Step::path`].
    pub fn cookie_transport(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Replaces the default problem+json error responses.
    pub fn error_responder(mut self, responder: impl ErrorResponder) -> Self {
        self.responder = Box::new(responder);
        self
    }

    /// Checks everything and builds the workflow.
    pub fn build(self) -> Result<Workflow, ConfigError> {
        let keys = self.keys.ok_or(ConfigError::NoKeys)?;
        let binding = self.binding.ok_or(ConfigError::BindingNotChosen)?;
        let replay = self.replay.ok_or(ConfigError::ReplayNotChosen)?;
        // Bindings and state fingerprints are keyed hashes: asymmetric and verify-only sets need a binding secret.
        let hashes =
            !matches!(binding.0, BindingKind::None) || self.steps.iter().any(|s| s.state.is_some());
        if hashes && !keys.has_binding_key() {
            return Err(ConfigError::BindingSecretRequired);
        }
        check_name(&self.name)?;
        let issuer = self.issuer.unwrap_or_else(|| "otac".to_owned());
        if issuer.is_empty() {
            return Err(ConfigError::InvalidSetting("issuer must not be empty"));
        }
        if self.lifetime.is_zero() || self.run_lifetime.is_zero() || self.lease.is_zero() {
            return Err(ConfigError::InvalidSetting(
                "lifetimes and leases must be positive",
            ));
        }
        if self.max_len < 128 {
            return Err(ConfigError::InvalidSetting(
                "max code length below 128 bytes",
            ));
        }
        if (self.revocation || self.one_live_code) && replay.0.is_none() {
            return Err(ConfigError::InvalidSetting(
                "revocation and one live code per run need a replay store",
            ));
        }
        let mut steps: Vec<StepConfig> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            check_name(&step.name)?;
            if steps.iter().any(|s| s.name == step.name) {
                return Err(ConfigError::DuplicateStep(step.name.clone()));
            }
            if step.consume == Consume::Replace && (!self.one_live_code || step.next.is_empty()) {
                return Err(ConfigError::InvalidSetting(
                    "Consume::Replace needs one_live_code(true) and a next step",
                ));
            }
            let lifetime = step.lifetime.unwrap_or(self.lifetime);
            if lifetime.is_zero() {
                return Err(ConfigError::InvalidSetting("lifetimes must be positive"));
            }
            steps.push(StepConfig {
                name: step.name.clone(),
                next: step.next.clone(),
                consume: step.consume,
                lifetime,
                is_success: step.issue_when,
                max_incoming: Duration::ZERO,
                starts_runs: step.entry,
                state: step.state.clone(),
                path: step.path.clone(),
            });
        }
        for i in 0..steps.len() {
            for next in steps[i].next.clone() {
                let target = steps
                    .iter()
                    .position(|s| s.name == next)
                    .ok_or(ConfigError::UnknownStep(next))?;
                let lifetime = steps[i].lifetime;
                let incoming = &mut steps[target].max_incoming;
                *incoming = (*incoming).max(lifetime);
            }
        }
        for step in &mut steps {
            step.starts_runs |= step.max_incoming.is_zero();
        }
        if let Some(name) = &self.cookie {
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            };
            if !token(name) {
                return Err(ConfigError::InvalidSetting(
                    "the cookie name is not an HTTP token",
                ));
            }
            for step in steps.iter().filter(|s| !s.max_incoming.is_zero()) {
                let path_ok = step.path.as_deref().is_some_and(|p| {
                    p.starts_with('/')
                        && p.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
                });
                if !path_ok {
                    return Err(ConfigError::InvalidSetting(
                        "with cookie transport every step that codes are issued for needs a Step::path starting with /",
                    ));
                }
            }
        }
        Ok(Workflow {
            inner: Arc::new(WorkflowInner {
                name: self.name,
                issuer,
                keys,
                binding,
                replay,
                steps,
                header: self.header,
                run_lifetime: self.run_lifetime,
                leeway: self.leeway,
                max_len: self.max_len,
                lease: self.lease,
                expose_header: self.expose_header,
                revocation: self.revocation,
                one_live_code: self.one_live_code,
                cookie: self.cookie,
                responder: Responder(self.responder),
            }),
        })
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::InvalidStepName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, MemoryStore};

    fn base() -> WorkflowBuilder {
        Workflow::builder("wf")
            .keys(KeySet::new(Key::hs256([9u8; 32]).unwrap()))
            .binding(Binding::none())
            .replay(Replay::store(MemoryStore::new(16)))
    }

    #[test]
    fn mermaid_graph_lists_steps_and_edges() {
        let wf = base()
            .step(Step::new("a").then("b").then("c"))
            .step(Step::new("b").consume(Consume::OnSuccess))
            .step(Step::new("c"))
            .build()
            .unwrap();
        let graph = wf.to_mermaid();
        assert!(graph.starts_with("flowchart LR\n"));
        assert!(graph.contains("s0[\"a\"]"));
        assert!(graph.contains("s1[\"b<br/><small>spent on success</small>\"]"));
        assert!(graph.contains("s0 -->|code| s1"));
        assert!(graph.contains("s0 -->|code| s2"));
    }

    #[test]
    fn unknown_next_step_is_a_build_error() {
        let err = base().step(Step::new("a").then("b")).build().unwrap_err();
        assert_eq!(err, ConfigError::UnknownStep("b".into()));
    }

    #[test]
    fn binding_and_replay_must_be_chosen() {
        let no_binding = Workflow::builder("wf")
            .keys(KeySet::new(Key::hs256([9u8; 32]).unwrap()))
            .replay(Replay::stateless())
            .build();
        assert_eq!(no_binding.unwrap_err(), ConfigError::BindingNotChosen);
        let no_replay = Workflow::builder("wf")
            .keys(KeySet::new(Key::hs256([9u8; 32]).unwrap()))
            .binding(Binding::none())
            .build();
        assert_eq!(no_replay.unwrap_err(), ConfigError::ReplayNotChosen);
    }

    #[test]
    fn duplicate_and_bad_step_names_are_refused() {
        assert!(matches!(
            base().step(Step::new("a")).step(Step::new("a")).build(),
            Err(ConfigError::DuplicateStep(_))
        ));
        assert!(matches!(
            base().step(Step::new("a b")).build(),
            Err(ConfigError::InvalidStepName(_))
        ));
    }

    #[test]
    fn incoming_lifetime_is_the_longest_of_the_issuers() {
        let wf = base()
            .step(Step::new("a").then("c").lifetime(Duration::from_secs(60)))
            .step(Step::new("b").then("c").lifetime(Duration::from_secs(120)))
            .step(Step::new("c"))
            .build()
            .unwrap();
        assert_eq!(wf.step_config(2).max_incoming, Duration::from_secs(120));
        assert_eq!(wf.next_steps("a").unwrap(), ["c"]);
        assert!(wf.next_steps("zz").is_err());
    }
}
