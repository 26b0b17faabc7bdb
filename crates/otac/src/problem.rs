//! Error responses: RFC 9457 `application/problem+json` by default, replaceable.

use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::error::OtacError;

/// Turns a rejection into a response. Implemented for closures `Fn(&OtacError) -> Response<Bytes>`.
///
/// The response must not echo the token back; the default never does.
pub trait ErrorResponder: Send + Sync + 'static {
    /// The response for `error`.
    fn respond(&self, error: &OtacError) -> Response<Bytes>;
}

impl<F> ErrorResponder for F
where
    F: Fn(&OtacError) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, error: &OtacError) -> Response<Bytes> {
        self(error)
    }
}

/// The default responder: `application/problem+json` with `type`, `title`, `status`, `detail` and a stable `code`,
/// `WWW-Authenticate` on 401 and `Cache-Control: no-store`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

impl ErrorResponder for ProblemJson {
    fn respond(&self, error: &OtacError) -> Response<Bytes> {
        problem_response(error)
    }
}

/// The `application/problem+json` response of [`ProblemJson`], usable by custom responders that only add to it.
pub fn problem_response(error: &OtacError) -> Response<Bytes> {
    let status = error.status();
    let body = serde_json::json!({
        "type": format!("urn:otac:error:{}", error.code()),
        "title": error.kind().title(),
        "status": status.as_u16(),
        "detail": error.reason(),
        "code": error.code(),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(WWW_AUTHENTICATE, www_authenticate(error));
    }
    response
}

fn www_authenticate(error: &OtacError) -> HeaderValue {
    // Codes and titles are static ASCII, so the value is always valid.
    HeaderValue::from_str(&format!(
        r#"OTAC realm="otac", error="{}", error_description="{}""#,
        error.code(),
        error.kind().title()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("OTAC"))
}

pub(crate) struct Responder(pub(crate) Box<dyn ErrorResponder>);

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorResponder")
    }
}
