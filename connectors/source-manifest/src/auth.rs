//! Authenticators: what each adds to a request, and the tokens fetched and cached for it.
//!
//! `ApiKeyAuthenticator` (header, query parameter or body), `BearerAuthenticator`,
//! `BasicHttpAuthenticator`, `OAuthAuthenticator` (refresh-token or client-credentials grant,
//! refreshed when `expires_in` has passed), `SessionTokenAuthenticator` (a login request, its
//! token injected), `SelectiveAuthenticator` (one of them, chosen by a config value), `NoAuth`.
//! Token values are secrets: they never appear in an error or a log line.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::interpolate::{Interpolator, Vars};
use crate::manifest::model::{Authenticator, OAuth, RequestOption, SessionAuth, SessionToken};
use crate::request::{Inject, Options};
use crate::{client, ManifestSourceError};

/// A built authenticator, with its token cache.
pub struct Auth {
    kind: Kind,
    cache: Mutex<Option<(String, Option<Instant>)>>,
}

enum Kind {
    None,
    ApiKey {
        token: Value,
        inject: RequestOption,
        params: Map<String, Value>,
    },
    Bearer {
        token: Value,
        params: Map<String, Value>,
    },
    Basic {
        username: Value,
        password: Value,
        params: Map<String, Value>,
    },
    OAuth(Box<OAuth>),
    Session(Box<SessionToken>),
}

fn with_params(vars: &Vars, params: &Map<String, Value>) -> Vars {
    let mut v = vars.clone();
    v.insert("parameters".into(), Value::Object(params.clone()));
    v
}

impl Auth {
    pub fn none() -> Self {
        Self {
            kind: Kind::None,
            cache: Mutex::new(None),
        }
    }

