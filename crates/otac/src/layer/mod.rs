//! The tower layers: [`IssueOtacLayer`] on the response of step N, [`RequireOtacLayer`] on the request of step
//! N+1. Framework-neutral: they wrap any `tower::Service<http::Request<B>>` whose response body can be built from
//! `Bytes`, so axum, hyper, tonic and warp services all work.

pub mod issue;
pub mod require;

pub use issue::IssueOtacLayer;
pub use require::RequireOtacLayer;
