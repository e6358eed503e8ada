//! Sending requests with the manifest's error handling (`DefaultErrorHandler`,
//! `CompositeErrorHandler`) and the CDK's default mapping when it has none.
//!
//! A response is matched against the handler's `response_filters` in order (status codes,
//! `error_message_contains`, a `predicate` over `response` and `headers`); the first match
//! decides (SUCCESS, FAIL, RETRY, IGNORE, RATE_LIMITED). Otherwise: 2xx/3xx succeed; 400, 401,
//! 403, 404 and 405 fail; 408, 429, 5xx, other errors and connection failures are retried up
//! to `max_retries` (5) times. The wait is the first backoff strategy's (constant,
//! exponential `factor * 2^attempt`, a header's value), else `Retry-After`, else `5 * 2^attempt`
//! seconds. Messages name the stream and the URL without its query (which may hold a key).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::warn;

use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{
    BackoffStrategy, DefaultErrorHandler, ErrorHandler, HttpResponseFilter,
};
use crate::request::{redacted, Body, Request};
use crate::ManifestSourceError;

/// A response: status, headers (lower-case names) and the body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: bytes::Bytes,
}

impl Response {
    /// The body as JSON (`{}` when it is empty, as the CDK's `JsonDecoder` reads it).
    pub fn json(&self) -> Result<Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_slice(&self.body).map_err(|e| format!("the response is not JSON: {e}"))
    }

    /// The headers as the template variable `headers`: `link` parsed into `{rel: {url, params…}}`.
    pub fn headers_var(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in &self.headers {
            if k == "link" {
                out.insert(k.clone(), parse_link(v));
            } else {
                out.insert(k.clone(), Value::String(v.clone()));
            }
        }
        Value::Object(out)
    }
}

/// RFC 8288 `Link` headers as `requests` parses them (`response.links`): by `rel` (or URL),
/// each with `url`, its other attributes, and — as the CDK adds — the URL's query parameters.
pub fn parse_link(header: &str) -> Value {
    let mut out = Map::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let Some(url) = pieces.next().map(|u| {
            u.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        }) else {
            continue;
        };
        if url.is_empty() {
            continue;
        }
        let mut link = Map::new();
        link.insert("url".into(), Value::String(url.clone()));
        if let Ok(parsed) = url::Url::parse(&url) {
            for (k, v) in parsed.query_pairs() {
                link.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        for attr in pieces {
            if let Some((k, v)) = attr.split_once('=') {
                link.insert(
                    k.trim().to_string(),
                    Value::String(v.trim().trim_matches(['"', '\'']).to_string()),
                );
            }
        }
        let key = link
            .get("rel")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| url.clone());
        out.insert(key, Value::Object(link));
    }
    Value::Object(out)
}

enum Action {
    Success,
    Fail(String),
    Retry,
    Ignore,
}

/// Called with every request sent and its response (`weft connector test` shows them).
pub type Observer = Arc<dyn Fn(&Request, &Response) + Send + Sync>;

/// The HTTP client of one source.
pub struct Http {
    client: reqwest::Client,
    interp: Arc<Interpolator>,
    config: Value,
    observer: Option<Observer>,
}