    /// Builds the authenticator; a `SelectiveAuthenticator` picks its branch from `config` now.
    pub fn build(
        auth: Option<&Authenticator>,
        config: &Value,
    ) -> Result<Self, ManifestSourceError> {
        let kind = match auth {
            None | Some(Authenticator::NoAuth {}) => Kind::None,
            Some(Authenticator::ApiKeyAuthenticator {
                api_token,
                header,
                inject_into,
                parameters,
            }) => {
                let inject = match (inject_into, header) {
                    (Some(i), _) => i.clone(),
                    (None, Some(h)) => RequestOption {
                        inject_into: "header".into(),
                        field_name: Some(h.clone()),
                        field_path: None,
                        parameters: parameters.clone(),
                    },
                    (None, None) => {
                        return Err(ManifestSourceError::Manifest(
                            "ApiKeyAuthenticator needs `inject_into` (or the older `header`)"
                                .into(),
                        ))
                    }
                };
                Kind::ApiKey {
                    token: api_token.clone().unwrap_or(Value::String(String::new())),
                    inject,
                    params: parameters.clone(),
                }
            }
            Some(Authenticator::BearerAuthenticator {
                api_token,
                parameters,
            }) => Kind::Bearer {
                token: api_token.clone(),
                params: parameters.clone(),
            },
            Some(Authenticator::BasicHttpAuthenticator {
                username,
                password,
                parameters,
            }) => Kind::Basic {
                username: username.clone(),
                password: password.clone().unwrap_or(Value::String(String::new())),
                params: parameters.clone(),
            },
            Some(Authenticator::OAuthAuthenticator(o)) => Kind::OAuth(o.clone()),
            Some(Authenticator::SessionTokenAuthenticator(s)) => Kind::Session(s.clone()),
            Some(Authenticator::SelectiveAuthenticator {
                authenticator_selection_path,
                authenticators,
            }) => {
                let mut node = config;
                for key in authenticator_selection_path {
                    node = node.get(key).ok_or_else(|| {
                        ManifestSourceError::Config(format!(
                            "the SelectiveAuthenticator reads `{}` from the config, which is not set",
                            authenticator_selection_path.join(".")
                        ))
                    })?;
                }
                let selected = node
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| node.to_string());
                let chosen = authenticators.get(&selected).ok_or_else(|| {
                    ManifestSourceError::Config(format!(
                        "config `{}` selects the authenticator `{selected}`, which the manifest does not define (it has: {})",
                        authenticator_selection_path.join("."),
                        authenticators.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                let chosen: Authenticator =
                    serde_json::from_value(chosen.clone()).map_err(|e| {
                        ManifestSourceError::Manifest(format!(
                            "SelectiveAuthenticator.authenticators.{selected}: {e}"
                        ))
                    })?;
                return Self::build(Some(&chosen), config);
            }
        };
        Ok(Self {
            kind,
            cache: Mutex::new(None),
        })
    }

    /// Adds the authentication to a request's options, fetching a token first if needed.
    pub async fn apply(
        &self,
        http: &client::Http,
        interp: &Interpolator,
        vars: &Vars,
        options: &mut Options,
    ) -> Result<(), ManifestSourceError> {
        match &self.kind {
            Kind::None => {}
            Kind::ApiKey {
                token,
                inject,
                params,
            } => {
                let v = with_params(vars, params);
                let token = interp.eval_string(token, &v)?;
                options.inject(inject, Value::String(token), interp, &v)?;
            }
            Kind::Bearer { token, params } => {
                let token = interp.eval_string(token, &with_params(vars, params))?;
                options.set(
                    Inject::Header,
                    "Authorization".into(),
                    Value::String(format!("Bearer {token}")),
                );
            }
            Kind::Basic {
                username,
                password,
                params,
            } => {
                let v = with_params(vars, params);
                let user = interp.eval_string(username, &v)?;
                let pass = interp.eval_string(password, &v)?;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                options.set(
                    Inject::Header,
                    "Authorization".into(),
                    Value::String(format!("Basic {encoded}")),
                );
            }
            Kind::OAuth(o) => {
                let token = self.cached(|| oauth_token(o, http, interp, vars)).await?;
                options.set(
                    Inject::Header,
                    "Authorization".into(),
                    Value::String(format!("Bearer {token}")),
                );
            }
            Kind::Session(s) => {
                let token = self.cached(|| session_token(s, http, interp, vars)).await?;
                match &s.request_authentication {
                    SessionAuth::Bearer {} => options.set(
                        Inject::Header,
                        "Authorization".into(),
                        Value::String(format!("Bearer {token}")),
                    ),
                    SessionAuth::ApiKey { inject_into } => {
                        options.inject(inject_into, Value::String(token), interp, vars)?
                    }
                }
            }
        }
        Ok(())
    }

    async fn cached<F, Fut>(&self, fetch: F) -> Result<String, ManifestSourceError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Option<Duration>), ManifestSourceError>>,
    {
        let mut cache = self.cache.lock().await;
        if let Some((token, expires)) = cache.as_ref() {
            if expires.is_none_or(|at| Instant::now() < at) {
                return Ok(token.clone());
            }
        }
        let (token, ttl) = fetch().await?;
        *cache = Some((token.clone(), ttl.map(|t| Instant::now() + t)));
        Ok(token)
    }
}

fn eval_opt(
    interp: &Interpolator,
    v: &Option<Value>,
    vars: &Vars,
) -> Result<Option<String>, ManifestSourceError> {
    Ok(match v {
        Some(v) => Some(interp.eval_string(v, vars)?).filter(|s| !s.is_empty()),
        None => None,
    })
}

/// Refreshes an OAuth access token: `(token, lifetime)`.
async fn oauth_token(
    o: &OAuth,
    http: &client::Http,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<(String, Option<Duration>), ManifestSourceError> {
    let v = with_params(vars, &o.parameters);
    if let Some(token) = eval_opt(interp, &o.access_token_value, &v)? {
        if o.token_refresh_endpoint.is_none() {
            return Ok((token, None));
        }
    }
    let endpoint = eval_opt(interp, &o.token_refresh_endpoint, &v)?.ok_or_else(|| {
        ManifestSourceError::Manifest("OAuthAuthenticator needs `token_refresh_endpoint`".into())
    })?;
    let grant_type = eval_opt(interp, &o.grant_type, &v)?.unwrap_or_else(|| "refresh_token".into());
    let mut body: Vec<(String, String)> = vec![("grant_type".into(), grant_type.clone())];
    for (name, value) in [
        ("client_id", &o.client_id),
        ("client_secret", &o.client_secret),
    ] {
        if let Some(x) = eval_opt(interp, value, &v)? {
            body.push((name.into(), x));
        }
    }
    if grant_type == "refresh_token" {
        if let Some(x) = eval_opt(interp, &o.refresh_token, &v)? {
            body.push(("refresh_token".into(), x));
        }
    }
    if let Some(scopes) = &o.scopes {
        body.push(("scopes".into(), scopes.join(" ")));
    }
    if let Some(extra) = &o.refresh_request_body {
        for (k, x) in interp.eval_mapping(extra, &v)? {
            body.push((k, crate::interpolate::py_str(&x)));
        }
    }
    let mut headers = Vec::new();
    if let Some(h) = &o.refresh_request_headers {
        for (k, x) in interp.eval_mapping(h, &v)? {
            headers.push((k, crate::interpolate::py_str(&x)));
        }
    }
    let url = url::Url::parse(&endpoint).map_err(|e| {
        ManifestSourceError::Manifest(format!("token_refresh_endpoint is not a URL: {e}"))
    })?;
    let response = http.token_request(url.clone(), headers, body).await?;
    let name = eval_opt(interp, &o.access_token_name, &v)?.unwrap_or_else(|| "access_token".into());
    let expires_name =
        eval_opt(interp, &o.expires_in_name, &v)?.unwrap_or_else(|| "expires_in".into());
    let token = response.get(&name).and_then(Value::as_str).ok_or_else(|| {
        ManifestSourceError::Auth(format!(
            "the OAuth token endpoint {} answered without `{name}`",
            crate::request::redacted(&url)
        ))
    })?;
    let ttl = response
        .get(&expires_name)
        .and_then(|e| {
            e.as_f64()
                .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
        })
        // Refresh a little early so a request never goes out with a token about to expire.
        .map(|secs| Duration::from_secs_f64((secs - 10.0).max(0.0)));
    Ok((token.to_string(), ttl))
}

/// Logs in with the session's `login_requester` and reads the token at `session_token_path`.
async fn session_token(
    s: &SessionToken,
    http: &client::Http,
    interp: &Interpolator,
    vars: &Vars,
) -> Result<(String, Option<Duration>), ManifestSourceError> {
    let mut v = with_params(vars, &s.login_requester.parameters);
    v.insert("next_page_token".into(), Value::Object(Map::new()));
    v.insert("stream_slice".into(), Value::Object(Map::new()));
    let request = crate::request::build(&s.login_requester, interp, &v, None, Options::default())?;
    let url = request.url.clone();
    let body = http.send_login(request).await?;
    let mut node = &body;
    for key in &s.session_token_path {
        node = node.get(key).ok_or_else(|| {
            ManifestSourceError::Auth(format!(
                "the login response of {} has no `{}`",
                crate::request::redacted(&url),
                s.session_token_path.join(".")
            ))
        })?;
    }
    let token = node
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| node.to_string());
    let ttl = s
        .expiration_duration
        .as_deref()
        .and_then(crate::interpolate::datetime::Duration::parse)
        .and_then(|d| d.delta.to_std().ok());
    Ok((token, ttl))
}
