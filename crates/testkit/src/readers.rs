//! Independent readers of a lake stream, polling it while weft writes: DuckDB globbing
//! `<stream>/*.parquet` and `pyarrow.dataset` on `<stream>`, exactly as README shows them, in a
//! Python subprocess (`pip install pyarrow duckdb`; `.ci/run` installs them).
//!
//! Each read reports the rows and the distinct keys it saw, or the error it got. A read racing
//! a publish may fail with "file not found" (it listed a version whose files were replaced
//! before it opened them) and is reported as `gone`; any other error is reported as one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
import json, os, sys
import duckdb, pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.parquet as pq
stream, key, stop = sys.argv[1:4]
con = duckdb.connect()
glob = os.path.join(stream, "*.parquet").replace("'", "''")
def gone(e):
    text = str(e)
    return isinstance(e, FileNotFoundError) or "No such file" in text or "No files found" in text \
        or "not found" in text.lower()
def duck():
    rows, keys = con.execute(
        f'SELECT count(*), count(DISTINCT "{key}") FROM read_parquet(\'{glob}\', union_by_name = true)'
    ).fetchone()
    return rows, keys
def arrow():
    files = ds.dataset(stream, format="parquet").files
    if not files:
        return 0, 0
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    t = ds.dataset(files, format="parquet", schema=schema).to_table(columns=[key])
    return t.num_rows, len(pc.unique(t[key]))
while True:
    last = os.path.exists(stop)
    for name, read in (("duckdb", duck), ("pyarrow", arrow)):
        try:
            rows, keys = read()
            out = {"reader": name, "rows": rows, "keys": keys}
        except Exception as e:
            out = {"reader": name, "gone" if gone(e) else "error": f"{type(e).__name__}: {e}"[:400]}
        print(json.dumps(out), flush=True)
    if last:
        break
"#;

/// One read of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// What the reader saw: rows and distinct keys.
    Seen {
        reader: String,
        rows: u64,
        keys: u64,
    },
    /// The stream or a listed file was not there (no table yet, or a publish raced the read).
    Gone { reader: String, message: String },
    /// Any other failure.
    Failed { reader: String, message: String },
}

/// A reader process polling a stream folder until [`GlobReaders::stop`].
pub struct GlobReaders {
    child: Child,
    stop_file: PathBuf,
    reads: Arc<Mutex<Vec<Read>>>,
    /// Set when the reader's output ended (it stopped, or failed to start).
    ended: Arc<std::sync::atomic::AtomicBool>,
    pump: Option<std::thread::JoinHandle<()>>,
}

impl GlobReaders {
    /// Starts polling `stream_dir` (which may not exist yet), counting distinct `key` values.
    pub fn start(stream_dir: &Path, key: &str) -> Self {
        let stop_file = std::env::temp_dir().join(format!(
            "weft-readers-stop-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(stream_dir)
            .arg(key)
            .arg(&stop_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (pip install pyarrow duckdb)");
        let stdout = child.stdout.take().unwrap();
        let reads = Arc::new(Mutex::new(Vec::new()));
        let sink = reads.clone();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ended_flag = ended.clone();
        let pump = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("reader printed {line:?}: {e}"));
                let reader = v["reader"].as_str().unwrap_or("?").to_string();
                let read = if let Some(m) = v["gone"].as_str() {
                    Read::Gone {
                        reader,
                        message: m.to_string(),
                    }
                } else if let Some(m) = v["error"].as_str() {
                    Read::Failed {
                        reader,
                        message: m.to_string(),
                    }
                } else {
                    Read::Seen {
                        reader,
                        rows: v["rows"].as_u64().unwrap(),
                        keys: v["keys"].as_u64().unwrap(),
                    }
                };
                sink.lock().unwrap().push(read);
            }
            ended_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Self {
            child,
            stop_file,
            reads,
            ended,
            pump: Some(pump),
        }
    }

    /// The reads so far.
    pub fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap().clone()
    }

