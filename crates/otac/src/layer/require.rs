//! The request side: [`RequireOtacLayer`] verifies the code of a step before the handler runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::engine::{Ticket, Verifier};
use crate::error::{ConfigError, OtacError};
use crate::store::{Outcome, StoreFuture};
use crate::verified::VerifiedOtac;
use crate::workflow::Workflow;

/// Requires a valid one-time authorization code for one step of a workflow.
///
/// A request without a valid code for this step never reaches the inner service: it is answered with the
/// workflow's error response (problem+json by default), which also carries the [`OtacError`] in its extensions.
/// A code that passes every check is spent (see [`Consume`](crate::Consume)) and the [`VerifiedOtac`] is put into
/// the request extensions for the handler, and into the response extensions for an [`IssueOtacLayer`] further out.
///
/// [`IssueOtacLayer`]: crate::IssueOtacLayer
#[derive(Clone, Debug)]
pub struct RequireOtacLayer {
    verifier: Arc<Verifier>,
}

impl RequireOtacLayer {
    /// Requires codes for `step` of `workflow`.
    ///
    /// # Panics
    ///
    /// When `workflow` has no step `step`: routes are wired at start-up, so this fails there. Use
    /// [`try_new`](Self::try_new) to handle it as an error.
    #[track_caller]
    pub fn new(workflow: &Workflow, step: &str) -> Self {
        match Self::try_new(workflow, step) {
            Ok(layer) => layer,
            Err(err) => panic!("RequireOtacLayer: {err}"),
        }
    }

    /// Requires codes for `step` of `workflow`, or says why it cannot.
    pub fn try_new(workflow: &Workflow, step: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            verifier: Arc::new(Verifier::new(workflow, step)?),
        })
    }

    /// The verifier this layer uses.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl<S> Layer<S> for RequireOtacLayer {
    type Service = RequireOtac<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireOtac {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// The service of [`RequireOtacLayer`].
#[derive(Clone, Debug)]
pub struct RequireOtac<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireOtac<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = self.verifier.span();
        let entered = span.enter();
        let (mut parts, body) = req.into_parts();
        let verified = match self.verifier.verify(&parts) {
            Ok(verified) => verified,
            Err(err) => {
                drop(entered);
                return ResponseFuture::reject(&self.verifier, err, span);
            }
        };
        parts.extensions.insert(verified.clone());
        let req = Request::from_parts(parts, body);
        let lookup = self.verifier.state_lookup(&verified);
        let verifier = Arc::clone(&self.verifier);
        if lookup.is_none() && !verifier.uses_store() {
            // Stateless and not state-bound: nothing to await before the handler.
            let state = State::Calling {
                future: self.inner.call(req),
                ticket: None,
                verified: Some(verified),
            };
            drop(entered);
            return ResponseFuture {
                state,
                verifier,
                span,
            };
        }
        // The service that was driven to readiness goes into the future; a clone stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let state = match lookup {
            Some(lookup) => State::Checking {
                lookup,
                pending: Some((inner, req)),
                verified: Some(verified),
            },
            None => start_use(&verifier, inner, req, verified),
        };
        drop(entered);
        ResponseFuture {
            state,
            verifier,
            span,
        }
    }
}

/// After every check before the handler: spend the code (or reserve it), or call the handler right away.
fn start_use<S, ReqBody>(
    verifier: &Verifier,
    mut inner: S,
    req: Request<ReqBody>,
    verified: VerifiedOtac,
) -> State<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    match verifier.consume(&verified) {
        None => State::Calling {
            future: inner.call(req),
            ticket: None,
            verified: Some(verified),
        },
        Some((store, ticket)) => State::Spending {
            store,
            ticket: Some(ticket),
            pending: Some((inner, req)),
            verified: Some(verified),
        },
    }
}

/// The response future of [`RequireOtac`].
#[pin_project]
pub struct ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    state: State<S, ReqBody>,
    verifier: Arc<Verifier>,
    span: tracing::Span,
}

