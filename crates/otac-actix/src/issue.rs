//! The response side: [`IssueOtacLayer`] adds the code for the next step(s) to a successful response.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use http::HeaderMap;
use otac::store::StoreFuture;
use otac::{ConfigError, IssueContext, Issuer, OtacError, Principal, VerifiedOtac, Workflow};
use pin_project::pin_project;

use crate::compat::{self, CopyFn};

/// Issues a one-time authorization code when one step of a workflow succeeds: the actix-web counterpart of
/// [`otac::IssueOtacLayer`], with the same constructors (it calls the same [`Issuer`]).
///
/// On a success response (2xx unless the step says otherwise) the code header is added, with
/// `Cache-Control: no-store`; the body is untouched and never buffered. Error responses get no code. The code
/// continues the run of the code the request consumed (verified by a [`RequireOtacLayer`](crate::RequireOtacLayer)
/// inside or outside this one) and adds the [`OtacClaims`](otac::OtacClaims) the handler put into the response extensions, e.g. with
/// [`AttachClaims`](crate::AttachClaims).
///
/// If a code cannot be issued (for example the handler named no subject to bind to), the response goes out without
/// one, a warning is logged, and the [`OtacError`] is put into the response extensions.
///
/// For a request-derived caller binding on a principal, see [`principal`](Self::principal).
#[derive(Clone, Debug)]
pub struct IssueOtacLayer {
    issuer: Arc<Issuer>,
    carry: Vec<CopyFn>,
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
            carry: Vec::new(),
        })
    }

    /// Carries the principal `P` that an authentication middleware put into the actix request extensions over to
    /// the caller binding ([`Binding::principal::<P>()`](otac::Binding::principal)). Wrap the authentication
    /// middleware outside this one.
    pub fn principal<P: Principal>(self) -> Self {
        self.extension::<P>()
    }

    /// Carries any extension `T` of the actix request over to the request parts that the caller binding sees.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self) -> Self {
        self.carry.push(compat::copy_extension::<T>);
        self
    }

    /// The issuer this middleware uses.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }
}

impl<S, B> Transform<S, ServiceRequest> for IssueOtacLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = IssueOtac<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(IssueOtac {
            service,
            issuer: Arc::clone(&self.issuer),
            carry: self.carry.clone().into(),
        }))
    }
}

/// The service of [`IssueOtacLayer`].
pub struct IssueOtac<S> {
    service: S,
    issuer: Arc<Issuer>,
    carry: Rc<[CopyFn]>,
}

impl<S> std::fmt::Debug for IssueOtac<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOtac")
            .field("step", &self.issuer.step())
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for IssueOtac<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let span = self.issuer.span();
        let (context, inner) = span.in_scope(|| {
            // Without a request-derived binding only the verified code is needed, not a copy of every header.
            let parts = if self.issuer.reads_request() {
                compat::request_parts(req.request(), &self.carry)
            } else {
                compat::extensions_only(req.request())
            };
            let context = self.issuer.prepare(&parts);
            (context, self.service.call(req))
        });
        ResponseFuture {
            inner,
            span,
            context,
            issuer: Arc::clone(&self.issuer),
            marking: None,
            held: None,
        }
    }
}

/// The response future of [`IssueOtac`].
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    inner: F,
    span: tracing::Span,
    context: IssueContext,
    issuer: Arc<Issuer>,
    /// The write of the run's live-code mark, and the response and its new headers waiting for it.
    marking: Option<StoreFuture<()>>,
    held: Option<(ServiceResponse<B>, HeaderMap)>,
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<B>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            if let Some(mark) = this.marking.as_mut() {
                let written = ready!(Pin::new(mark).poll(cx));
                *this.marking = None;
                let Some((mut response, mut headers)) = this.held.take() else {
                    return Poll::Ready(Err(actix_web::error::ErrorInternalServerError(
                        "otac: response future polled after completion",
                    )));
                };
                if let Err(err) = written {
                    // The code cannot be the run's live one: take it back rather than hand out a dead code.
                    let err = OtacError::from(err);
                    this.issuer.withdraw(&mut headers, &err);
                    response.response_mut().extensions_mut().insert(err);
                }
                compat::replace_headers(response.headers_mut(), headers);
                return Poll::Ready(Ok(response));
            }
            let mut response = ready!(this.inner.as_mut().poll(cx))?;
            let status = compat::status(response.status());
            if !this.issuer.is_success(status) {
                return Poll::Ready(Ok(response));
            }
            let (extensions, verified) = {
                let actix = response.response().extensions();
                // A require middleware inside this one reports the code it verified on the response.
                (
                    compat::response_extensions(&actix),
                    actix.get::<VerifiedOtac>().cloned(),
                )
            };
            this.context.carry(verified.as_ref());
            // The core edits `http` 1 headers: hand it the response's, and put them back once it is done.
            let mut headers = compat::headers_to_http(response.headers());
            match this
                .issuer
                .complete(this.context, status, &mut headers, &extensions)
            {
                Ok(None) => compat::replace_headers(response.headers_mut(), headers),
                Ok(Some(mark)) => {
                    *this.marking = Some(mark);
                    *this.held = Some((response, headers));
                    continue;
                }
                Err(err) => {
                    response.response_mut().extensions_mut().insert(err);
                }
            }
            return Poll::Ready(Ok(response));
        }
    }
}
