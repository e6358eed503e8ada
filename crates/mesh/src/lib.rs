//! The weft project model: a folder with `weft.yaml`, one `domains/<domain>/domain.yaml` per
//! declared domain and one YAML file per data product under `domains/<domain>/<product>.yaml`.
//!
//! [`Project::load`] reads and validates everything once, so the engine and CLI work with
//! checked values: valid names, defaults applied, `${VAR}` secrets substituted (and registered
//! in a [`Redactor`]). Errors name the file, line, field and what to do.

pub mod catalog;
mod config;
pub mod contract;
mod error;
mod interpolate;
mod load;
mod project;
mod redact;
mod schedule;
mod schema;
mod selector;
mod sharing;
mod yaml;

pub use config::{
    ConnectorRef, ContractPolicy, DomainFile, FieldMeta, FilterOp, GrantCondition, GrantFilter,
    Mapper, Misfire, OnChange, Overlap, ProductFile, ProjectFile, DEFAULT_MAX_BYTES_IN_FLIGHT,
};
pub use contract::{Change, ChangeKind, Contract, ContractColumn, ContractStream, ContractVersion};
pub use error::{Position, ProjectError};
pub use interpolate::expand_value;
pub use project::{
    DaemonSettings, Domain, Product, Project, ProjectSettings, RawRule, RunPolicy, StreamConfig,
    CONFIG_FILE, DOMAINS_DIR, DOMAIN_FILE,
};
pub use redact::Redactor;
pub use schedule::{Schedule, ScheduleError};
pub use schema::{domain_json_schema, product_json_schema, project_json_schema};
pub use selector::{Selection, Selector};
pub use sharing::{
    access, granted_stream, lineage, run_order, Access, AccessDenied, Grant, GrantedStream,
    Lineage, LineageLink, ProductRef, Upstream, PRODUCT_SOURCE,
};
pub use yaml::parse as parse_yaml;
