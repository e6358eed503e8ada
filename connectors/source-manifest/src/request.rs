//! One HTTP request as the CDK's `HttpRequester` builds it, and the options the paginator,
//! partition routers and cursor inject into it.
//!
//! URL: `urljoin(url_base + "/", path.lstrip("/"))`; a paginator's `RequestPath` token (the
//! next URL with the URL base removed) replaces the path. Query parameters, headers and bodies
//! are interpolated; values that evaluate to nothing are dropped. Lists in query parameters
//! repeat the key, values print as Python's `str()`, as `requests` sends them.

use serde_json::{Map, Value};

use crate::interpolate::{py_str, Interpolator, Vars};
use crate::manifest::model::{HttpRequester, RequestOption};
use crate::ManifestSourceError;

/// Where an option goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    Param,
    Header,
    BodyJson,
    BodyData,
}

impl Inject {
    pub fn parse(text: &str) -> Result<Self, ManifestSourceError> {
        Ok(match text {
            "request_parameter" => Inject::Param,
            "header" => Inject::Header,
            "body_json" => Inject::BodyJson,
            "body_data" => Inject::BodyData,
            other => {
                return Err(ManifestSourceError::Manifest(format!(
                    "`inject_into: {other}` is not one of request_parameter, header, body_json, body_data"
                )))
            }
        })
    }
}

/// Options gathered for one request (from the paginator, routers, cursor, authenticator).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub params: Map<String, Value>,
    pub headers: Map<String, Value>,
    pub body_json: Map<String, Value>,
    pub body_data: Map<String, Value>,
}

impl Options {
    pub fn set(&mut self, inject: Inject, key: String, value: Value) {
        let target = match inject {
            Inject::Param => &mut self.params,
            Inject::Header => &mut self.headers,
            Inject::BodyJson => &mut self.body_json,
            Inject::BodyData => &mut self.body_data,
        };
        target.insert(key, value);
    }

    /// Injects `value` as the manifest's `RequestOption` says (`field_path` nests a JSON body).
    pub fn inject(
        &mut self,
        option: &RequestOption,
        value: Value,
        interp: &Interpolator,
        vars: &Vars,
    ) -> Result<(), ManifestSourceError> {
        let inject = Inject::parse(&option.inject_into)?;
        if let (Some(path), Inject::BodyJson) = (&option.field_path, inject) {
            let keys: Vec<String> = path
                .iter()
                .map(|k| interp.eval_string(k, vars))
                .collect::<Result<_, _>>()?;
            let mut node = &mut self.body_json;
            for key in &keys[..keys.len().saturating_sub(1)] {
                let entry = node
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                node = entry.as_object_mut().expect("made an object above");
            }
            if let Some(last) = keys.last() {
                node.insert(last.clone(), value);
            }
            return Ok(());
        }
        let field = option.field_name.as_ref().ok_or_else(|| {
            ManifestSourceError::Manifest(
                "a RequestOption needs `field_name` (or `field_path` for body_json)".into(),
            )
        })?;
        let mut v = vars.clone();
        v.insert(
            "parameters".into(),
            Value::Object(option.parameters.clone()),
        );
        let key = interp.eval_string(field, &v)?;
        self.set(inject, key, value);
        Ok(())
    }

    /// Adds `other`'s options over these.
    pub fn merge(&mut self, other: Options) {
        self.params.extend(other.params);
        self.headers.extend(other.headers);
        self.body_json.extend(other.body_json);
        self.body_data.extend(other.body_data);
    }
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    Form(Vec<(String, String)>),
    Text(String),
}

fn dropped(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s.is_empty())
}

fn pairs(map: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in map {
        match v {
            v if dropped(v) => {}
            Value::Array(items) => out.extend(
                items
                    .iter()
                    .filter(|i| !dropped(i))
                    .map(|i| (k.clone(), py_str(i))),
            ),
            v => out.push((k.clone(), py_str(v))),
        }
    }
    out
}

/// Evaluates the requester's URL base (for removing it from next-page URLs).
pub fn url_base(
    req: &HttpRequester,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<String, ManifestSourceError> {
    let base = req.url_base.as_ref().or(req.url.as_ref());
    Ok(match base {
        Some(b) => interp.eval_string(b, vars)?,
        None => String::new(),
    })
}

/// Builds the request: `vars` holds `config`, `parameters`, `stream_slice`, `next_page_token`;
/// `path_override` is a paginator's `RequestPath` token.
pub fn build(
    req: &HttpRequester,
    interp: &Interpolator,
    vars: &Vars,
    path_override: Option<&str>,
    options: Options,
) -> Result<Request, ManifestSourceError> {
    let base = url_base(req, interp, vars)?;
    let path = match path_override {
        Some(p) => p.replace(&base, ""),
        None => match &req.path {
            Some(p) if req.url_base.is_some() => interp
                .eval_string(p, vars)?
                .trim_start_matches('/')
                .to_string(),
            _ => String::new(),
        },
    };
    let with_slash = if base.ends_with('/') {
        base.clone()
    } else {
        format!("{base}/")
    };
    let joined = if path.is_empty() {
        url::Url::parse(base.trim_end_matches('/'))
    } else {
        url::Url::parse(&with_slash).and_then(|b| b.join(&path))
    };
    let mut url = joined.map_err(|e| {
        ManifestSourceError::Manifest(format!(
            "the requester's URL (url_base `{base}`, path `{path}`) is not a valid URL: {e}"
        ))
    })?;
    let method = match req.http_method.to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        other => {
            return Err(ManifestSourceError::Manifest(format!(
                "http_method `{other}` is not GET or POST"
            )))
        }
    };

    let mut params = match &req.request_parameters {
        Some(p) => interp.eval_mapping(p, vars)?,
        None => Map::new(),
    };
    params.extend(options.params);
    let query = pairs(&params);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }

    let mut headers = match &req.request_headers {
        Some(h) => interp.eval_mapping(h, vars)?,
        None => Map::new(),
    };
    headers.extend(options.headers);
    let headers = pairs(&headers);

    let body = if let Some(json) = &req.request_body_json {
        let mut body = match interp.eval_nested(json, vars)? {
            Value::Object(m) => m,
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(ManifestSourceError::Manifest(
                        "request_body_json must evaluate to a mapping".into(),
                    ))
                }
            },
            _ => {
                return Err(ManifestSourceError::Manifest(
                    "request_body_json must evaluate to a mapping".into(),
                ))
            }
        };
        body.retain(|_, v| !dropped(v));
        body.extend(options.body_json);
        Body::Json(Value::Object(body))
    } else if !options.body_json.is_empty() {
        Body::Json(Value::Object(options.body_json))
    } else if let Some(data) = &req.request_body_data {
        match data {
            Value::String(_) => match interp.eval(data, vars, None)? {
                Value::Object(m) => {
                    let mut m = m;
                    m.extend(options.body_data);
                    Body::Form(pairs(&m))
                }
                other => Body::Text(py_str(&other)),
            },
            _ => {
                let mut m = interp.eval_mapping(data, vars)?;
                m.extend(options.body_data);
                Body::Form(pairs(&m))
            }
        }
    } else if !options.body_data.is_empty() {
        Body::Form(pairs(&options.body_data))
    } else {
        Body::None
    };
    Ok(Request {
        method,
        url,
        headers,
        body,
    })
}

/// The URL without its query (which may hold an API key), for messages.
pub fn redacted(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    u.to_string()
}
