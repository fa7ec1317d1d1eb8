//! Slipway's code execution service (Piston/Judge0 style): clients submit
//! programs in one of the [`runtimes`], jobs are persisted in the store, a
//! pool of workers claims them and runs each in a fresh [`sandbox`]
//! container, and results (plus an `output.zip`) are stored for the owner.

#![warn(missing_docs)]

pub mod images;
pub mod model;
pub mod runtimes;
pub mod sandbox;
mod service;

pub use model::{JobFile, JobRequest, JobResult, JobState, PhaseResult};
pub use runtimes::RuntimeDef;
pub use service::{job_view, ExecConfig, ExecService, SubmitError};
