//! Metrics through the `metrics` facade (feature `metrics`); without the feature every function is a no-op.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `otac_issued_total` | counter | `workflow`, `step` (the issuing step) |
//! | `otac_consumed_total` | counter | `workflow`, `step` (a code passed every check and reached the handler) |
//! | `otac_rejected_total` | counter | `workflow`, `step`, `code` (the stable error code) |
//! | `otac_replay_attempts_total` | counter | `workflow`, `step` |
//! | `otac_store_seconds` | histogram | `workflow`, `op` (`use`: the store call that spends a code) |

#[cfg(feature = "metrics")]
mod enabled {
    use std::time::Instant;

    use crate::error::StoreError;
    use crate::store::StoreFuture;

    pub(crate) fn issued(workflow: &str, step: &str) {
        metrics::counter!("otac_issued_total", "workflow" => workflow.to_owned(), "step" => step.to_owned())
            .increment(1);
    }

    pub(crate) fn consumed(workflow: &str, step: &str) {
        metrics::counter!("otac_consumed_total", "workflow" => workflow.to_owned(), "step" => step.to_owned())
            .increment(1);
    }

    pub(crate) fn rejected(workflow: &str, step: &str, code: &'static str) {
        metrics::counter!(
            "otac_rejected_total",
            "workflow" => workflow.to_owned(),
            "step" => step.to_owned(),
            "code" => code
        )
        .increment(1);
        if code == "otac_replayed" {
            metrics::counter!(
                "otac_replay_attempts_total",
                "workflow" => workflow.to_owned(),
                "step" => step.to_owned()
            )
            .increment(1);
        }
    }

    /// Times a store call into `otac_store_seconds`.
    pub(crate) fn timed<T: Send + 'static>(
        workflow: &str,
        op: &'static str,
        future: StoreFuture<T>,
    ) -> StoreFuture<T> {
        let workflow = workflow.to_owned();
        let start = Instant::now();
        StoreFuture::boxed(async move {
            let result: Result<T, StoreError> = future.await;
            metrics::histogram!("otac_store_seconds", "workflow" => workflow, "op" => op)
                .record(start.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use crate::store::StoreFuture;

    #[inline(always)]
    pub(crate) fn issued(_workflow: &str, _step: &str) {}

    #[inline(always)]
    pub(crate) fn consumed(_workflow: &str, _step: &str) {}

    #[inline(always)]
    pub(crate) fn rejected(_workflow: &str, _step: &str, _code: &'static str) {}

    #[inline(always)]
    pub(crate) fn timed<T: Send + 'static>(
        _workflow: &str,
        _op: &'static str,
        future: StoreFuture<T>,
    ) -> StoreFuture<T> {
        future
    }
}

pub(crate) use enabled::*;
