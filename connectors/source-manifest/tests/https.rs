//! `https://` APIs against a real TLS server on loopback (Python's `http.server` behind
//! `ssl`, with a certificate made by the `openssl` command): the source trusts the machine's CA
//! store, which `SSL_CERT_FILE` replaces as with OpenSSL's own tools, and a server it does not
//! trust fails at once with the reason and the way out, never after minutes of retries.
//!
//! One test in this binary: it sets `SSL_CERT_FILE` for the whole process.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::SyncMode;

use common::{build, try_read};

const MANIFEST: &str = r#"
version: 6.0.0
check: {stream_names: [me]}
streams:
  - name: me
    retriever:
      requester:
        url_base: "{{ config.base }}"
        path: /me
        authenticator:
          type: ApiKeyAuthenticator
          api_token: "{{ config.key }}"
          inject_into: {type: RequestOption, inject_into: request_parameter, field_name: api_key}
      record_selector:
        extractor: {field_path: [items]}
    schema_loader:
      type: InlineSchemaLoader
      schema: {type: object, properties: {id: {type: integer}, name: {type: string}}}
"#;

/// A CA (ca.pem) and a certificate for 127.0.0.1 it signed (cert.pem, key.pem) in `dir`.
fn certificate(dir: &Path) {
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command");
        assert!(status.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=weft test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
}

/// Serves `{"items": [...]}` for `GET /me` over TLS; returns the child and its port.
fn tls_server(dir: &Path) -> (Child, u16) {
    let script = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"items": [{"id": 1, "name": "ann"}, {"id": 2, "name": "bo"}]}).encode()
        self.send_response(200 if self.path.startswith("/me?api_key=s3cret") else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("cert.pem", "key.pem")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    (child, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_apis_are_read_and_an_untrusted_certificate_fails_at_once_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let (mut server, port) = tls_server(dir.path());
    let config = json!({"base": format!("https://127.0.0.1:{port}"), "key": "s3cret"});

    // The machine's store does not hold the test's certificate.
    std::env::remove_var("SSL_CERT_FILE");
    let b = build(MANIFEST, config.clone()).unwrap();
    let started = Instant::now();
    let err = try_read(&*b.source, "me", SyncMode::FullRefresh, None)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a certificate refusal was retried ({:?})",
        started.elapsed()
    );
    eprintln!("the refusal: {err}");
    assert!(err.contains("stream `me`"), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("SSL_CERT_FILE"), "{err}");
    // The query carries the API key: the error names the URL redacted, never as sent.
    assert!(!err.contains("s3cret"), "the error leaks the key: {err}");

    // Trusting it: the rows arrive over TLS.
    std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.pem"));
    let b = build(MANIFEST, config).unwrap();
    let read = try_read(&*b.source, "me", SyncMode::FullRefresh, None)
        .await
        .unwrap();
    assert_eq!(
        read.rows,
        vec![
            json!({"id": 1, "name": "ann"}),
            json!({"id": 2, "name": "bo"})
        ]
    );
    let _ = server.kill();
    let _ = server.wait();
}
