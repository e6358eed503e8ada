//! The typed components weft runs, parsed from the pre-processed manifest.
//!
//! Fields that the CDK interpolates stay [`Value`]s (a string template, or a literal the
//! manifest wrote as a number or a list) and are evaluated by [`crate::interpolate`] at run
//! time. Fields weft does not use are ignored, as pydantic's models do for most components.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ManifestError;

pub type Params = Map<String, Value>;

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeclarativeSource {
    #[serde(default)]
    pub version: Option<String>,
    pub streams: Vec<DeclarativeStream>,
    #[serde(default)]
    pub check: Option<CheckStream>,
    #[serde(default)]
    pub spec: Option<Spec>,
    #[serde(default)]
    pub concurrency_level: Option<Value>,
}

impl DeclarativeSource {
    pub fn parse(resolved: &Value) -> Result<Self, ManifestError> {
        serde_path_to_error::deserialize(resolved).map_err(|e| ManifestError::Invalid {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckStream {
    #[serde(default)]
    pub stream_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub connection_specification: Value,
    #[serde(default)]
    pub documentation_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeclarativeStream {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub primary_key: Option<Value>,
    pub retriever: SimpleRetriever,
    #[serde(default)]
    pub incremental_sync: Option<DatetimeBasedCursor>,
    #[serde(default)]
    pub schema_loader: Option<SchemaLoader>,
    #[serde(default)]
    pub transformations: Vec<Transformation>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

impl DeclarativeStream {
    /// The primary key as column names (`[[a, b]]` composite keys flattened).
    pub fn primary_key(&self) -> Vec<String> {
        fn names(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) if !s.is_empty() => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|i| names(i, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Some(pk) = &self.primary_key {
            names(pk, &mut out);
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum SchemaLoader {
    InlineSchemaLoader {
        #[serde(default)]
        schema: Value,
    },
    JsonFileSchemaLoader {
        #[serde(default)]
        file_path: Option<String>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimpleRetriever {
    pub requester: HttpRequester,
    pub record_selector: RecordSelector,
    #[serde(default)]
    pub paginator: Option<Paginator>,
    #[serde(default, alias = "stream_slicer")]
    pub partition_router: Option<Routers>,
    #[serde(default)]
    pub ignore_stream_slicer_parameters_on_paginated_requests: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Routers {
    One(PartitionRouter),
    Many(Vec<PartitionRouter>),
}

impl Routers {
    pub fn list(&self) -> Vec<&PartitionRouter> {
        match self {
            Routers::One(r) => vec![r],
            Routers::Many(rs) => rs.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpRequester {
    #[serde(default)]
    pub url_base: Option<Value>,
    #[serde(default)]
    pub url: Option<Value>,
    #[serde(default)]
    pub path: Option<Value>,
    #[serde(default = "get")]
    pub http_method: String,
    #[serde(default)]
    pub authenticator: Option<Authenticator>,
    #[serde(default)]
    pub request_parameters: Option<Value>,
    #[serde(default)]
    pub request_headers: Option<Value>,
    #[serde(default)]
    pub request_body_data: Option<Value>,
    #[serde(default)]
    pub request_body_json: Option<Value>,
    #[serde(default)]
    pub error_handler: Option<ErrorHandler>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Authenticator {
    NoAuth {},
    ApiKeyAuthenticator {
        #[serde(default)]
        api_token: Option<Value>,
        #[serde(default)]
        header: Option<Value>,
        #[serde(default)]
        inject_into: Option<RequestOption>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    BearerAuthenticator {
        api_token: Value,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    BasicHttpAuthenticator {
        username: Value,
        #[serde(default)]
        password: Option<Value>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    OAuthAuthenticator(Box<OAuth>),
    SelectiveAuthenticator {
        authenticator_selection_path: Vec<String>,
        authenticators: Map<String, Value>,
    },
    SessionTokenAuthenticator(Box<SessionToken>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct OAuth {
    #[serde(default)]
    pub token_refresh_endpoint: Option<Value>,
    #[serde(default)]
    pub client_id: Option<Value>,
    #[serde(default)]
    pub client_secret: Option<Value>,
    #[serde(default)]
    pub refresh_token: Option<Value>,
    #[serde(default)]
    pub access_token_value: Option<Value>,
    #[serde(default)]
    pub grant_type: Option<Value>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub refresh_request_body: Option<Value>,
    #[serde(default)]
    pub refresh_request_headers: Option<Value>,
    #[serde(default)]
    pub access_token_name: Option<Value>,
    #[serde(default)]
    pub expires_in_name: Option<Value>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionToken {
    pub login_requester: HttpRequester,
    pub session_token_path: Vec<String>,
    #[serde(default)]
    pub expiration_duration: Option<String>,
    pub request_authentication: SessionAuth,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum SessionAuth {
    #[serde(rename = "ApiKey")]
    ApiKey {
        inject_into: RequestOption,
    },
    Bearer {},
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum ErrorHandler {
    DefaultErrorHandler(DefaultErrorHandler),
    CompositeErrorHandler {
        error_handlers: Vec<DefaultErrorHandler>,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct DefaultErrorHandler {
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub backoff_strategies: Vec<BackoffStrategy>,
    #[serde(default)]
    pub response_filters: Vec<HttpResponseFilter>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum BackoffStrategy {
    ExponentialBackoffStrategy {
        #[serde(default)]
        factor: Option<Value>,
    },
    ConstantBackoffStrategy {
        backoff_time_in_seconds: Value,
    },
    WaitTimeFromHeader {
        header: Value,
        #[serde(default)]
        regex: Option<String>,
        #[serde(default)]
        max_waiting_time_in_seconds: Option<f64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpResponseFilter {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub http_codes: Vec<u16>,
    #[serde(default)]
    pub error_message_contains: Option<String>,
    #[serde(default)]
    pub predicate: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestOption {
    pub inject_into: String,
    #[serde(default)]
    pub field_name: Option<Value>,
    #[serde(default)]
    pub field_path: Option<Vec<Value>>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum TokenOption {
    RequestOption(RequestOption),
    RequestPath {},
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordSelector {
    pub extractor: DpathExtractor,
    #[serde(default)]
    pub record_filter: Option<RecordFilter>,
    #[serde(default)]
    pub schema_normalization: Option<String>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DpathExtractor {
    #[serde(default)]
    pub field_path: Vec<Value>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecordFilter {
    pub condition: String,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

// Parsed once per stream from the manifest: the variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Paginator {
    NoPagination {},
    DefaultPaginator {
        pagination_strategy: PaginationStrategy,
        #[serde(default)]
        page_token_option: Option<TokenOption>,
        #[serde(default)]
        page_size_option: Option<RequestOption>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum PaginationStrategy {
    CursorPagination {
        cursor_value: Value,
        #[serde(default)]
        stop_condition: Option<Value>,
        #[serde(default)]
        page_size: Option<Value>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    PageIncrement {
        #[serde(default)]
        page_size: Option<Value>,
        #[serde(default)]
        start_from_page: Option<Value>,
        #[serde(default)]
        inject_on_first_request: bool,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    OffsetIncrement {
        #[serde(default)]
        page_size: Option<Value>,
        #[serde(default)]
        inject_on_first_request: bool,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum PartitionRouter {
    ListPartitionRouter {
        cursor_field: Value,
        values: Value,
        #[serde(default)]
        request_option: Option<RequestOption>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    SubstreamPartitionRouter {
        parent_stream_configs: Vec<ParentStreamConfig>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParentStreamConfig {
    pub stream: Box<DeclarativeStream>,
    pub parent_key: Value,
    pub partition_field: Value,
    #[serde(default)]
    pub request_option: Option<RequestOption>,
    #[serde(default)]
    pub incremental_dependency: bool,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatetimeBasedCursor {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub cursor_field: Value,
    pub datetime_format: String,
    pub start_datetime: MinMaxDatetime,
    #[serde(default)]
    pub end_datetime: Option<MinMaxDatetime>,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub cursor_granularity: Option<String>,
    #[serde(default)]
    pub start_time_option: Option<RequestOption>,
    #[serde(default)]
    pub end_time_option: Option<RequestOption>,
    #[serde(default)]
    pub cursor_datetime_formats: Vec<String>,
    #[serde(default)]
    pub lookback_window: Option<Value>,
    #[serde(default)]
    pub partition_field_start: Option<String>,
    #[serde(default)]
    pub partition_field_end: Option<String>,
    #[serde(default)]
    pub is_data_feed: bool,
    #[serde(default)]
    pub is_client_side_incremental: bool,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}

/// A datetime bound: a plain string (a template) or a `MinMaxDatetime`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MinMaxDatetime {
    Plain(String),
    Full {
        datetime: String,
        #[serde(default)]
        datetime_format: Option<String>,
        #[serde(default)]
        min_datetime: Option<String>,
        #[serde(default)]
        max_datetime: Option<String>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Transformation {
    AddFields {
        fields: Vec<AddedField>,
        #[serde(default)]
        condition: Option<String>,
        #[serde(default, rename = "$parameters")]
        parameters: Params,
    },
    RemoveFields {
        field_pointers: Vec<Vec<String>>,
        #[serde(default)]
        condition: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddedField {
    pub path: Vec<String>,
    pub value: Value,
    #[serde(default)]
    pub value_type: Option<String>,
    #[serde(default, rename = "$parameters")]
    pub parameters: Params,
}
