//! The scheduling loop: one task that sleeps until the earliest next run, fires every due
//! product (single-flight and limits are the runner's), and computes each one's next time.
//! A product late by more than one period fires once, not once per missed tick.

use std::time::Duration;

use chrono::{DateTime, Utc};
use weft_state::Trigger;

use crate::{key_of, runner, Daemon};

/// The longest sleep: the loop looks again at least this often (clock changes, reloads).
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub(crate) fn spawn(daemon: Daemon) {
    tokio::spawn(async move {
        while !daemon.is_stopping() {
            let now = Utc::now();
            let (due, earliest) = due_products(&daemon, now);
            for (key, at) in due {
                let _ = runner::fire(&daemon, &key, Trigger::Schedule, Some(at), None);
            }
            let sleep = earliest
                .and_then(|t| (t - Utc::now()).to_std().ok())
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            let shared = &daemon.shared;
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shared.wake.notified() => {}
                _ = shared.stopping.cancelled() => break,
            }
        }
    });
}

/// A due product and when it was due.
type Due = (weft_state::ProductKey, DateTime<Utc>);

/// The products due at `now` (with when they were due), and the earliest next run after.
fn due_products(daemon: &Daemon, now: DateTime<Utc>) -> (Vec<Due>, Option<DateTime<Utc>>) {
    let project = daemon.project();
    let mut slots = daemon.slots();
    let mut due = Vec::new();
    let mut earliest: Option<DateTime<Utc>> = None;
    for product in &project.products {
        let Some(schedule) = &product.schedule else {
            continue;
        };
        if product.policy.continuous {
            continue;
        }
        let key = key_of(product);
        let slot = slots.entry(key.clone()).or_default();
        let next = match slot.next_run {
            Some(next) => next,
            None => {
                slot.next_run = schedule.next_after(now);
                continue;
            }
        };
        if next <= now {
            if !slot.paused {
                due.push((key, next));
            }
            slot.next_run = schedule
                .next_after(next)
                .filter(|n| *n > now)
                .or_else(|| schedule.next_after(now));
        }
        if let Some(n) = slot.next_run {
            earliest = Some(earliest.map_or(n, |e| e.min(n)));
        }
    }
    (due, earliest)
}
