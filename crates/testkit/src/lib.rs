//! Shared fixtures for weft's end-to-end tests: throwaway projects, running the real `weft`
//! binary against them, and reading a Parquet lake back with the parquet crate alone (an
//! independent reader: nothing of weft's writer is used to read).

mod cluster;
pub mod control;
pub mod daemon;
pub mod http;
pub mod http_mock;
pub mod measure;
pub mod mesh;
pub mod pg;
pub mod pgtext;
pub mod process;
pub mod pypi;
pub mod readers;
pub mod rng;

pub use process::{run_within, Running, SilentServer};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The smallest valid `domain.yaml` declaring `domain`.
pub fn minimal_domain_yaml(domain: &str) -> String {
    format!("domain: {domain}\nowners: [{domain}-data@example.com]\ndescription: The {domain} domain.\n")
}

/// A project folder in a temp dir, removed on drop.
pub struct TestProject {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Variables every `weft` command of the project gets (secrets a scenario's files name).
    envs: std::sync::Mutex<Vec<(String, String)>>,
}

impl TestProject {
    /// A project whose `weft.yaml` is `weft_yaml`; `bin` is the `weft` binary
    /// (`env!("CARGO_BIN_EXE_weft")` in the caller).
    pub fn new(bin: impl Into<PathBuf>, weft_yaml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weft-test-")
            .tempdir()
            .expect("a temp dir");
        fs::write(dir.path().join("weft.yaml"), weft_yaml).expect("write weft.yaml");
        Self {
            dir,
            bin: bin.into(),
            envs: Default::default(),
        }
    }

    /// A project with a Parquet lake under `lake/` as the default product store.
    pub fn with_lake(bin: impl Into<PathBuf>, commit_interval: &str) -> Self {
        Self::new(
            bin,
            &format!(
                "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\n  commit_interval: {commit_interval}\n"
            ),
        )
    }

    /// A temporary project with one product: a Parquet lake under `lake/` (commit interval
    /// 1 s) and `domains/<domain>/<product>.yaml` holding `yaml`, its domain declared.
    pub fn one_product(bin: impl Into<PathBuf>, domain: &str, product: &str, yaml: &str) -> Self {
        let project = Self::with_lake(bin, "1s");
        project.product(domain, product, yaml);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn lake(&self) -> PathBuf {
        self.path().join("lake")
    }

    /// Writes (or replaces) `domains/<domain>/<product>.yaml`, declaring the domain with a
    /// minimal `domain.yaml` when it has none.
    pub fn product(&self, domain: &str, product: &str, yaml: &str) -> &Self {
        let dir = self.path().join("domains").join(domain);
        fs::create_dir_all(&dir).expect("create domain folder");
        let domain_file = dir.join("domain.yaml");
        if !domain_file.exists() {
            fs::write(domain_file, minimal_domain_yaml(domain)).expect("write domain.yaml");
        }
        fs::write(dir.join(format!("{product}.yaml")), yaml).expect("write product file");
        self
    }

    /// Writes (or replaces) `domains/<domain>/domain.yaml`.
    pub fn domain(&self, domain: &str, yaml: &str) -> &Self {
        self.file(&format!("domains/{domain}/domain.yaml"), yaml)
    }

    /// Writes any file of the project.
    pub fn file(&self, relative: &str, content: &str) -> &Self {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create folder");
        }
        fs::write(path, content).expect("write file");
        self
    }

    /// Creates a folder of the project (and its parents), empty if new.
    pub fn dir(&self, relative: &str) -> &Self {
        fs::create_dir_all(self.path().join(relative)).expect("create folder");
        self
    }

    /// Removes a file or folder of the project, if it exists.
    pub fn remove(&self, relative: &str) -> &Self {
        let path = self.path().join(relative);
        if path.is_dir() {
            fs::remove_dir_all(&path).expect("remove folder");
        } else if path.exists() {
            fs::remove_file(&path).expect("remove file");
        }
        self
    }

