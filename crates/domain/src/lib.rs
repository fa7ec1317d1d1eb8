//! Slipway's domain vocabulary.
//!
//! Every other crate speaks in these types: validated names (so a path can be built
//! from them safely), access levels, token scopes and the plain records the store
//! returns. Nothing here does I/O.

pub mod access;
pub mod app;
pub mod limits;
pub mod names;
pub mod pipeline;
pub mod records;
pub mod stack;

pub use access::{effective_access, Access, Scope};
pub use app::{AppName, AppRecord, AppSpec, HealthSpec, ReleaseRecord, ReleaseStatus};
pub use limits::{LimitPolicy, Resources};
pub use names::{NameError, RepoName, Username};
pub use pipeline::{LogLine, PipelineRecord, Status, StepRecord};
pub use records::{is_null_sha, Collaborator, PushEvent, RefUpdate, Repo, TokenInfo, User};
pub use stack::{ServiceSpec, StackSpec};
