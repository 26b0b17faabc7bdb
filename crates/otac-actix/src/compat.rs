//! The bridge between actix-web's `http` 0.2 types and the `http` 1 types of the otac core: the request parts the
//! core reads, statuses, and response headers back.

use actix_web::HttpRequest;
use actix_web::dev::Extensions as ActixExtensions;
use actix_web::http::header::{
    HeaderMap as ActixHeaderMap, HeaderName as ActixHeaderName, HeaderValue as ActixHeaderValue,
};
use actix_web::http::{StatusCode as ActixStatusCode, Version as ActixVersion};
use actix_web::web::Bytes;
use actix_web::{HttpMessage as _, HttpResponse};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use otac::{AbortRun, OtacClaims, OtacError, VerifiedOtac};

/// Copies one extension type from actix request extensions into the parts the core reads.
pub(crate) type CopyFn = fn(&ActixExtensions, &mut http::Extensions);

/// The [`CopyFn`] of `T`.
pub(crate) fn copy_extension<T: Clone + Send + Sync + 'static>(
    from: &ActixExtensions,
    to: &mut http::Extensions,
) {
    if let Some(value) = from.get::<T>() {
        to.insert(value.clone());
    }
}

/// The request as the core sees it: method, URI, version, headers, the code a middleware further out verified, and
/// the extensions the middleware was told to carry over.
pub(crate) fn request_parts(req: &HttpRequest, carry: &[CopyFn]) -> Parts {
    let mut parts = extensions_only(req);
    parts.method = http::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or_default();
    // Both `http` versions parse URIs alike; `to_string` of a parsed URI parses again.
    parts.uri = http::Uri::try_from(req.uri().to_string()).unwrap_or_default();
    parts.version = version(req.version());
    parts.headers = headers_to_http(req.headers());
    let extensions = req.extensions();
    for copy in carry {
        copy(&extensions, &mut parts.extensions);
    }
    parts
}

/// Request parts carrying only the verified code of the request (for an issuer that reads nothing else).
pub(crate) fn extensions_only(req: &HttpRequest) -> Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    if let Some(verified) = req.extensions().get::<VerifiedOtac>() {
        parts.extensions.insert(verified.clone());
    }
    parts
}

/// The response extensions the core reads (claims for the next code, a rejection, an aborted run), from the actix
/// response extensions.
pub(crate) fn response_extensions(from: &ActixExtensions) -> http::Extensions {
    let mut out = http::Extensions::new();
    copy_extension::<OtacClaims>(from, &mut out);
    copy_extension::<OtacError>(from, &mut out);
    copy_extension::<AbortRun>(from, &mut out);
    out
}

fn version(version: ActixVersion) -> http::Version {
    match version {
        ActixVersion::HTTP_09 => http::Version::HTTP_09,
        ActixVersion::HTTP_10 => http::Version::HTTP_10,
        ActixVersion::HTTP_2 => http::Version::HTTP_2,
        ActixVersion::HTTP_3 => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    }
}

/// An actix status as an `http` 1 status (both accept 100..=999).
pub(crate) fn status(status: ActixStatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn actix_status(status: StatusCode) -> ActixStatusCode {
    ActixStatusCode::from_u16(status.as_u16()).unwrap_or(ActixStatusCode::INTERNAL_SERVER_ERROR)
}

/// All of an actix header map, as an `http` 1 header map.
pub(crate) fn headers_to_http(headers: &ActixHeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // Both `http` versions validate names and values with the same rules, so nothing is dropped here.
        if let (Ok(name), Ok(mut v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            v.set_sensitive(value.is_sensitive());
            out.append(name, v);
        }
    }
    out
}

/// Replaces the content of an actix header map by an `http` 1 header map.
pub(crate) fn replace_headers(target: &mut ActixHeaderMap, headers: HeaderMap) {
    target.clear();
    let mut name = None;
    for (next, value) in headers {
        // `HeaderMap::into_iter` names a header once, then yields its further values with `None`.
        if let Some(next) = next {
            name = ActixHeaderName::from_bytes(next.as_str().as_bytes()).ok();
        }
        if let (Some(name), Ok(value)) = (&name, ActixHeaderValue::from_bytes(value.as_bytes())) {
            target.append(name.clone(), value);
        }
    }
}

/// An `http` 1 response of the core (a rejection) as an actix response.
pub(crate) fn response(response: http::Response<Bytes>) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let mut out = HttpResponse::with_body(actix_status(parts.status), body);
    replace_headers(out.headers_mut(), parts.headers);
    out.map_into_boxed_body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn request_parts_carry_method_uri_and_every_header_value() {
        let req = TestRequest::post()
            .uri("/verify?x=1")
            .insert_header(("one-time-authorization-code", "abc"))
            .append_header(("x-twice", "1"))
            .append_header(("x-twice", "2"))
            .to_http_request();
        let parts = request_parts(&req, &[]);
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(parts.uri, "/verify?x=1");
        assert_eq!(parts.headers["one-time-authorization-code"], "abc");
        assert_eq!(parts.headers.get_all("x-twice").iter().count(), 2);
    }

    #[test]
    fn configured_extensions_are_carried_over() {
        #[derive(Clone, Debug, PartialEq)]
        struct User(&'static str);
        let req = TestRequest::get().to_http_request();
        req.extensions_mut().insert(User("u1"));
        assert!(request_parts(&req, &[]).extensions.get::<User>().is_none());
        let parts = request_parts(&req, &[copy_extension::<User>]);
        assert_eq!(parts.extensions.get::<User>(), Some(&User("u1")));
    }

    #[test]
    fn replacing_headers_keeps_repeated_values() {
        let mut source = HeaderMap::new();
        source.append("vary", HeaderValue::from_static("origin"));
        source.append("vary", HeaderValue::from_static("accept"));
        source.insert("cache-control", HeaderValue::from_static("no-store"));
        let mut target = ActixHeaderMap::new();
        target.insert(
            ActixHeaderName::from_static("x-old"),
            ActixHeaderValue::from_static("1"),
        );
        replace_headers(&mut target, source);
        assert!(target.get("x-old").is_none());
        assert_eq!(target.get_all("vary").count(), 2);
        assert_eq!(
            target.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
    }
}
