//! The consumer onboarding workflow on actix-web: the same HTTP contract as [`crate::onboarding`] (axum), on the
//! same [`Directory`] and [`Workflow`].
//!
//! | request | response |
//! |---|---|
//! | `POST /invitations` `{"email","mobile"}` | 201 `{"user_id"}`; queues an email code |
//! | `GET /_dev/outbox?user_id=…` | the messages sent to the user, oldest first |
//! | `POST /verify-email` `{"user_id","code"}` | 200 + code header (for `verify-mobile`, bound to the user) |
//! | `POST /verify-mobile` + code header, `{"code"}` | 200 + code header (for `set-password`); the third wrong SMS code aborts the run (429, then `otac_run_revoked`) |
//! | `POST /set-password` + code header, `{"password"}` | 204; the user is active |
//! | `GET /users/{id}` | `{"user_id","status","email_verified","mobile_verified"}` |
//!
//! Where the frameworks differ by default, this module follows axum: JSON bodies of the wrong content type answer
//! 415, syntax errors 400, bodies of the wrong shape 422; CORS answers preflights itself and never refuses a
//! request.
//!
//! Start it from a test with [`spawn`]: it runs in a thread of its own (its own actix system), so it works from
//! any test, `#[tokio::test]` of either flavour or a plain `#[test]`.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{
    Server, ServerHandle, Service, ServiceRequest, ServiceResponse, Transform, forward_ready,
};
use actix_web::error::{InternalError, JsonPayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Data, Json, Path, Query};
use actix_web::{App, Either, Error, HttpRequest, HttpResponse, HttpServer, ResponseError};
use metrics_exporter_prometheus::PrometheusHandle;
use otac::{OtacClaims, Workflow};
use otac_actix::{AbortRun, AttachClaims, IssueOtacLayer, Otac, RequireOtacLayer};

use crate::domain::{
    Directory, DomainError, EmailVerification, Invitation, MobileVerification, NewPassword,
    OutboxQuery,
};

/// A [`DomainError`] as an actix response: its status and JSON body.
#[derive(Debug)]
struct Failure(DomainError);

impl From<DomainError> for Failure {
    fn from(err: DomainError) -> Self {
        Self(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code())
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(err) = self.0.otac_error() {
            return otac_actix::OtacRejection(err).error_response();
        }
        HttpResponse::build(self.status_code()).json(self.0.body())
    }
}

async fn invite(dir: Data<Directory>, body: Json<Invitation>) -> Result<HttpResponse, Failure> {
    let user_id = dir.invite(&body.email, &body.mobile)?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "user_id": user_id })))
}

async fn outbox(dir: Data<Directory>, q: Query<OutboxQuery>) -> HttpResponse {
    HttpResponse::Ok().json(dir.outbox(&q.user_id))
}

async fn verify_email(
    dir: Data<Directory>,
    body: Json<EmailVerification>,
) -> Result<AttachClaims<HttpResponse>, Failure> {
    dir.verify_email(&body.user_id, &body.code)?;
    // The next code is bound to this user, and tells the next step who it is.
    let claims = OtacClaims::new()
        .subject(body.user_id.clone())
        .claim("user_id", body.user_id.clone());
    Ok(AttachClaims(
        claims,
        HttpResponse::Ok()
            .json(serde_json::json!({ "user_id": body.user_id, "email_verified": true })),
    ))
}

/// The user id the code names. Codes of this workflow always carry it; one without is refused like a mismatch.
fn user_of(otac: &Otac) -> Result<String, DomainError> {
    otac.claim::<String>("user_id")
        .filter(|id| otac.subject_is(id))
        .ok_or(DomainError::NotBound)
}

async fn verify_mobile(
    dir: Data<Directory>,
    otac: Otac,
    body: Json<MobileVerification>,
) -> Result<Either<HttpResponse, AbortRun<HttpResponse>>, Failure> {
    let user_id = user_of(&otac)?;
    match dir.verify_mobile(&user_id, &body.code) {
        Ok(()) => Ok(Either::Left(HttpResponse::Ok().json(
            serde_json::json!({ "user_id": user_id, "mobile_verified": true }),
        ))),
        // Too many wrong SMS codes: the run is over, its codes answer `otac_run_revoked` from now on.
        Err(err @ DomainError::TooManyAttempts) => {
            Ok(Either::Right(AbortRun(Failure(err).error_response())))
        }
        Err(err) => Err(err.into()),
    }
}

