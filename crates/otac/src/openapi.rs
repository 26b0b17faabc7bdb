//! OpenAPI (feature `openapi`): declare the code header in a [`utoipa`] document, so generated docs and clients
//! know the contract.
//!
//! [`document`] adds the header as an `apiKey` security scheme named [`SCHEME`], marks the operations that require
//! a code (the security requirement, and their 401/403/503 problem responses) and the ones whose success responses
//! carry a code for the next step(s) (the response header).
//!
//! ```
//! use otac::openapi::{OtacRoute, document};
//! use otac::{Binding, Key, KeySet, MemoryStore, Replay, Step, Workflow};
//! use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
//! use utoipa::openapi::response::ResponseBuilder;
//! use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
//!
//! let workflow = Workflow::builder("onboarding")
//!     .keys(KeySet::new(Key::hs256(b"a secret of at least thirty-two bytes!")?))
//!     .binding(Binding::subject())
//!     .replay(Replay::store(MemoryStore::default()))
//!     .step(Step::new("verify-email").then("verify-mobile"))
//!     .step(Step::new("verify-mobile"))
//!     .build()?;
//! let ok = || OperationBuilder::new().response("200", ResponseBuilder::new().description("ok"));
//! let mut api = OpenApiBuilder::new()
//!     .info(InfoBuilder::new().title("onboarding").version("1").build())
//!     .paths(
//!         PathsBuilder::new()
//!             .path("/verify-email", PathItem::new(HttpMethod::Post, ok()))
//!             .path("/verify-mobile", PathItem::new(HttpMethod::Post, ok())),
//!     )
//!     .build();
//! document(
//!     &mut api,
//!     &workflow,
//!     &[
//!         OtacRoute::post("/verify-email").issues("verify-email"),
//!         OtacRoute::post("/verify-mobile").requires("verify-mobile"),
//!     ],
//! )?;
//! # Ok::<(), otac::ConfigError>(())
//! ```

use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Components, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};

use crate::engine::Issuer;
use crate::error::{ConfigError, OtacErrorKind};
use crate::workflow::Workflow;

/// The name of the security scheme [`document`] declares.
pub const SCHEME: &str = "otac";

/// One route of the document: its method and path, and the steps it requires and issues codes for.
#[derive(Debug, Clone)]
pub struct OtacRoute {
    method: http::Method,
    path: String,
    requires: Option<String>,
    issues: Option<String>,
}

impl OtacRoute {
    /// The operation `method` `path` (as written in the document's paths).
    pub fn new(method: http::Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            requires: None,
            issues: None,
        }
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(http::Method::POST, path)
    }

    /// The operation requires a code for `step` (it sits behind a `RequireOtacLayer` of that step).
    pub fn requires(mut self, step: impl Into<String>) -> Self {
        self.requires = Some(step.into());
        self
    }

    /// The operation's success responses carry a code issued on the success of `step` (an `IssueOtacLayer`).
    pub fn issues(mut self, step: impl Into<String>) -> Self {
        self.issues = Some(step.into());
        self
    }
}

/// Declares `workflow`'s code header in `openapi` for `routes`. Every route must be in the document and every step
/// in the workflow (an issuing step must have a next step), or nothing is changed and the mistake is returned.
pub fn document(
    openapi: &mut OpenApi,
    workflow: &Workflow,
    routes: &[OtacRoute],
) -> Result<(), ConfigError> {
    for route in routes {
        if let Some(step) = &route.requires {
            workflow.index(step)?;
        }
        if let Some(step) = &route.issues {
            Issuer::new(workflow, step)?;
        }
        if operation(openapi, &route.method, &route.path).is_none() {
            return Err(ConfigError::InvalidSetting(
                "an OtacRoute names an operation that the OpenAPI document does not have",
            ));
        }
    }
    let header = workflow.header().as_str().to_owned();
    openapi.components.get_or_insert_with(Components::new).add_security_scheme(
        SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            header.clone(),
            format!(
                "One-time authorization code of the `{}` workflow: send back the code the previous step's response \
                 carried in this header.",
                workflow.name()
            ),
        ))),
    );
    for route in routes {
        let Some(op) = operation(openapi, &route.method, &route.path) else {
            continue;
        };
        if let Some(step) = &route.requires {
            require(op, workflow, step);
        }
        if let Some(step) = &route.issues {
            let next = workflow.next_steps(step)?.join(", ");
            issue(op, &header, &next);
        }
    }
    Ok(())
}

fn operation<'a>(
    openapi: &'a mut OpenApi,
    method: &http::Method,
    path: &str,
) -> Option<&'a mut Operation> {
    let item = openapi.paths.paths.get_mut(path)?;
    let slot = match *method {
        http::Method::GET => &mut item.get,
        http::Method::POST => &mut item.post,
        http::Method::PUT => &mut item.put,
        http::Method::PATCH => &mut item.patch,
        http::Method::DELETE => &mut item.delete,
        _ => return None,
    };
    slot.as_mut()
}

fn require(op: &mut Operation, workflow: &Workflow, step: &str) {
    op.security
        .get_or_insert_with(Vec::new)
        .push(SecurityRequirement::new(SCHEME, Vec::<String>::new()));
    let problem = |kinds: &[OtacErrorKind]| {
        let codes: Vec<&str> = kinds.iter().map(|k| k.code()).collect();
        ResponseBuilder::new()
            .description(format!(
                "The `{step}` step of `{}` refused the one-time authorization code: {}",
                workflow.name(),
                codes.join(", ")
            ))
            .content(
                "application/problem+json",
                Content::new(Some(ObjectBuilder::new().schema_type(Type::Object))),
            )
            .build()
    };
    let answers = [
        (
            "401",
            &[
                OtacErrorKind::Required,
                OtacErrorKind::Malformed,
                OtacErrorKind::Invalid,
                OtacErrorKind::Expired,
                OtacErrorKind::Replayed,
                OtacErrorKind::RunRevoked,
            ][..],
        ),
        (
            "403",
            &[OtacErrorKind::WrongStep, OtacErrorKind::BindingMismatch][..],
        ),
        ("503", &[OtacErrorKind::StoreUnavailable][..]),
    ];
    for (status, kinds) in answers {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(kinds)));
    }
}

fn issue(op: &mut Operation, header: &str, next: &str) {
    let code = || {
        let mut header = Header::new(ObjectBuilder::new().schema_type(Type::String));
        header.description = Some(format!(
            "One-time authorization code for the next step ({next}); send it back in the same header."
        ));
        header
    };
    let mut any = false;
    for (status, response) in op.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response.headers.insert(header.to_owned(), code());
            any = true;
        }
    }
    if !any {
        op.responses.responses.insert(
            "200".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("Success")
                    .header(header, code())
                    .build(),
            ),
        );
    }
}
