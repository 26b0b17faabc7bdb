//! The onboarding example services and the shared pieces of the end-to-end tests.
//!
//! `cargo run --example onboarding` serves [`onboarding::router`] on axum.
#![forbid(unsafe_code)]

pub mod change_email;
pub mod config;
pub mod domain;
pub mod onboarding;
