//! Slipway's code execution service (Piston/Judge0 style): clients submit
//! programs in one of the [`runtimes`], jobs are persisted in the store, a
//! pool of workers claims them, fairly between users ([`fair_queue`]), and runs each in a fresh [`sandbox`]
//! container (started ahead of time by a warm pool, used once), and results
//! (plus an `output.zip`) are stored for the owner. [`metrics`] exports the
//! queue, job and pool figures to Prometheus.

#![warn(missing_docs)]

pub mod fair_queue;
pub mod images;
pub mod metrics;
pub mod model;
mod pool;
pub mod runtimes;
pub mod sandbox;
mod service;

pub use model::{files_from_zip, JobFile, JobRequest, JobResult, JobState, PhaseResult};
pub use pool::PoolConfig;
pub use runtimes::RuntimeDef;
pub use service::{job_view, missing_image_message, ExecConfig, ExecService, SubmitError};