async fn set_password(
    dir: Data<Directory>,
    otac: Otac,
    body: Json<NewPassword>,
) -> Result<HttpResponse, Failure> {
    let user_id = user_of(&otac)?;
    dir.set_password(&user_id, &body.password)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn user(dir: Data<Directory>, id: Path<String>) -> Result<HttpResponse, Failure> {
    dir.user(&id)
        .map(|u| HttpResponse::Ok().json(u))
        .ok_or(Failure(DomainError::UnknownUser))
}

fn plain(status: StatusCode, text: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// JSON body errors with axum's statuses: 415 for the content type, 422 for the shape, 400 for the syntax.
fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> Error {
    let response = match &err {
        JsonPayloadError::ContentType => plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`".into(),
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        ),
        JsonPayloadError::Deserialize(e) => plain(
            StatusCode::BAD_REQUEST,
            format!("Failed to parse the request body as JSON: {e}"),
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Failed to buffer the request body: length limit exceeded".into(),
        ),
        other => plain(other.status_code(), other.to_string()),
    };
    InternalError::from_response(err, response).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> Error {
    let reason = match &err {
        QueryPayloadError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    let response = plain(
        StatusCode::BAD_REQUEST,
        format!("Failed to deserialize query string: {reason}"),
    );
    InternalError::from_response(err, response).into()
}

/// Registers the onboarding service for `workflow` (see [`crate::config::onboarding_workflow`]) on `directory`:
/// `App::new().configure(onboarding_actix::configure(&workflow, directory))`. The closure can be cloned into the
/// factory of `HttpServer::new`, which calls it once per worker; every worker shares the directory and the
/// workflow's replay store.
pub fn configure(
    workflow: &Workflow,
    directory: Directory,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    let workflow = workflow.clone();
    let openapi = crate::openapi::onboarding_openapi_json(&workflow);
    move |cfg: &mut web::ServiceConfig| {
        let wf = &workflow;
        let openapi = openapi.clone();
        cfg.app_data(Data::new(directory.clone()))
            .app_data(web::JsonConfig::default().error_handler(json_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .service(web::resource("/invitations").route(web::post().to(invite)))
            .service(
                web::resource("/_dev/outbox")
                    .route(web::get().to(outbox))
                    .route(web::head().to(outbox)),
            )
            // The middleware wrap the route, not the resource: like axum's `route_layer`, a request with another
            // method gets 405 without a code check. On `verify-mobile` the require middleware is wrapped last, so
            // it runs first and a rejected request never reaches the issuer.
            .service(
                web::resource("/verify-email").route(
                    web::post()
                        .to(verify_email)
                        .wrap(IssueOtacLayer::new(wf, "verify-email")),
                ),
            )
            .service(
                web::resource("/verify-mobile").route(
                    web::post()
                        .to(verify_mobile)
                        .wrap(IssueOtacLayer::new(wf, "verify-mobile"))
                        .wrap(RequireOtacLayer::new(wf, "verify-mobile")),
                ),
            )
            .service(
                web::resource("/set-password").route(
                    web::post()
                        .to(set_password)
                        .wrap(RequireOtacLayer::new(wf, "set-password")),
                ),
            )
            .service(
                web::resource("/users/{id}")
                    .route(web::get().to(user))
                    .route(web::head().to(user)),
            )
            .service(web::resource("/openapi.json").route(web::get().to(move || {
                let openapi = openapi.clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(openapi)
                }
            })));
    }
}

/// CORS for a browser page on one origin, as [`crate::onboarding::cors`] configures it for axum: preflights
/// (`OPTIONS`) are answered here and allow `GET`/`POST`, `Content-Type` and the code header; other responses
/// expose the code header. `Access-Control-Allow-Origin` always names that one origin (the browser compares it with
/// the page's), as tower-http's `AllowOrigin::exact` does. [`Cors::disabled`] passes everything through.
#[derive(Clone, Debug)]
pub struct Cors {
    rules: Option<Arc<CorsRules>>,
}

#[derive(Debug)]
struct CorsRules {
    origin: HeaderValue,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    vary: HeaderValue,
}

impl Cors {
    /// No CORS headers, no preflight handling.
    pub fn disabled() -> Self {
        Self { rules: None }
    }
}

/// CORS for a browser page on `origin` (e.g. `http://127.0.0.1:8080`), or an error naming the bad origin.
pub fn cors(workflow: &Workflow, origin: &str) -> Result<Cors, String> {
    let bad = |what: &str| format!("{what} is not a valid header value");
    let origin_value = HeaderValue::from_str(origin)
        .map_err(|_| format!("OTAC_CORS_ORIGIN `{origin}` is not valid"))?;
    let code_header = workflow.header().as_str();
    Ok(Cors {
        rules: Some(Arc::new(CorsRules {
            origin: origin_value,
            allow_methods: HeaderValue::from_static("GET,POST"),
            allow_headers: HeaderValue::from_str(&format!("content-type,{code_header}"))
                .map_err(|_| bad("the code header name"))?,
            expose_headers: HeaderValue::from_str(code_header)
                .map_err(|_| bad("the code header name"))?,
            vary: HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        })),
    })
}

impl<S, B> Transform<S, ServiceRequest> for Cors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = CorsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(CorsService {
            service: Rc::new(service),
            rules: self.rules.clone(),
        }))
    }
}

/// The service of [`Cors`].
pub struct CorsService<S> {
    service: Rc<S>,
    rules: Option<Arc<CorsRules>>,
}

impl<S> fmt::Debug for CorsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsService")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for CorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<Result<Self::Response, Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let Some(rules) = self.rules.clone() else {
            let call = self.service.call(req);
            return Box::pin(async move { call.await.map(ServiceResponse::map_into_left_body) });
        };
        if req.method() == Method::OPTIONS {
            let mut preflight = HttpResponse::Ok();
            preflight
                .insert_header((header::VARY, rules.vary.clone()))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    rules.allow_methods.clone(),
                ))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    rules.allow_headers.clone(),
                ));
            preflight.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, rules.origin.clone()));
            let response = req.into_response(preflight.finish()).map_into_right_body();
            return Box::pin(ready(Ok(response)));
        }
        let call = self.service.call(req);
        Box::pin(async move {
            let mut response = call.await?;
            let headers = response.headers_mut();
            headers.append(header::VARY, rules.vary.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                rules.expose_headers.clone(),
            );
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, rules.origin.clone());
            Ok(response.map_into_left_body())
        })
    }
}

