//! [`ProcessControl`]: a small but real [`weft_api::Control`] for tests of the HTTP layer
//! without the daemon: a trigger runs `weft sync run domain/product[/stream]` (the real binary)
//! in the background; it keeps per-product single flight, pause flags and failure counts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use weft_api::{Control, ControlError, ProductRef, ProductStatus, Scheduling, Triggered};
use weft_mesh::Project;
use weft_state::StateStore;

#[derive(Default)]
struct Entry {
    paused: bool,
    running: Option<String>,
    failures: u32,
    last_error: Option<String>,
}

/// Runs products with the real `weft` binary; see the module docs.
pub struct ProcessControl {
    bin: PathBuf,
    project: Arc<Project>,
    store: Arc<dyn StateStore>,
    entries: Arc<Mutex<HashMap<ProductRef, Entry>>>,
}

impl ProcessControl {
    pub fn new(bin: impl Into<PathBuf>, project: Arc<Project>, store: Arc<dyn StateStore>) -> Self {
        Self {
            bin: bin.into(),
            project,
            store,
            entries: Arc::default(),
        }
    }

    fn known(&self, product: &ProductRef) -> Result<(), ControlError> {
        self.project
            .product(&product.domain, &product.product)
            .map(|_| ())
            .ok_or(ControlError::UnknownProduct)
    }
}

#[async_trait::async_trait]
impl Control for ProcessControl {
    fn project(&self) -> Arc<Project> {
        self.project.clone()
    }

    fn statuses(&self) -> Vec<ProductStatus> {
        let entries = self.entries.lock().unwrap();
        let now = Utc::now();
        self.project
            .products
            .iter()
            .map(|p| {
                let r = ProductRef::new(p.domain.as_str(), p.name.as_str());
                let e = entries.get(&r);
                ProductStatus {
                    scheduling: Scheduling {
                        next_run: p.schedule.as_ref().and_then(|s| s.next_after(now)),
                        paused: e.is_some_and(|e| e.paused),
                        healthy: e.is_none_or(|e| e.failures < 3),
                        running: e.and_then(|e| e.running.clone()),
                        consecutive_failures: e.map_or(0, |e| e.failures),
                        last_error: e.and_then(|e| e.last_error.clone()),
                        ..Scheduling::idle(p)
                    },
                    product: r,
                }
            })
            .collect()
    }