// The request waits inside the future while the store answers; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[pin_project(project = StateProj)]
enum State<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    Rejected {
        error: Option<OtacError>,
    },
    Checking {
        lookup: StoreFuture<Option<Vec<u8>>>,
        pending: Option<(S, Request<ReqBody>)>,
        verified: Option<VerifiedOtac>,
    },
    Spending {
        store: StoreFuture<Outcome>,
        ticket: Option<Ticket>,
        pending: Option<(S, Request<ReqBody>)>,
        verified: Option<VerifiedOtac>,
    },
    Calling {
        #[pin]
        future: S::Future,
        ticket: Option<Ticket>,
        verified: Option<VerifiedOtac>,
    },
    Finishing {
        store: StoreFuture<()>,
        response: Option<S::Response>,
    },
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn reject(verifier: &Arc<Verifier>, error: OtacError, span: tracing::Span) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
            verifier: Arc::clone(verifier),
            span,
        }
    }
}

impl<S, ReqBody> std::fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pub(crate) fn rejection<B: From<Bytes>>(verifier: &Verifier, error: OtacError) -> Response<B> {
    let mut response = verifier.reject(&error).map(B::from);
    response.extensions_mut().insert(error);
    response
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Rejected { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| OtacError::store("polled after completion"));
                    return Poll::Ready(Ok(rejection(this.verifier, error)));
                }
                StateProj::Checking {
                    lookup,
                    pending,
                    verified,
                } => {
                    let current = ready!(Pin::new(lookup).poll(cx));
                    let (Some((inner, req)), Some(code)) = (pending.take(), verified.take()) else {
                        return Poll::Ready(Ok(rejection(
                            this.verifier,
                            OtacError::store("polled after completion"),
                        )));
                    };
                    if let Err(err) = this.verifier.check_state(&code, current) {
                        return Poll::Ready(Ok(rejection(this.verifier, err)));
                    }
                    let next = start_use(this.verifier, inner, req, code);
                    this.state.set(next);
                }
                StateProj::Spending {
                    store,
                    ticket,
                    pending,
                    verified,
                } => {
                    let outcome = ready!(Pin::new(store).poll(cx));
                    let Some(checked) = ticket.take() else {
                        return Poll::Ready(Ok(rejection(
                            this.verifier,
                            OtacError::store("polled after completion"),
                        )));
                    };
                    if let Err(err) = checked.check(outcome) {
                        return Poll::Ready(Ok(rejection(this.verifier, err)));
                    }
                    let Some((mut inner, req)) = pending.take() else {
                        return Poll::Ready(Ok(rejection(
                            this.verifier,
                            OtacError::store("polled after completion"),
                        )));
                    };
                    let verified = verified.take();
                    let future = inner.call(req);
                    this.state.set(State::Calling {
                        future,
                        ticket: Some(checked),
                        verified,
                    });
                }
                StateProj::Calling {
                    future,
                    ticket,
                    verified,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    this.verifier.record_pass();
                    if let Some(verified) = verified.take() {
                        response.extensions_mut().insert(verified);
                    }
                    let finish = ticket
                        .take()
                        .and_then(|t| t.finish(response.status(), response.extensions()));
                    match finish {
                        None => return Poll::Ready(Ok(response)),
                        Some(store) => this.state.set(State::Finishing {
                            store,
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Finishing { store, response } => {
                    if let Err(err) = ready!(Pin::new(store).poll(cx)) {
                        // The handler already answered; a failed commit leaves the reservation, which keeps the code
                        // unusable until the lease ends.
                        tracing::error!(
                            reason = err.reason(),
                            "otac: finishing a one-time use failed"
                        );
                    }
                    let Some(response) = response.take() else {
                        return Poll::Ready(Ok(rejection(
                            this.verifier,
                            OtacError::store("polled after completion"),
                        )));
                    };
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
