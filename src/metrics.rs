//! Prometheus metrics for the examples: otac's counters and store-latency histogram (the `metrics` feature of
//! `otac`), served at `GET /metrics` in the Prometheus text format.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and returns the `/metrics` route.
pub fn prometheus_route() -> Result<Router, String> {
    let handle = prometheus_handle()?;
    Ok(Router::new().route("/metrics", get(move || std::future::ready(handle.render()))))
}

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and returns its handle, whose
/// `render()` is the body of `GET /metrics` (the actix-web example serves it so).
pub fn prometheus_handle() -> Result<PrometheusHandle, String> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    match HANDLE.get() {
        Some(handle) => Ok(handle.clone()),
        None => {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
            Ok(HANDLE.get_or_init(|| handle).clone())
        }
    }
}
