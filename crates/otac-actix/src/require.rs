//! The request side: [`RequireOtacLayer`] verifies the code of a step before the handler runs.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage as _};
use otac::store::{Outcome, StoreFuture};
use otac::{ConfigError, OtacError, Principal, Ticket, VerifiedOtac, Verifier, Workflow};
use pin_project::pin_project;

use crate::compat::{self, CopyFn};

/// Requires a valid one-time authorization code for one step of a workflow: the actix-web counterpart of
/// [`otac::RequireOtacLayer`], with the same constructors and the same checks (it calls the same
/// [`Verifier`]).
///
/// Wrap a [`web::resource`](actix_web::web::resource), a [`web::scope`](actix_web::web::scope) or the whole `App`
/// with it. A request without a valid code for this step never reaches the inner service: it is answered with the
/// workflow's error response (problem+json by default), whose extensions also hold the [`OtacError`]. A code that
/// passes every check is spent (see [`Consume`](otac::Consume); with `Consume::OnSuccess` it is reserved before the
/// handler, committed on a success status and released otherwise), and the [`VerifiedOtac`] goes into the request
/// extensions for the [`Otac`](crate::Otac) extractor, and into the response extensions for an
/// [`IssueOtacLayer`](crate::IssueOtacLayer) further out.
///
/// # Principals
///
/// [`Binding::principal::<P>()`](otac::Binding::principal) reads `P` from the request extensions of the core's
/// `http` 1 request. Actix keeps its own extensions, so tell the middleware to carry `P` over with
/// [`principal::<P>()`](Self::principal), and wrap the authentication middleware that inserts `P` *outside* this
/// one (in actix, the middleware wrapped last runs first).
#[derive(Clone, Debug)]
pub struct RequireOtacLayer {
    verifier: Arc<Verifier>,
    carry: Vec<CopyFn>,
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
            carry: Vec::new(),
        })
    }

    /// Carries the principal `P` that an authentication middleware put into the actix request extensions over to
    /// the caller binding ([`Binding::principal::<P>()`](otac::Binding::principal)).
    pub fn principal<P: Principal>(self) -> Self {
        self.extension::<P>()
    }

    /// Carries any extension `T` of the actix request over to the request parts that the caller binding sees (for
    /// a [`Binding::from_fn`](otac::Binding::from_fn) that reads extensions).
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self) -> Self {
        self.carry.push(compat::copy_extension::<T>);
        self
    }

    /// The verifier this middleware uses.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireOtacLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequireOtac<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireOtac {
            service: Rc::new(service),
            verifier: Arc::clone(&self.verifier),
            carry: self.carry.clone().into(),
        }))
    }
}

/// The service of [`RequireOtacLayer`].
pub struct RequireOtac<S> {
    service: Rc<S>,
    verifier: Arc<Verifier>,
    carry: Rc<[CopyFn]>,
}

impl<S> std::fmt::Debug for RequireOtac<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireOtac")
            .field("step", &self.verifier.step())
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for RequireOtac<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<S, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let span = self.verifier.span();
        let state = span.in_scope(|| self.start(req));
        ResponseFuture {
            state,
            verifier: Arc::clone(&self.verifier),
            span,
        }
    }
}

impl<S, B> RequireOtac<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    /// Verifies the request's code; a rejection is answered here, before the inner service.
    fn start(&self, req: ServiceRequest) -> State<S, B> {
        let parts = compat::request_parts(req.request(), &self.carry);
        let verified = match self.verifier.verify(&parts) {
            Ok(verified) => verified,
            Err(err) => {
                return State::Rejected {
                    response: Some(rejection(&self.verifier, req, err)),
                };
            }
        };
        drop(parts);
        req.extensions_mut().insert(verified.clone());
        match self.verifier.state_lookup(&verified) {
            Some(lookup) => State::Checking {
                lookup,
                pending: Some((Rc::clone(&self.service), req)),
                verified: Some(verified),
            },
            None => start_use(&self.verifier, &self.service, req, verified),
        }
    }
}

/// After every check before the handler: spend (or reserve) the code, or call the handler right away.
fn start_use<S, B>(
    verifier: &Verifier,
    service: &Rc<S>,
    req: ServiceRequest,
    verified: VerifiedOtac,
) -> State<S, B>
where
    S: Service<ServiceRequest>,
{
    match verifier.consume(&verified) {
        None => State::Calling {
            future: service.call(req),
            ticket: None,
            verified: Some(verified),
        },
        Some((store, ticket)) => State::Spending {
            store,
            ticket: Some(ticket),
            pending: Some((Rc::clone(service), req)),
            verified: Some(verified),
        },
    }
}

