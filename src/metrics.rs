//! Prometheus metrics for the examples: otac's counters and store-latency histogram (the `metrics` feature of
//! `otac`), served at `GET /metrics` in the Prometheus text format.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and returns the `/metrics` route.
pub fn prometheus_route() -> Result<Router, String> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    let handle = match HANDLE.get() {
        Some(handle) => handle.clone(),
        None => {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
            HANDLE.get_or_init(|| handle).clone()
        }
    };
    Ok(Router::new().route("/metrics", get(move || std::future::ready(handle.render()))))
}
