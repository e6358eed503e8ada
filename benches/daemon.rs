//! Scheduler lag of `weft daemon` with many products, against a plain tokio timer loop
//! measured in the same run.
//!
//! `cargo bench --bench daemon` (products: `WEFT_BENCH_PRODUCTS`, default 500; seconds:
//! `WEFT_BENCH_SECONDS`, default 30). Each product reads the sample source at a tiny scale
//! into the Parquet lake every `WEFT_BENCH_PERIOD` seconds (default 5), staggered so an equal
//! share is due each second.
//! The lag of a run is its recorded start minus the time it was due (from the run history),
//! so it counts the scheduler, the wait for a `max_concurrent_runs` slot and the lock; goal
//! p99 < 1 s. The reference: tokio tasks sleeping until the same due times, their wake-up lag.
//! Also prints the daemon's peak RSS and how many triggers were skipped (a product still
//! running when due again).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{env_or, BIN};
use weft_testkit::daemon::runs_with;
use weft_testkit::measure::peak_rss_mib;
use weft_testkit::TestProject;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Wake-up lag of `n` tokio tasks each sleeping until second-aligned due times every `period`.
fn reference(n: u64, period: u64, seconds: u64) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = Utc::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            tasks.push(tokio::spawn(async move {
                let mut lags = Vec::new();
                let base = start.timestamp() + 1;
                let mut due = base + (i % period) as i64;
                while due < start.timestamp() + seconds as i64 {
                    let at = DateTime::from_timestamp(due, 0).unwrap();
                    let wait = (at - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    lags.push((Utc::now() - at).num_microseconds().unwrap() as f64 / 1e6);
                    due += period as i64;
                }
                lags
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
}

fn main() {
    let n: u64 = env_or("WEFT_BENCH_PRODUCTS", 500);
    let seconds: u64 = env_or("WEFT_BENCH_SECONDS", 30);
    let period: u64 = env_or("WEFT_BENCH_PERIOD", 5u64).clamp(1, 59);
    println!("weft daemon: {n} products every {period} s (staggered), {seconds} s");
    let p = TestProject::new(
        BIN,
        "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: parquet\n    config:\n      path: lake\ndaemon:\n  max_concurrent_runs: 8\n",
    );
    for i in 0..n {
        let name = format!("p{i:04}");
        p.product(
            "bench",
            &name,
            &format!(
                "product: {name}\ndomain: bench\nowner: o@example.com\nsource:\n  connector: sample\n  config: {{ scale: 10 }}\nschedule: \"{}-59/{period} * * * * *\"\nstreams:\n  - name: orders\n",
                i % period
            ),
        );
    }
    let mut cmd = p.weft(["daemon", "-q"]);
    let log = p.path().join("daemon.log");
    cmd.stderr(std::fs::File::create(&log).expect("log file"));
    let mut daemon = cmd.spawn().expect("start weft daemon");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let rss = peak_rss_mib(daemon.id());
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let status = daemon.wait().expect("wait for weft daemon");
    let ran = started.elapsed().as_secs_f64();
    assert!(
        status.success(),
        "weft daemon exited with {status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let history = p.history();
    let mut lags: Vec<f64> = runs_with(&history, "succeeded", Some("schedule"))
        .iter()
        .map(|r| {
            let t = |f: &str| r[f].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            (t("started_at") - t("scheduled_at"))
                .num_microseconds()
                .unwrap() as f64
                / 1e6
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let skipped = runs_with(&history, "skipped", None).len();
    let mut reference = reference(n, period, seconds.min(15));
    reference.sort_by(f64::total_cmp);

    let (p50, p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    let (r50, r99) = (percentile(&reference, 0.5), percentile(&reference, 0.99));
    println!(
        "weft:      {} runs in {ran:.0} s, lag p50 {:.1} ms, p99 {:.1} ms, {skipped} skipped, peak RSS {rss:.0} MiB",
        lags.len(),
        p50 * 1e3,
        p99 * 1e3
    );
    println!(
        "reference: {} timer wake-ups, lag p50 {:.2} ms, p99 {:.2} ms",
        reference.len(),
        r50 * 1e3,
        r99 * 1e3
    );
    println!(
        "ratio weft/reference p99: {:.0} (goal: weft p99 < 1 s: {})",
        p99 / r99,
        if p99 < 1.0 { "met" } else { "NOT met" }
    );
}
