//! Redis replay store for otac.