/// The workflow's error response for `error`, with the error in its extensions.
fn rejection<B>(
    verifier: &Verifier,
    req: ServiceRequest,
    error: OtacError,
) -> ServiceResponse<EitherBody<B>> {
    let mut response = compat::response(verifier.reject(&error));
    response.extensions_mut().insert(error);
    req.into_response(response).map_into_right_body()
}

/// The response future of [`RequireOtac`].
#[pin_project]
pub struct ResponseFuture<S, B>
where
    S: Service<ServiceRequest>,
{
    #[pin]
    state: State<S, B>,
    verifier: Arc<Verifier>,
    span: tracing::Span,
}

#[pin_project(project = StateProj)]
enum State<S, B>
where
    S: Service<ServiceRequest>,
{
    /// The request was rejected before the handler.
    Rejected {
        response: Option<ServiceResponse<EitherBody<B>>>,
    },
    /// Waiting for the current state fingerprint of a state-bound step.
    Checking {
        lookup: StoreFuture<Option<Vec<u8>>>,
        pending: Option<(Rc<S>, ServiceRequest)>,
        verified: Option<VerifiedOtac>,
    },
    /// Waiting for the replay store to spend or reserve the code.
    Spending {
        store: StoreFuture<Outcome>,
        ticket: Option<Ticket>,
        pending: Option<(Rc<S>, ServiceRequest)>,
        verified: Option<VerifiedOtac>,
    },
    /// The handler runs.
    Calling {
        #[pin]
        future: S::Future,
        ticket: Option<Ticket>,
        verified: Option<VerifiedOtac>,
    },
    /// Committing or releasing a reservation after the handler answered.
    Finishing {
        store: StoreFuture<()>,
        result: Option<Result<ServiceResponse<B>, Error>>,
    },
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<ServiceRequest>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Rejected { response } => {
                    return Poll::Ready(response.take().ok_or_else(polled_after_completion));
                }
                StateProj::Checking {
                    lookup,
                    pending,
                    verified,
                } => {
                    let current = ready!(Pin::new(lookup).poll(cx));
                    let (Some((service, req)), Some(code)) = (pending.take(), verified.take())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Err(err) = this.verifier.check_state(&code, current) {
                        return Poll::Ready(Ok(rejection(this.verifier, req, err)));
                    }
                    let next = start_use(this.verifier, &service, req, code);
                    this.state.set(next);
                }
                StateProj::Spending {
                    store,
                    ticket,
                    pending,
                    verified,
                } => {
                    let outcome = ready!(Pin::new(store).poll(cx));
                    let (Some(checked), Some((service, req))) = (ticket.take(), pending.take())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Err(err) = checked.check(outcome) {
                        return Poll::Ready(Ok(rejection(this.verifier, req, err)));
                    }
                    let verified = verified.take();
                    let future = service.call(req);
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
                    let mut result = ready!(future.poll(cx));
                    let (status, extensions) = match &mut result {
                        Ok(response) => {
                            this.verifier.record_pass();
                            if let Some(verified) = verified.take() {
                                response.response_mut().extensions_mut().insert(verified);
                            }
                            let extensions =
                                compat::response_extensions(&response.response().extensions());
                            (response.status(), extensions)
                        }
                        // An error the inner service did not turn into a response yet: judge it by its status.
                        Err(err) => (
                            err.as_response_error().status_code(),
                            http::Extensions::new(),
                        ),
                    };
                    let finish = ticket
                        .take()
                        .and_then(|t| t.finish(compat::status(status), &extensions));
                    match finish {
                        None => {
                            return Poll::Ready(result.map(ServiceResponse::map_into_left_body));
                        }
                        Some(store) => this.state.set(State::Finishing {
                            store,
                            result: Some(result),
                        }),
                    }
                }
                StateProj::Finishing { store, result } => {
                    if let Err(err) = ready!(Pin::new(store).poll(cx)) {
                        // The handler already answered; a failed commit leaves the reservation, which keeps the code
                        // unusable until the lease ends.
                        tracing::error!(
                            reason = err.reason(),
                            "otac: finishing a one-time use failed"
                        );
                    }
                    let result = result.take().ok_or_else(polled_after_completion)?;
                    return Poll::Ready(result.map(ServiceResponse::map_into_left_body));
                }
            }
        }
    }
}

fn polled_after_completion() -> Error {
    actix_web::error::ErrorInternalServerError("otac: response future polled after completion")
}
