//! The onboarding example services and the shared pieces of the end-to-end tests.
//!
//! `cargo run --example onboarding` serves [`onboarding::router`] on axum; `cargo run --example onboarding-actix`
//! serves the same contract on actix-web ([`onboarding_actix::configure`]).
#![forbid(unsafe_code)]

pub mod change_email;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod onboarding;
pub mod onboarding_actix;
pub mod openapi;

/// The repository README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