impl Http {
    pub fn new(interp: Arc<Interpolator>, config: Value) -> Result<Self, ManifestSourceError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ManifestSourceError::Other(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            interp,
            config,
            observer: None,
        })
    }

    /// This client, calling `observer` with every request and response.
    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    async fn once(&self, request: &Request) -> Result<Response, reqwest::Error> {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone());
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder = match &request.body {
            Body::None => builder,
            Body::Json(v) => builder.json(v),
            Body::Form(pairs) => builder.form(pairs),
            Body::Text(t) => builder.body(t.clone()),
        };
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await?;
        let response = Response {
            status,
            headers,
            body,
        };
        if let Some(observer) = &self.observer {
            observer(request, &response);
        }
        Ok(response)
    }

    /// Sends `request` with `handler`'s error handling; `None` when the response is ignored.
    pub async fn send(
        &self,
        request: &Request,
        handler: Option<&ErrorHandler>,
        stream: &str,
    ) -> Result<Option<Response>, ManifestSourceError> {
        let handlers: Vec<&DefaultErrorHandler> = match handler {
            None => Vec::new(),
            Some(ErrorHandler::DefaultErrorHandler(h)) => vec![h],
            Some(ErrorHandler::CompositeErrorHandler { error_handlers }) => {
                error_handlers.iter().collect()
            }
        };
        let max_retries = handlers.first().and_then(|h| h.max_retries).unwrap_or(5);
        let what = format!(
            "stream `{stream}`: {} {}",
            request.method,
            redacted(&request.url)
        );
        let mut attempt = 0u32;
        loop {
            let (action, wait, detail) = match self.once(request).await {
                Err(e) => {
                    let refused = is_tls_refusal(&e);
                    let why = transport_error(e);
                    if refused {
                        return Err(ManifestSourceError::Http(format!(
                            "{what} failed: {why} (the server's TLS certificate is not trusted: \
                             add its CA to the machine's certificate store, or point \
                             SSL_CERT_FILE at a PEM file holding it)"
                        )));
                    }
                    (Action::Retry, None, format!("failed: {why}"))
                }
                Ok(response) => {
                    let (action, handler) = self.resolve(&response, &handlers)?;
                    match action {
                        Action::Success => return Ok(Some(response)),
                        Action::Ignore => return Ok(None),
                        Action::Fail(message) => {
                            return Err(ManifestSourceError::Http(format!(
                                "{what} answered {}: {message}",
                                response.status
                            )))
                        }
                        Action::Retry => {
                            let wait = backoff(
                                handler,
                                &response,
                                attempt + 1,
                                &self.interp,
                                &self.config,
                            )?;
                            (
                                Action::Retry,
                                wait,
                                format!(
                                    "answered {}: {}",
                                    response.status,
                                    snippet(&response.body)
                                ),
                            )
                        }
                    }
                }
            };
            debug_assert!(matches!(action, Action::Retry));
            attempt += 1;
            if attempt > max_retries {
                return Err(ManifestSourceError::Http(format!(
                    "{what} {detail} (gave up after {max_retries} retries)"
                )));
            }
            let wait = wait.unwrap_or_else(|| Duration::from_secs(5u64 << attempt.min(8)));
            warn!("{what} {detail}; retry {attempt} of {max_retries} in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    fn resolve<'h>(
        &self,
        response: &Response,
        handlers: &[&'h DefaultErrorHandler],
    ) -> Result<(Action, Option<&'h DefaultErrorHandler>), ManifestSourceError> {
        for handler in handlers {
            for filter in &handler.response_filters {
                if self.matches(filter, response)? {
                    let action = filter.action.as_deref().unwrap_or("FAIL");
                    let message = filter
                        .error_message
                        .clone()
                        .unwrap_or_else(|| snippet(&response.body));
                    let message = self.interp.eval_string(
                        &Value::String(message),
                        &self.vars(response, &filter.parameters),
                    )?;
                    return Ok((
                        match action {
                            "SUCCESS" => Action::Success,
                            "IGNORE" => Action::Ignore,
                            "RETRY" | "RATE_LIMITED" => Action::Retry,
                            _ => Action::Fail(message),
                        },
                        Some(*handler),
                    ));
                }
            }
        }
        let handler = handlers.first().copied();
        Ok((
            match response.status {
                200..=399 => Action::Success,
                400 | 401 | 403 | 404 | 405 => Action::Fail(format!(
                    "{}{}",
                    match response.status {
                        401 | 403 => "check the credentials in the connector config; ",
                        _ => "",
                    },
                    snippet(&response.body)
                )),
                _ => Action::Retry,
            },
            handler,
        ))
    }

    fn vars(&self, response: &Response, params: &Map<String, Value>) -> Vars {
        let mut vars = Vars::new();
        vars.insert("config".into(), self.config.clone());
        vars.insert("parameters".into(), Value::Object(params.clone()));
        vars.insert("response".into(), response.json().unwrap_or(Value::Null));
        vars.insert("headers".into(), response.headers_var());
        vars
    }

    fn matches(
        &self,
        filter: &HttpResponseFilter,
        response: &Response,
    ) -> Result<bool, ManifestSourceError> {
        if filter.http_codes.contains(&response.status) {
            return Ok(true);
        }
        if let Some(needle) = &filter.error_message_contains {
            if String::from_utf8_lossy(&response.body).contains(needle.as_str()) {
                return Ok(true);
            }
        }
        if let Some(predicate) = &filter.predicate {
            let vars = self.vars(response, &filter.parameters);
            return Ok(self
                .interp
                .eval_bool(&Value::String(predicate.clone()), &vars)?);
        }
        Ok(false)
    }

    /// A token request (OAuth refresh): a form POST whose JSON answer is returned.
    pub async fn token_request(
        &self,
        url: url::Url,
        headers: Vec<(String, String)>,
        form: Vec<(String, String)>,
    ) -> Result<Value, ManifestSourceError> {
        let request = Request {
            method: reqwest::Method::POST,
            url,
            headers,
            body: Body::Form(form),
        };
        self.send_login(request).await
    }

    /// A login or token request: sent with the default error handling, its JSON body returned.
    pub async fn send_login(&self, request: Request) -> Result<Value, ManifestSourceError> {
        let response = self
            .send(&request, None, "(authentication)")
            .await?
            .ok_or_else(|| ManifestSourceError::Auth("the login request was ignored".into()))?;
        response.json().map_err(|e| {
            ManifestSourceError::Auth(format!(
                "the login response of {}: {e}",
                redacted(&request.url)
            ))
        })
    }
}

/// A transport error with its causes (reqwest's own text is only "error sending request"),
/// without the URL: it may carry secrets in its query (the caller names the redacted URL).
fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

/// Whether the TLS handshake refused the server (its certificate or protocol), which no retry
/// changes.
fn is_tls_refusal(e: &reqwest::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // rustls's error arrives inside io::Errors (nested), whose `source` skips it.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

fn backoff(
    handler: Option<&DefaultErrorHandler>,
    response: &Response,
    attempt: u32,
    interp: &Interpolator,
    config: &Value,
) -> Result<Option<Duration>, ManifestSourceError> {
    let mut vars = Vars::new();
    vars.insert("config".into(), config.clone());
    let secs = |v: &Value| -> Result<Option<f64>, ManifestSourceError> {
        Ok(match interp.eval(v, &vars, None)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    };
    for strategy in handler
        .map(|h| h.backoff_strategies.as_slice())
        .unwrap_or_default()
    {
        let wait = match strategy {
            BackoffStrategy::ConstantBackoffStrategy {
                backoff_time_in_seconds,
            } => secs(backoff_time_in_seconds)?,
            BackoffStrategy::ExponentialBackoffStrategy { factor } => {
                let factor = match factor {
                    Some(f) => secs(f)?.unwrap_or(5.0),
                    None => 5.0,
                };
                Some(factor * 2f64.powi(attempt as i32))
            }
            BackoffStrategy::WaitTimeFromHeader {
                header,
                regex,
                max_waiting_time_in_seconds,
            } => {
                let name = interp.eval_string(header, &vars)?.to_ascii_lowercase();
                let value = response.headers.get(&name).map(|v| {
                    match regex.as_deref().and_then(|r| regex::Regex::new(r).ok()) {
                        Some(re) => re
                            .find(v)
                            .map(|m| m.as_str().to_string())
                            .unwrap_or_default(),
                        None => v.clone(),
                    }
                });
                let wait = value.and_then(|v| v.trim().parse::<f64>().ok());
                if let (Some(w), Some(max)) = (wait, max_waiting_time_in_seconds) {
                    if w > *max {
                        return Err(ManifestSourceError::Http(format!(
                            "the server asks to wait {w}s (header `{name}`), more than max_waiting_time_in_seconds {max}"
                        )));
                    }
                }
                wait
            }
        };
        if let Some(w) = wait {
            return Ok(Some(Duration::from_secs_f64(w.max(0.0))));
        }
    }
    Ok(response
        .headers
        .get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0))))
}
