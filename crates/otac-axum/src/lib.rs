//! axum integration for otac.
