//! Measures the memory store's latency while it grows to many open
//! sessions, at store level (no HTTP, no token checks):
//!
//! 1. opens: `sessions` distinct identities (default 150,000) each open a
//!    session through `Store::admit`, from `tasks` tokio tasks (default 64)
//!    on two worker threads, like that many concurrent first calls;
//! 2. reuses: once full, as many admissions of identities picked at random
//!    among the open ones;
//! 3. `usage()` (what each `/metrics` scrape reads) with the store full,
//!    and `list()` for scale;
//! 4. every session expired at once: the next `usage()` and admission.
//!
//! For 1 and 2 it prints two latencies per admission, as p50 / p99 / p99.9 /
//! max: the *call* (the `admit` call alone: waiting for the lock plus the
//! critical section) and the *request* (from the moment the task's previous
//! admission finished, i.e. when its next request would be on the wire,
//! until this one returns: it includes waiting behind the other in-flight
//! tasks, so one long critical section shows up in every request queued
//! behind it, as it does behind a proxy thread). It also prints the slowest
//! calls with the number of open sessions at the time, which tells a stall
//! that comes with the store's size (a table growing) from scheduler noise.
//!
//! Run: `cargo run --release -p session-gateway-bench --bin memory-store`
//! (optional arguments: sessions, tasks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_gateway::clock::{Clock as _, ManualClock, SystemClock};
use session_gateway::licensing::{Pool, Pools};
use session_gateway::session::{
    AdmitRequest, MemoryStore, SessionFilter, SessionIdentity, SessionStore, new_session_id,
};
use session_gateway_e2e::contract;

/// The identity of bench user `n` under the default rule.
fn identity(n: u64) -> SessionIdentity {
    contract::caller(&format!("user-{n}"), "erp-web").identity
}

/// One admission's latencies, and how many sessions were open before it.
#[derive(Clone, Copy)]
struct Sample {
    call: Duration,
    request: Duration,
    open: u64,
}

/// Runs `count` admissions from `tasks` tasks; `pick(i)` names the identity
/// of the `i`-th admission. Every admission must hold a session.
async fn run(
    store: &Arc<MemoryStore>,
    pool: &Arc<Pool>,
    identities: &Arc<Vec<SessionIdentity>>,
    tasks: u64,
    count: u64,
    pick: fn(u64, u64) -> usize,
) -> anyhow::Result<(Vec<Sample>, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let n = identities.len() as u64;
    let workers = (0..tasks).map(|_| {
        let (store, pool, identities, next) = (
            Arc::clone(store),
            Arc::clone(pool),
            Arc::clone(identities),
            Arc::clone(&next),
        );
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut issued = Instant::now();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(samples);
                }
                let identity = &identities[pick(i, n)];
                let request = AdmitRequest::of(&pool, identity);
                let called = Instant::now();
                let outcome = store.admit(&request).await?;
                let done = Instant::now();
                anyhow::ensure!(outcome.admission.session().is_some(), "refused");
                samples.push(Sample {
                    call: done - called,
                    request: done - issued,
                    open: i.min(n),
                });
                // This task's next request is on the wire from now on; let
                // the other tasks run first, as a proxy thread turns to the
                // next ready connection.
                issued = done;
                tokio::task::yield_now().await;
            }
        })
    });
    let mut samples = Vec::with_capacity(count as usize);
    for worker in futures_util::future::join_all(workers).await {
        samples.extend(worker??);
    }
    Ok((samples, started.elapsed()))
}

/// `p50 / p99 / p99.9 / max` of some durations, in microseconds.
fn percentiles(mut values: Vec<Duration>) -> String {
    values.sort_unstable();
    let at = |q: f64| {
        let i = ((values.len() as f64 * q).ceil() as usize).saturating_sub(1);
        values.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    format!(
        "p50 {:.1} / p99 {:.1} / p99.9 {:.1} / max {:.1} us",
        at(0.50),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

fn report(label: &str, samples: &[Sample], elapsed: Duration) {
    println!(
        "{label}: {} admissions in {:.2} s = {:.0}/s",
        samples.len(),
        elapsed.as_secs_f64(),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  call    {}",
        percentiles(samples.iter().map(|s| s.call).collect())
    );
    println!(
        "  request {}",
        percentiles(samples.iter().map(|s| s.request).collect())
    );
    let mut slowest = samples.to_vec();
    slowest.sort_unstable_by_key(|s| std::cmp::Reverse(s.call));
    let worst: Vec<String> = slowest
        .iter()
        .take(8)
        .map(|s| format!("{:.2} ms at {}", s.call.as_secs_f64() * 1e3, s.open))
        .collect();
    println!("  slowest calls (open sessions): {}", worst.join(", "));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sessions: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(150_000);
    let tasks: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);

    // The load benchmark's pool: a limit far above the sessions, no caps.
    let pool = Arc::new(contract::pool("default", 1_000_000));
    let pools = Pools::new(vec![(*pool).clone()]);
    // A clock that stands still: nothing expires while this measures.
    let clock = ManualClock::starting_at(SystemClock.now_ms());
    let store = Arc::new(MemoryStore::new(&pools, Arc::new(clock.clone())));
    // Identities are derived up front (SHA-256 per claim set): the timings
    // are the store's alone.
    let identities: Arc<Vec<SessionIdentity>> = Arc::new((0..sessions).map(identity).collect());
    // Warm the session id generator (first use seeds its RNG).
    let _ = new_session_id();

    // 1. Opens: identity i for admission i, so the store grows by one each.
    let (opens, elapsed) = run(&store, &pool, &identities, tasks, sessions, |i, _| {
        i as usize
    })
    .await?;
    report(
        &format!("opens ({sessions} distinct identities, {tasks} tasks)"),
        &opens,
        elapsed,
    );

    // 2. Reuses once full: a cheap LCG spreads the picks over the store.
    let (reuses, elapsed) = run(&store, &pool, &identities, tasks, sessions, |i, n| {
        (i.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            % n) as usize
    })
    .await?;
    report(&format!("reuses ({sessions} open)"), &reuses, elapsed);

    // 3. usage() with the store full, as a /metrics scrape reads it.
    let mut usage = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let pools = store.usage().await?;
        usage.push(started.elapsed());
        anyhow::ensure!(
            pools.first().map(|p| u64::from(p.in_use)) == Some(sessions),
            "usage disagrees with the sessions opened"
        );
    }
    println!("usage() with {sessions} open: {}", percentiles(usage));
    // list() is an operator call that returns every session: it is O(open
    // sessions) by nature, and shown for scale only.
    let started = Instant::now();
    let listed = store.list(&SessionFilter::default()).await?.len();
    println!(
        "list() of {listed} sessions (operator API, for scale): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // 4. Every session expired at once (a burst of users gone idle): the
    //    next usage() and the next admission, which purges the pool.
    clock.advance(pool.idle_timeout + Duration::from_secs(1));
    let started = Instant::now();
    let in_use = store.usage().await?.first().map_or(0, |p| p.in_use);
    let usage_expired = started.elapsed();
    let started = Instant::now();
    let outcome = store
        .admit(&AdmitRequest::of(&pool, &identities[0]))
        .await?;
    println!(
        "all {sessions} expired: usage() {:.2} ms (in_use {in_use}), next admission {:.2} ms (closed {} expired)",
        usage_expired.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3,
        outcome.expired.len()
    );
    Ok(())
}