    async fn trigger(
        &self,
        product: &ProductRef,
        stream: Option<&str>,
    ) -> Result<Triggered, ControlError> {
        self.known(product)?;
        if self
            .entries
            .lock()
            .unwrap()
            .get(product)
            .is_some_and(|e| e.paused)
        {
            return Err(ControlError::Paused);
        }
        if let Some(run_id) = self
            .entries
            .lock()
            .unwrap()
            .get(product)
            .and_then(|e| e.running.clone())
        {
            return Ok(Triggered::AlreadyRunning { run_id });
        }
        let latest = |store: &dyn StateStore| {
            store
                .product_runs(&product.domain, &product.product, None, 1)
                .ok()
                .and_then(|mut r| r.pop())
                .map(|r| r.run_id)
        };
        let before = latest(self.store.as_ref());
        let selector = match stream {
            Some(s) => format!("{product}/{s}"),
            None => product.to_string(),
        };
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("--project")
            .arg(&self.project.root)
            .args(["--quiet", "sync", "run", "--no-progress", &selector])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| ControlError::Other(format!("cannot start weft: {e}")))?;
        // The run id is the one the run records; wait for it to appear.
        let mut run_id = None;
        for _ in 0..200 {
            let now = latest(self.store.as_ref());
            if now.is_some() && now != before {
                run_id = now;
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let run_id = run_id.unwrap_or_else(|| "unrecorded".to_string());
        self.entries
            .lock()
            .unwrap()
            .entry(product.clone())
            .or_default()
            .running = Some(run_id.clone());
        let entries = self.entries.clone();
        let product = product.clone();
        tokio::spawn(async move {
            let out = child.wait_with_output().await;
            let mut entries = entries.lock().unwrap();
            let e = entries.entry(product).or_default();
            e.running = None;
            match out {
                Ok(o) if o.status.success() => {
                    e.failures = 0;
                    e.last_error = None;
                }
                Ok(o) => {
                    e.failures += 1;
                    e.last_error = Some(String::from_utf8_lossy(&o.stderr).trim().to_string());
                }
                Err(err) => {
                    e.failures += 1;
                    e.last_error = Some(err.to_string());
                }
            }
        });
        Ok(Triggered::Started { run_id })
    }

    async fn pause(&self, product: &ProductRef) -> Result<(), ControlError> {
        self.known(product)?;
        self.entries
            .lock()
            .unwrap()
            .entry(product.clone())
            .or_default()
            .paused = true;
        Ok(())
    }

    async fn resume(&self, product: &ProductRef) -> Result<(), ControlError> {
        self.known(product)?;
        self.entries
            .lock()
            .unwrap()
            .entry(product.clone())
            .or_default()
            .paused = false;
        Ok(())
    }

    fn config_error(&self) -> Option<String> {
        None
    }
}

/// A `weft_api::serve` on a loopback port for `project_dir`, with a [`ProcessControl`] and the
/// project's real state store; stopped on drop.
pub struct ApiServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub store: Arc<dyn StateStore>,
    pub metrics: Arc<weft_api::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl ApiServer {
    /// Loads the project, opens its state store and serves the API (call inside a runtime).
    pub async fn start(bin: impl Into<PathBuf>, project_dir: &std::path::Path) -> ApiServer {
        let project = Arc::new(Project::load(project_dir).expect("the test project loads"));
        let store: Arc<dyn StateStore> = Arc::new(
            weft_state::SqliteStateStore::open(&project.settings.state_path)
                .expect("the state store opens"),
        );
        let control = Arc::new(ProcessControl::new(bin, project, store.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics = Arc::new(weft_api::Metrics::new());
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(weft_api::serve(
            listener,
            control,
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        ApiServer {
            base,
            store,
            metrics,
            shutdown,
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `sales/orders` (sample source, three streams), `sales/broken` (a PostgreSQL source on a
/// closed port: every run fails) and `hr/people`.
pub fn catalog_project(bin: &str) -> crate::TestProject {
    let p = crate::TestProject::with_lake(bin, "1s");
    p.product(
        "sales",
        "orders",
        "product: orders\ndomain: sales\nowner: sales-team@example.com\ndescription: Orders of the web shop\nschedule: \"*/5 * * * *\"\nsource:\n  connector: sample\n  config: { scale: 2000 }\nstreams:\n  - name: customers\n  - name: orders\n    mode: incremental\n    write: append_dedup\n    primary_key: [id]\n    cursor: updated_at\n  - name: products\n    columns: [id, name]\n",
    );
    p.product(
        "sales",
        "broken",
        "product: broken\ndomain: sales\nowner: sales-team@example.com\ndescription: A source that is down\nsource:\n  connector: postgres\n  config: { host: \"127.0.0.1\", port: 1, user: postgres, database: test }\nstreams:\n  - name: public.things\n",
    );
    p.product(
        "hr",
        "people",
        "product: people\ndomain: hr\nowner: hr@example.com\ndescription: People\nsource:\n  connector: sample\n  config: { scale: 1000 }\nstreams:\n  - name: customers\n",
    );
    p
}

/// `weft token create ARGS` and the token it printed.
pub fn create_token(p: &crate::TestProject, args: &[&str]) -> String {
    let out = p.run([&["token", "create"][..], args].concat());
    out.expect_code(0);
    let token = out.stdout().trim().to_string();
    assert!(token.starts_with("weft_"), "{}", out.all());
    token
}