    /// `weft --project <dir> ARGS…`, ready to run or spawn; no inherited `WEFT_*` variables,
    /// the project's own ([`TestProject::env`]) set.
    pub fn weft<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("WEFT_") {
                cmd.env_remove(key);
            }
        }
        for (key, value) in self.envs.lock().expect("not poisoned").iter() {
            cmd.env(key, value);
        }
        cmd.arg("--project").arg(self.path()).args(args);
        cmd
    }

    /// Sets `key=value` for every later `weft` command of the project (`weft`, `run`, …).
    pub fn env(&self, key: &str, value: &str) -> &Self {
        let mut envs = self.envs.lock().expect("not poisoned");
        envs.retain(|(k, _)| k != key);
        envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `weft ARGS…` to completion.
    pub fn run<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Outcome(self.weft(args).output().expect("run weft"))
    }

    /// Starts `weft ARGS…`, its stderr watched line by line (see [`Running`]).
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Running::spawn(self.weft(args))
    }

    /// Starts `weft ARGS…` armed to hold at the pausepoint `point` (`WEFT_PAUSEPOINT`, see
    /// `weft_engine::failpoint`) until the returned release file exists.
    pub fn spawn_paused<I, S>(&self, point: &str, args: I) -> (Running, PathBuf)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let release = self.path().join(format!("release-{point}"));
        let mut cmd = self.weft(args);
        cmd.env("WEFT_PAUSEPOINT", format!("{point}:{}", release.display()));
        (Running::spawn(cmd), release)
    }

    /// Runs `weft ARGS…` until its first commit is durable and recorded (the `after_commit`
    /// pausepoint), then SIGKILLs it there, as a crash mid-sync would be: its outcome.
    pub fn kill_after_first_commit<I, S>(&self, args: I, limit: std::time::Duration) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let (run, _release) = self.spawn_paused("after_commit", args);
        run.kill_at("after_commit", limit)
    }

    /// Starts `weft sync run --no-progress` and SIGKILLs it after a random delay in
    /// `delay_ms` (drawn from `rng`), `kills` times, calling `between` after each kill; stops
    /// as soon as `done()` (a kill can land just after a run finished its work, and no run may
    /// start beyond it), else runs it once more to completion; then asserts `done()`. Returns
    /// how many runs were killed.
    pub fn sync_with_kills(
        &self,
        rng: &mut rng::Rng,
        kills: usize,
        delay_ms: std::ops::Range<u64>,
        done: impl Fn() -> bool,
        mut between: impl FnMut(),
    ) -> usize {
        let mut killed = 0;
        for _ in 0..kills {
            if done() {
                return killed;
            }
            let mut child = self
                .weft(["sync", "run", "--no-progress"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run weft");
            let delay = std::time::Duration::from_millis(
                delay_ms.start + rng.next(delay_ms.end - delay_ms.start),
            );
            let start = std::time::Instant::now();
            while start.elapsed() < delay {
                if let Some(status) = child.try_wait().expect("wait for weft") {
                    // It finished before the kill: that run is the completing one.
                    assert!(status.success(), "a run ended on its own with {status}");
                    return killed;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            child.kill().expect("SIGKILL weft");
            child.wait().expect("reap weft");
            killed += 1;
            between();
        }
        if !done() {
            self.run(["sync", "run", "--no-progress"]).expect_code(0);
        }
        assert!(done(), "the runs after the kills did not complete the work");
        killed
    }

    /// Runs `weft ARGS…` to completion, failing the test if it takes longer than `limit`.
    pub fn run_within<I, S>(&self, limit: std::time::Duration, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_within(self.weft(args), limit)
    }

    /// The stream folder of the lake.
    pub fn stream_dir(&self, domain: &str, product: &str, stream: &str) -> PathBuf {
        self.lake().join(domain).join(product).join(stream)
    }

    /// The committed rows of a lake stream, read back independently, as one batch.
    pub fn read_stream(&self, domain: &str, product: &str, stream: &str) -> RecordBatch {
        read_committed(&self.stream_dir(domain, product, stream))
    }

    /// The committed rows of a lake stream and how many distinct `id`s they hold (an `int64`
    /// column): equal counts of the source's size mean nothing lost and nothing duplicated.
    pub fn id_counts(&self, domain: &str, product: &str, stream: &str) -> (usize, usize) {
        let batch = self.read_stream(domain, product, stream);
        let ids = batch
            .column_by_name("id")
            .unwrap_or_else(|| panic!("{domain}/{product}/{stream} has no `id` column"))
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap_or_else(|| panic!("{domain}/{product}/{stream}: `id` is not int64"));
        let distinct: std::collections::HashSet<i64> = ids.iter().flatten().collect();
        (ids.len(), distinct.len())
    }
}

/// A finished `weft` process.
pub struct Outcome(pub Output);

impl Outcome {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// stdout then stderr, for messages that may go to either.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
    /// Asserts a refusal: exit code `code`, `message` on stdout or stderr, no panic, and none
    /// of `secrets` (passwords right and wrong) printed anywhere.
    pub fn expect_refusal(&self, code: i32, message: &str, secrets: &[&str]) -> &Self {
        self.expect_code(code);
        let all = self.all();
        assert!(all.contains(message), "expected `{message}` in: {all}");
        assert!(!all.contains("panicked"), "{all}");
        for (i, secret) in secrets.iter().enumerate() {
            assert!(!all.contains(secret), "secret #{i} was printed: {all}");
        }
        self
    }

    /// Panics with both outputs unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The data files a stream's manifest lists as committed, as absolute paths.
///
/// Reads `_weft/manifest.json` as plain JSON: the test does not trust weft's own reader.
pub fn committed_files(stream_dir: &Path) -> Vec<PathBuf> {
    let manifest = stream_dir.join("_weft").join("manifest.json");
    let Ok(text) = fs::read_to_string(&manifest) else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    json["files"]
        .as_array()
        .expect("manifest lists files")
        .iter()
        .map(|f| {
            let name = f["path"]
                .as_str()
                .or_else(|| f["name"].as_str())
                .or_else(|| f.as_str())
                .expect("a file entry names its file");
            stream_dir.join(name)
        })
        .collect()
}

/// Where the lake keeps a stream's files not yet committed: `<product>/_weft/<stream>/staging`
/// (beside the stream path, which is a symlink to the published version).
pub fn staging_dir(stream_dir: &Path) -> PathBuf {
    let stream = stream_dir.file_name().expect("a stream folder");
    stream_dir
        .parent()
        .expect("a product folder")
        .join("_weft")
        .join(stream)
        .join("staging")
}

/// The checkpoint a stream's manifest holds.
pub fn manifest_checkpoint(stream_dir: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(stream_dir.join("_weft").join("manifest.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(json["checkpoint"].clone())
}

/// The checkpoint a stream's next run resumes from: that of the generation an `overwrite` or
/// `append_dedup` run staged (committed, not yet published: the run was killed), else the
/// published one. `None` without a manifest or a checkpoint.
pub fn resume_checkpoint(stream_dir: &Path) -> Option<serde_json::Value> {
    let text = fs::read_to_string(stream_dir.join("_weft").join("manifest.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let staged = &json["pending"]["checkpoint"];
    let cp = if staged.is_null() {
        &json["checkpoint"]
    } else {
        staged
    };
    (!cp.is_null()).then(|| cp.clone())
}

/// All `*.parquet` files directly in the stream folder (what a glob reader sees).
pub fn visible_files(stream_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(stream_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads Parquet files with the parquet crate and concatenates them into one batch.
pub fn read_parquet_files(files: &[PathBuf]) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for path in files {
        let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("a parquet file")
            .with_batch_size(64 * 1024)
            .build()
            .expect("a reader");
        for batch in reader {
            batches.push(batch.expect("a batch"));
        }
    }
    batches
}

/// The committed rows of a stream folder as one batch (empty batch if nothing committed).
pub fn read_committed(stream_dir: &Path) -> RecordBatch {
    let batches = read_parquet_files(&committed_files(stream_dir));
    match batches.first() {
        Some(first) => concat_batches(&first.schema(), &batches).expect("concat"),
        None => RecordBatch::new_empty(std::sync::Arc::new(arrow::datatypes::Schema::empty())),
    }
}

/// Every value of every text or binary column of every Parquet file anywhere below `dir` (published versions,
/// staging, leftovers: symlinks are not followed, so each file is read once), as text, plus
/// the text of every other file there (manifests, locks): what a store holds, to scan for
/// values that must not be in it.
pub fn every_value_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        let Ok(entries) = fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("a file type");
            if kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                for batch in read_parquet_files(std::slice::from_ref(&path)) {
                    for column in batch.columns() {
                        // Text can only hide in text and binary columns (numbers and
                        // timestamps cannot hold an address).
                        use arrow::datatypes::DataType::*;
                        if !matches!(
                            column.data_type(),
                            Utf8 | LargeUtf8 | Utf8View | Binary | LargeBinary | BinaryView
                        ) {
                            continue;
                        }
                        let text = arrow::compute::cast(column, &Utf8)
                            .expect("text and binary columns cast to text");
                        let text = text
                            .as_any()
                            .downcast_ref::<arrow::array::StringArray>()
                            .expect("text");
                        out.extend(text.iter().flatten().map(str::to_string));
                    }
                }
            } else {
                out.push(
                    String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned(),
                );
            }
        }
    }
    out
}
