//! The response side: [`IssueOtacLayer`] adds the code for the next step(s) to a successful response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::engine::{IssueContext, Issuer};
use crate::error::{ConfigError, OtacError};
use crate::store::StoreFuture;
use crate::verified::VerifiedOtac;
use crate::workflow::Workflow;

/// Issues a one-time authorization code when one step of a workflow succeeds.
///
/// On a success response (2xx unless the step says otherwise) the code header is added, with
/// `Cache-Control: no-store`; the body is untouched and never buffered. Error responses get no code. The code
/// continues the run of the code the request consumed (same run id, start time, binding and custom claims) and
/// adds the [`OtacClaims`](crate::OtacClaims) the handler put into the response extensions.
///
/// If a code cannot be issued (for example the handler named no subject to bind to), the response goes out without
/// one, a warning is logged, and the [`OtacError`](crate::OtacError) is put into the response extensions.
#[derive(Clone, Debug)]
pub struct IssueOtacLayer {
    issuer: Arc<Issuer>,
}

impl IssueOtacLayer {
    /// Issues codes on the success of `step` of `workflow`, for its next step(s).
    ///
    /// # Panics
    ///
    /// When `workflow` has no step `step`, or that step has no next step: routes are wired at start-up, so this
    /// fails there. Use [`try_new`](Self::try_new) to handle it as an error.
    #[track_caller]
    pub fn new(workflow: &Workflow, step: &str) -> Self {
        match Self::try_new(workflow, step) {
            Ok(layer) => layer,
            Err(err) => panic!("IssueOtacLayer: {err}"),
        }
    }

    /// Issues codes on the success of `step` of `workflow`, or says why it cannot.
    pub fn try_new(workflow: &Workflow, step: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: Arc::new(Issuer::new(workflow, step)?),
        })
    }

    /// The issuer this layer uses.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }
}

impl<S> Layer<S> for IssueOtacLayer {
    type Service = IssueOtac<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IssueOtac {
            inner,
            issuer: Arc::clone(&self.issuer),
        }
    }
}

/// The service of [`IssueOtacLayer`].
#[derive(Clone, Debug)]
pub struct IssueOtac<S> {
    inner: S,
    issuer: Arc<Issuer>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IssueOtac<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = self.issuer.span();
        let entered = span.enter();
        let (parts, body) = req.into_parts();
        let context = self.issuer.prepare(&parts);
        let inner = self.inner.call(Request::from_parts(parts, body));
        drop(entered);
        ResponseFuture {
            span,
            inner,
            context,
            issuer: Arc::clone(&self.issuer),
            marking: None,
            held: None,
        }
    }
}

/// The response future of [`IssueOtac`].
#[pin_project]
pub struct ResponseFuture<F, ResBody> {
    #[pin]
    inner: F,
    span: tracing::Span,
    context: IssueContext,
    issuer: Arc<Issuer>,
    /// The write of the run's live-code mark, and the response waiting for it.
    marking: Option<StoreFuture<()>>,
    held: Option<Response<ResBody>>,
}

impl<F, ResBody> std::fmt::Debug for ResponseFuture<F, ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            if let Some(mark) = this.marking.as_mut() {
                let written = ready!(Pin::new(mark).poll(cx));
                *this.marking = None;
                if let Some(mut response) = this.held.take() {
                    if let Err(err) = written {
                        // The code cannot be the run's live one: take it back rather than hand out a dead code.
                        let err = OtacError::from(err);
                        this.issuer.withdraw(response.headers_mut(), &err);
                        response.extensions_mut().insert(err);
                    }
                    return Poll::Ready(Ok(response));
                }
            }
            let response = ready!(this.inner.as_mut().poll(cx))?;
            let (mut parts, body) = response.into_parts();
            this.context.carry(parts.extensions.get::<VerifiedOtac>());
            let pending = match this.issuer.complete(
                this.context,
                parts.status,
                &mut parts.headers,
                &parts.extensions,
            ) {
                Ok(pending) => pending,
                Err(err) => {
                    parts.extensions.insert(err);
                    None
                }
            };
            let response = Response::from_parts(parts, body);
            match pending {
                None => return Poll::Ready(Ok(response)),
                Some(mark) => {
                    *this.marking = Some(mark);
                    *this.held = Some(response);
                }
            }
        }
    }
}
