//! [`ApiClient`]: calls the daemon's HTTP API the way a user's script would (JSON over
//! loopback with a bearer token), for the API tests against `ApiServer` and the real daemon.

use std::time::{Duration, Instant};

pub use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A client of one API base URL (`http://127.0.0.1:PORT`).
pub struct ApiClient {
    http: reqwest::Client,
    pub base: String,
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into(),
        }
    }

    /// `method path` with this `Authorization` header (none if `None`): the status and the
    /// body as JSON (a body that is not JSON comes back as a JSON string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.expect("the server answers");
        let status = res.status();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Waits until no run of `product` (`domain/product`) is in flight, as the API reports it.
    pub async fn settle(&self, product: &str, auth: &str) {
        let path = format!("/api/v1/products/{product}");
        self.wait_for(&path, auth, "its run to end", |b| b["running"].is_null())
            .await;
    }

    /// Polls `GET path` until its body satisfies `done` and returns it; panics after a
    /// minute (a safety net, not a timing assumption), showing the last body.
    pub async fn wait_for(
        &self,
        path: &str,
        auth: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, b) = self.call(Method::GET, path, Some(auth)).await;
            assert_eq!(s, StatusCode::OK, "GET {path}: {b}");
            if done(&b) {
                return b;
            }
            assert!(Instant::now() < deadline, "GET {path}: never {what}: {b}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The stable error code of an error body (`{"error":{"code",…}}`).
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("(no error code)")
}

/// `Bearer TOKEN`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