/// Ends every request after [`crate::onboarding::REQUEST_TIMEOUT`] with 408, dropping the handler: well inside the
/// reservation lease of consume-on-success (a handler still running when its lease ran out would let a second
/// request with the same code in).
async fn request_timeout(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    match tokio::time::timeout(crate::onboarding::REQUEST_TIMEOUT, next.call(req)).await {
        Ok(res) => res,
        Err(_) => Err(actix_web::error::ErrorRequestTimeout("request timeout")),
    }
}

fn http_server(
    workflow: &Workflow,
    directory: Directory,
    cors_origin: Option<&str>,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    for_tests: bool,
) -> io::Result<Server> {
    let cors = match cors_origin {
        Some(origin) => {
            cors(workflow, origin).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        }
        None => Cors::disabled(),
    };
    let configure = configure(workflow, directory);
    let mut server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .wrap(actix_web::middleware::from_fn(request_timeout))
            .wrap(cors.clone())
            .configure(configure.clone())
            .configure(move |cfg| {
                if let Some(handle) = metrics {
                    cfg.service(
                        web::resource("/metrics")
                            .route(web::get().to(move || ready(handle.render()))),
                    );
                }
            })
    })
    .listen(listener)?;
    if for_tests {
        // No OS signal handlers in a test process (Ctrl-C must still end it), and few threads per server.
        server = server.disable_signals().workers(2);
    }
    Ok(server.run())
}

/// The onboarding server of `cargo run --example onboarding-actix` on `listener`, with CORS for `cors_origin` if
/// given, and otac's Prometheus metrics at `GET /metrics` (installing the process-wide recorder, see
/// [`crate::metrics::prometheus_handle`]). It stops gracefully on Ctrl-C; await it inside an actix system
/// (`actix_rt::System::new().block_on(..)`) or a Tokio runtime.
pub fn server(
    workflow: &Workflow,
    directory: Directory,
    cors_origin: Option<&str>,
    listener: TcpListener,
) -> io::Result<Server> {
    let metrics = crate::metrics::prometheus_handle().map_err(io::Error::other)?;
    http_server(
        workflow,
        directory,
        cors_origin,
        listener,
        Some(metrics),
        false,
    )
}

/// Starts the onboarding server on `listener` in a thread of its own, with CORS for `cors_origin` if given (no
/// `/metrics`, no OS signal handlers), and returns at once: the listener already takes connections. Stopped when the handle is dropped (or by [`ActixServer::stop`]).
///
/// ```no_run
/// # fn demo(workflow: otac::Workflow) -> std::io::Result<()> {
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let server = otac_examples::onboarding_actix::spawn(
///     &workflow,
///     otac_examples::domain::Directory::default(),
///     None,
///     listener,
/// )?;
/// println!("listening on {}", server.url("/"));
/// # Ok(()) }
/// ```
pub fn spawn(
    workflow: &Workflow,
    directory: Directory,
    cors_origin: Option<&str>,
    listener: TcpListener,
) -> io::Result<ActixServer> {
    let addr = listener.local_addr()?;
    let server = http_server(workflow, directory, cors_origin, listener, None, true)?;
    let handle = server.handle();
    // The listener is bound and listening already: connections wait in its backlog until the workers run.
    let thread = std::thread::Builder::new()
        .name(format!("onboarding-actix {addr}"))
        .spawn(move || {
            if let Err(err) = actix_rt::System::new().block_on(server) {
                eprintln!("onboarding-actix on {addr}: {err}");
            }
        })?;
    Ok(ActixServer {
        addr,
        handle,
        thread: Some(thread),
    })
}

/// A running onboarding server started by [`spawn`].
#[derive(Debug)]
pub struct ActixServer {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl ActixServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and waits for its thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // `ServerHandle::stop` sends the command at once; its future only waits for the outcome.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ActixServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
