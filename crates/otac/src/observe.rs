//! Metrics through the `metrics` facade (feature `metrics`); without the feature every call is a no-op.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `otac_issued_total` | counter | `workflow`, `step` (the issuing step) |
//! | `otac_consumed_total` | counter | `workflow`, `step` (a code passed every check and reached the handler) |
//! | `otac_rejected_total` | counter | `workflow`, `step`, `code` (the stable error code) |
//! | `otac_replay_attempts_total` | counter | `workflow`, `step` |
//! | `otac_store_seconds` | histogram | `workflow`, `op` (`use`: the store call that spends a code) |
//!
//! Handles are registered on first use (after the application installed its recorder) and kept per step, so a
//! request builds no label strings.

#[cfg(feature = "metrics")]
mod enabled {
    use std::fmt;
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use metrics::{Counter, Histogram};

    use crate::error::OtacErrorKind;
    use crate::store::StoreFuture;

    /// The metric handles of one step.
    #[derive(Clone)]
    pub(crate) struct StepMetrics(Arc<Inner>);

    struct Inner {
        workflow: String,
        step: String,
        issued: OnceLock<Counter>,
        consumed: OnceLock<Counter>,
        replays: OnceLock<Counter>,
        store: OnceLock<Histogram>,
        rejected: [OnceLock<Counter>; KINDS],
    }

    const KINDS: usize = 10;

    fn index(kind: OtacErrorKind) -> usize {
        match kind {
            OtacErrorKind::Required => 0,
            OtacErrorKind::Malformed => 1,
            OtacErrorKind::Invalid => 2,
            OtacErrorKind::Expired => 3,
            OtacErrorKind::WrongStep => 4,
            OtacErrorKind::BindingMismatch => 5,
            OtacErrorKind::Replayed => 6,
            OtacErrorKind::RunRevoked => 7,
            OtacErrorKind::StoreUnavailable => 8,
            OtacErrorKind::IssueFailed => 9,
        }
    }

    impl fmt::Debug for StepMetrics {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("StepMetrics")
        }
    }

    impl StepMetrics {
        pub(crate) fn new(workflow: &str, step: &str) -> Self {
            Self(Arc::new(Inner {
                workflow: workflow.to_owned(),
                step: step.to_owned(),
                issued: OnceLock::new(),
                consumed: OnceLock::new(),
                replays: OnceLock::new(),
                store: OnceLock::new(),
                rejected: Default::default(),
            }))
        }

        fn counter(&self, slot: &OnceLock<Counter>, name: &'static str) -> Counter {
            let m = &self.0;
            slot.get_or_init(|| {
                metrics::counter!(name, "workflow" => m.workflow.clone(), "step" => m.step.clone())
            })
            .clone()
        }

        pub(crate) fn issued(&self) {
            self.counter(&self.0.issued, "otac_issued_total")
                .increment(1);
        }

        pub(crate) fn consumed(&self) {
            self.counter(&self.0.consumed, "otac_consumed_total")
                .increment(1);
        }

        pub(crate) fn rejected(&self, kind: OtacErrorKind) {
            let m = &self.0;
            m.rejected[index(kind)]
                .get_or_init(|| {
                    metrics::counter!(
                        "otac_rejected_total",
                        "workflow" => m.workflow.clone(),
                        "step" => m.step.clone(),
                        "code" => kind.code()
                    )
                })
                .increment(1);
            if kind == OtacErrorKind::Replayed {
                self.counter(&m.replays, "otac_replay_attempts_total")
                    .increment(1);
            }
        }

        /// Runs a store call and times it into `otac_store_seconds`: an answer that is ready at once (the memory
        /// store) is timed on the spot, a pending one when it completes.
        pub(crate) fn timed<T: Send + 'static>(
            &self,
            call: impl FnOnce() -> StoreFuture<T>,
        ) -> StoreFuture<T> {
            let start = Instant::now();
            let future = call();
            let m = &self.0;
            let histogram = m
                .store
                .get_or_init(|| {
                    metrics::histogram!("otac_store_seconds", "workflow" => m.workflow.clone(), "op" => "use")
                })
                .clone();
            if future.is_ready() {
                histogram.record(start.elapsed().as_secs_f64());
                return future;
            }
            StoreFuture::boxed(async move {
                let result = future.await;
                histogram.record(start.elapsed().as_secs_f64());
                result
            })
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use crate::error::OtacErrorKind;
    use crate::store::StoreFuture;

    /// No metrics without the feature.
    #[derive(Clone, Debug)]
    pub(crate) struct StepMetrics;

    impl StepMetrics {
        #[inline(always)]
        pub(crate) fn new(_workflow: &str, _step: &str) -> Self {
            Self
        }
        #[inline(always)]
        pub(crate) fn issued(&self) {}
        #[inline(always)]
        pub(crate) fn consumed(&self) {}
        #[inline(always)]
        pub(crate) fn rejected(&self, _kind: OtacErrorKind) {}
        #[inline(always)]
        pub(crate) fn timed<T: Send + 'static>(
            &self,
            call: impl FnOnce() -> StoreFuture<T>,
        ) -> StoreFuture<T> {
            call()
        }
    }
}

pub(crate) use enabled::StepMetrics;