    /// Waits until both readers have seen exactly `rows` rows (a committed state), so a test
    /// knows the readers are running and caught it. Panics after `timeout`.
    pub fn wait_for_rows(&self, rows: u64, timeout: Duration) {
        let start = Instant::now();
        loop {
            let reads = self.reads();
            let seen = |name: &str| {
                reads.iter().any(|r| {
                    matches!(r, Read::Seen { reader, rows: n, .. } if reader == name && *n == rows)
                })
            };
            if seen("duckdb") && seen("pyarrow") {
                return;
            }
            assert!(
                !self.ended.load(std::sync::atomic::Ordering::SeqCst),
                "the reader process ended (are pyarrow and duckdb installed? \
                 `pip install pyarrow duckdb`); its reads: {reads:?}"
            );
            assert!(
                start.elapsed() < timeout,
                "the readers never saw {rows} rows; last reads: {:?}",
                &reads[reads.len().saturating_sub(6)..]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the readers after one more round and returns every read.
    pub fn stop(mut self) -> Vec<Read> {
        std::fs::write(&self.stop_file, b"stop").unwrap();
        let status = self.child.wait().unwrap();
        if let Some(pump) = self.pump.take() {
            pump.join().unwrap();
        }
        let _ = std::fs::remove_file(&self.stop_file);
        assert!(status.success(), "the reader process failed: {status}");
        self.reads()
    }
}

impl Drop for GlobReaders {
    fn drop(&mut self) {
        // A test that panicked before `stop`: don't leave the poller running.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stop_file);
    }
}

const DUMP: &str = r#"
import json, os, sys
import duckdb, pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
stream, order = sys.argv[1:3]
glob = os.path.join(stream, "*.parquet").replace("'", "''")
order = order.split(",")
by = ", ".join('"' + c.replace('"', '""') + '"' for c in order)
rel = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', union_by_name = true) ORDER BY {by}")
duck = [dict(zip(rel.columns, [None if v is None else str(v) for v in row])) for row in rel.fetchall()]
files = ds.dataset(stream, format="parquet").files
schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
t = ds.dataset(files, format="parquet", schema=schema).to_table().sort_by([(c, "ascending") for c in order])
arrow = [{k: None if v is None else str(v) for k, v in r.items()} for r in t.to_pylist()]
types = {f.name: str(f.type) for f in schema}
print(json.dumps({"duckdb": duck, "pyarrow": arrow, "types": types}))
"#;

/// A stream's rows as DuckDB and pyarrow read it the way README shows (combining files by
/// name), ordered by `order` (column names, comma-separated: give enough for a total order,
/// or the two readers may order ties differently).
pub struct Dump {
    /// One map per row, column to value as text (`None` for NULL), from DuckDB.
    pub duckdb: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The same from pyarrow.
    pub pyarrow: Vec<serde_json::Map<String, serde_json::Value>>,
    /// pyarrow's unified column types (`int64`, `string`, …).
    pub types: serde_json::Map<String, serde_json::Value>,
}

impl Dump {
    /// Column `column` of every row, from both readers; panics if they disagree.
    pub fn column(&self, column: &str) -> Vec<Option<String>> {
        let of = |rows: &[serde_json::Map<String, serde_json::Value>]| -> Vec<Option<String>> {
            rows.iter()
                .map(|r| r.get(column).and_then(|v| v.as_str()).map(String::from))
                .collect()
        };
        let (d, a) = (of(&self.duckdb), of(&self.pyarrow));
        assert_eq!(d, a, "DuckDB and pyarrow disagree on column {column}");
        d
    }

    /// Column `column` of every row read as a `T` (ids, counts); panics on a NULL or a value
    /// that is not a `T`.
    pub fn values<T: std::str::FromStr>(&self, column: &str) -> Vec<T> {
        self.column(column)
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                let v = v.unwrap_or_else(|| panic!("row {row}: {column} is NULL"));
                v.parse()
                    .unwrap_or_else(|_| panic!("row {row}: {column} = {v:?} does not parse"))
            })
            .collect()
    }

    /// Every row as its `columns`' values joined by `|`, NULL as nothing: what `psql -tA`
    /// prints for the same columns, to compare with a query on the source.
    pub fn rows(&self, columns: &[&str]) -> Vec<String> {
        let values: Vec<Vec<Option<String>>> = columns.iter().map(|c| self.column(c)).collect();
        let n = values.first().map_or(0, Vec::len);
        (0..n)
            .map(|i| {
                values
                    .iter()
                    .map(|column| column[i].as_deref().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }
}

/// Reads `stream_dir` once with DuckDB and pyarrow, as README shows.
pub fn dump(stream_dir: &Path, order: &str) -> Dump {
    let v = python_json(DUMP, stream_dir, &[order], "DuckDB and pyarrow");
    let rows = |name: &str| {
        v[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    };
    Dump {
        duckdb: rows("duckdb"),
        pyarrow: rows("pyarrow"),
        types: v["types"].as_object().unwrap().clone(),
    }
}

const METADATA: &str = r#"
import json, sys
import pyarrow.dataset as ds, pyarrow.parquet as pq
out = []
for f in sorted(ds.dataset(sys.argv[1], format="parquet").files):
    s = pq.read_schema(f)
    d = lambda m: {k.decode(): v.decode() for k, v in (m or {}).items()}
    out.append({"schema": d(s.metadata), "fields": {x.name: d(x.metadata) for x in s}})
print(json.dumps(out))
"#;

/// pyarrow's view of the metadata of every Parquet file of `stream_dir`, in file order:
/// `[{"schema": {key: value}, "fields": {column: {key: value}}}]`.
pub fn parquet_metadata(stream_dir: &Path) -> Vec<serde_json::Value> {
    let v = python_json(METADATA, stream_dir, &[], "pyarrow");
    v.as_array().expect("a list").clone()
}

/// Runs a reader `script` on `stream_dir` (and `args`) with python3 and parses the JSON it
/// prints; a failure fails the test, naming the `readers`.
fn python_json(script: &str, stream_dir: &Path, args: &[&str], readers: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(stream_dir)
        .args(args)
        .output()
        .expect("python3 runs (pip install pyarrow duckdb)");
    assert!(
        out.status.success(),
        "reading {} with {readers} failed: {}",
        stream_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
