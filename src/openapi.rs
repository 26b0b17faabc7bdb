//! The onboarding service's OpenAPI document, with otac's code header declared on the operations that require
//! and issue codes. Served at `GET /openapi.json` by both onboarding examples.

use otac::Workflow;
use otac::openapi::{OtacRoute, document};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

fn operation(id: &str, responses: &[(&str, &str)]) -> OperationBuilder {
    responses.iter().fold(
        OperationBuilder::new().operation_id(Some(id)),
        |op, (status, description)| {
            op.response(*status, ResponseBuilder::new().description(*description))
        },
    )
}

/// The document of the onboarding routes for `workflow`.
pub fn onboarding_openapi(workflow: &Workflow) -> Result<OpenApi, otac::ConfigError> {
    let paths = PathsBuilder::new()
        .path(
            "/invitations",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "invite",
                    &[
                        ("201", "Invited; an email code was sent"),
                        ("422", "Invalid email or mobile"),
                    ],
                ),
            ),
        )
        .path(
            "/_dev/outbox",
            PathItem::new(
                HttpMethod::Get,
                operation(
                    "outbox",
                    &[("200", "Messages sent to the user (demo only)")],
                ),
            ),
        )
        .path(
            "/verify-email",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "verifyEmail",
                    &[
                        ("200", "Email verified"),
                        ("404", "Unknown user"),
                        ("422", "Wrong code"),
                    ],
                ),
            ),
        )
        .path(
            "/verify-mobile",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "verifyMobile",
                    &[
                        ("200", "Mobile verified"),
                        ("422", "Wrong SMS code; the code can be retried"),
                        ("429", "Too many wrong SMS codes; the run is aborted"),
                    ],
                ),
            ),
        )
        .path(
            "/set-password",
            PathItem::new(
                HttpMethod::Post,
                operation(
                    "setPassword",
                    &[
                        ("204", "Password set; the user is active"),
                        ("422", "Weak password"),
                    ],
                ),
            ),
        )
        .path(
            "/users/{id}",
            PathItem::new(
                HttpMethod::Get,
                operation("user", &[("200", "The user"), ("404", "Unknown user")]),
            ),
        )
        .build();
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("otac onboarding example")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths)
        .build();
    document(
        &mut api,
        workflow,
        &[
            OtacRoute::post("/verify-email").issues("verify-email"),
            OtacRoute::post("/verify-mobile")
                .requires("verify-mobile")
                .issues("verify-mobile"),
            OtacRoute::post("/set-password").requires("set-password"),
        ],
    )?;
    Ok(api)
}

/// The document as JSON, rendered once per service. The onboarding routes always match the workflow, so a failure
/// here is a bug in the example; the document then says so instead of taking the service down.
pub fn onboarding_openapi_json(workflow: &Workflow) -> String {
    match onboarding_openapi(workflow).map(|doc| serde_json::to_string(&doc)) {
        Ok(Ok(json)) => json,
        Ok(Err(err)) => serde_json::json!({ "error": err.to_string() }).to_string(),
        Err(err) => serde_json::json!({ "error": err.to_string() }).to_string(),
    }
}
