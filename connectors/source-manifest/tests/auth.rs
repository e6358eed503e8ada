//! Every authenticator against a loopback mock: what reaches the server, and that tokens are
//! fetched once and reused.

mod common;

use serde_json::json;
use weft_core::SyncMode;
use weft_testkit::http_mock::{MockServer, Reply};

use common::{build, read, try_read};

fn manifest(authenticator: &str) -> String {
    format!(
        r#"
version: 6.0.0
check: {{stream_names: [me]}}
streams:
  - name: me
    retriever:
      requester:
        url_base: "{{{{ config.base }}}}"
        path: /me
        authenticator:
{authenticator}
      record_selector:
        extractor: {{field_path: []}}
    schema_loader:
      type: InlineSchemaLoader
      schema: {{type: object, properties: {{ok: {{type: boolean}}}}}}
"#
    )
}

async fn one_request(auth: &str, config: serde_json::Value) -> weft_testkit::http_mock::Seen {
    let server = MockServer::start(|_| Reply::json(json!({"ok": true}))).await;
    let mut config = config;
    config["base"] = json!(server.url());
    let b = build(&manifest(auth), config).unwrap();
    let r = read(&*b.source, "me", SyncMode::FullRefresh, None).await;
    assert_eq!(r.rows.len(), 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn api_key_bearer_and_basic() {
    let seen = one_request(
        "          type: ApiKeyAuthenticator\n          api_token: \"Token token={{ config.key }}\"\n          inject_into: {type: RequestOption, inject_into: header, field_name: X-Api-Key}",
        json!({"key": "s3cret"}),
    )
    .await;
    assert_eq!(seen.header("x-api-key"), Some("Token token=s3cret"));

    let seen = one_request(
        "          type: ApiKeyAuthenticator\n          api_token: \"{{ config.key }}\"\n          inject_into: {type: RequestOption, inject_into: request_parameter, field_name: api_key}",
        json!({"key": "k1"}),
    )
    .await;
    assert_eq!(seen.param("api_key"), Some("k1"));

    // The deprecated `header` form.
    let seen = one_request("          type: ApiKeyAuthenticator\n          header: X-Key\n          api_token: \"{{ config.key }}\"", json!({"key": "k2"})).await;
    assert_eq!(seen.header("x-key"), Some("k2"));

    let seen = one_request(
        "          type: BearerAuthenticator\n          api_token: \"{{ config.token }}\"",
        json!({"token": "t0k"}),
    )
    .await;
    assert_eq!(seen.header("authorization"), Some("Bearer t0k"));

    let seen = one_request(
        "          type: BasicHttpAuthenticator\n          username: \"{{ config.user }}\"\n          password: \"{{ config.password }}\"",
        json!({"user": "ann", "password": "pw"}),
    )
    .await;
    // base64("ann:pw")
    assert_eq!(seen.header("authorization"), Some("Basic YW5uOnB3"));

    let seen = one_request("          type: NoAuth", json!({})).await;
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_refreshes_once_and_uses_the_access_token() {
    let server = MockServer::start(|req| {
        if req.path == "/oauth/token" {
            return Reply::json(json!({"access_token": "fresh-token", "expires_in": 3600}));
        }
        if req.header("authorization") != Some("Bearer fresh-token") {
            return Reply::status(401, "bad token");
        }
        let page: i64 = req.param("page").unwrap_or("0").parse().unwrap();
        Reply::json(
            json!({"ok": true, "next": if page < 2 { json!(page + 1) } else { json!(null) }}),
        )
    })
    .await;
    let m = manifest(
        "          type: OAuthAuthenticator\n          token_refresh_endpoint: \"{{ config.base }}/oauth/token\"\n          client_id: \"{{ config.client_id }}\"\n          client_secret: \"{{ config.client_secret }}\"\n          refresh_token: \"{{ config.refresh_token }}\"\n          scopes: [read, write]",
    )
    .replace(
        "      record_selector:",
        "      paginator:\n        type: DefaultPaginator\n        page_token_option: {type: RequestOption, inject_into: request_parameter, field_name: page}\n        pagination_strategy: {type: CursorPagination, cursor_value: \"{{ response.next }}\"}\n      record_selector:",
    );
    let b = build(&m, json!({"base": server.url(), "client_id": "cid", "client_secret": "csecret", "refresh_token": "rt"})).unwrap();
    let r = read(&*b.source, "me", SyncMode::FullRefresh, None).await;
    assert_eq!(r.rows.len(), 3);
    let seen = server.seen();
    let token_calls: Vec<_> = seen.iter().filter(|s| s.path == "/oauth/token").collect();
    assert_eq!(
        token_calls.len(),
        1,
        "one refresh for three pages: {seen:?}"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(token_calls[0].body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("client_id".into(), "cid".into()),
            ("client_secret".into(), "csecret".into()),
            ("refresh_token".into(), "rt".into()),
            ("scopes".into(), "read write".into()),
        ]
    );
    assert_eq!(token_calls[0].method, "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_token_logs_in_then_injects_the_token() {
    let server = MockServer::start(|req| match req.path.as_str() {
        "/login" => Reply::json(
            json!({"auth": {"token": format!("session-for-{}", req.param("user").unwrap_or("?"))}}),
        ),
        _ => match req.header("x-session") {
            Some("session-for-ann") => Reply::json(json!({"ok": true})),
            _ => Reply::status(403, "no session"),
        },
    })
    .await;
    let m = manifest(
        "          type: SessionTokenAuthenticator\n          login_requester:\n            type: HttpRequester\n            url_base: \"{{ config.base }}\"\n            path: /login\n            http_method: POST\n            request_parameters: {user: \"{{ config.user }}\"}\n          session_token_path: [auth, token]\n          request_authentication:\n            type: ApiKey\n            inject_into: {type: RequestOption, inject_into: header, field_name: X-Session}",
    );
    let b = build(&m, json!({"base": server.url(), "user": "ann"})).unwrap();
    let r = read(&*b.source, "me", SyncMode::FullRefresh, None).await;
    assert_eq!(r.rows.len(), 1);
    let paths: Vec<String> = server
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(paths, ["POST /login", "GET /me"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn selective_authenticator_picks_by_config_and_names_a_missing_choice() {
    let auth = "          type: SelectiveAuthenticator\n          authenticator_selection_path: [credentials, auth_type]\n          authenticators:\n            token:\n              type: BearerAuthenticator\n              api_token: \"{{ config.credentials.token }}\"\n            basic:\n              type: BasicHttpAuthenticator\n              username: \"{{ config.credentials.user }}\"";
    let seen = one_request(
        auth,
        json!({"credentials": {"auth_type": "token", "token": "abc"}}),
    )
    .await;
    assert_eq!(seen.header("authorization"), Some("Bearer abc"));
    let seen = one_request(
        auth,
        json!({"credentials": {"auth_type": "basic", "user": "u"}}),
    )
    .await;
    assert_eq!(seen.header("authorization"), Some("Basic dTo="));

    let b = build(
        &manifest(auth),
        json!({"base": "http://127.0.0.1:9", "credentials": {"auth_type": "oauth"}}),
    )
    .unwrap();
    let err = try_read(&*b.source, "me", SyncMode::FullRefresh, None)
        .await
        .unwrap_err();
    assert!(err.contains("selects the authenticator `oauth`, which the manifest does not define (it has: basic, token)"), "{err}");
}
