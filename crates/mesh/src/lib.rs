//! The weft project model: a folder with `weft.yaml` and one YAML file per data product under
//! `domains/<domain>/<product>.yaml`.
//!
//! [`Project::load`] reads and validates everything once, so the engine and CLI work with
//! checked values: valid names, defaults applied, `${VAR}` secrets substituted (and registered
//! in a [`Redactor`]). Errors name the file, line, field and what to do.

mod config;
mod error;
mod interpolate;
mod load;
mod project;
mod redact;
mod schedule;
mod schema;
mod selector;
mod yaml;

pub use config::{ConnectorRef, FilterOp, Mapper, Misfire, Overlap, ProductFile, ProjectFile};
pub use error::{Position, ProjectError};
pub use project::{
    DaemonSettings, Product, Project, ProjectSettings, RunPolicy, StreamConfig, CONFIG_FILE,
    DOMAINS_DIR,
};
pub use redact::Redactor;
pub use schedule::{Schedule, ScheduleError};
pub use schema::{product_json_schema, project_json_schema};
pub use selector::{Selection, Selector};
