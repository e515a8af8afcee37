//! Measures the Redis store on this machine against a real, local
//! `redis-server` (started on a free loopback port, killed at the end):
//!
//! 1. admissions per second: distinct identities opening sessions through
//!    `Store::admit`, 64 in flight (store level: no HTTP, no token checks);
//!    with each admission's latency (percentiles) and this process's RSS;
//! 2. Redis memory per open session: `used_memory` before and after, divided
//!    by the number of sessions, plus `MEMORY USAGE` of the pool's session
//!    hash and seat set (layout 2 keeps no key per session);
//! 3. Redis commands per request at steady state: 1,000 open sessions called
//!    as fast as they go for a few seconds (dense), and 50,000 each called
//!    about every 1.5 s for 65 s (sparse), at random, through
//!    `SessionStore::admit` with the lease cache on, with leases that live
//!    one 1-second touch interval (as before `lease_revalidate`) and with
//!    the defaults (30 s / 30 s), `INFO commandstats` before and after;
//! 4. the cost of `redis.wait_replicas = 1`: admissions per second against a
//!    primary with one replica, without and with `WAIT`, in the same run;
//! 5. the usage history's cost: admissions per second with the default
//!    retention and with the history off, alternating, the size of its
//!    minute, hour and day records, and the bound per pool it gives.
//!
//! Run: `cargo run --release -p session-gateway-bench --bin redis-store`
//! (optional arguments: sessions for step 1, seconds for step 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use session_gateway::clock::{Clock, SystemClock};
use session_gateway::config::RedisConfig;
use session_gateway::licensing::{Pool, Pools};
use session_gateway::session::{
    AdmitRequest, RedisStore, SessionIdentity, SessionStore, UsageLedger,
};
use session_gateway::usage::{Step, UsageRetention};
use session_gateway_e2e::{RedisServer, contract};

/// The identity of bench user `n`.
fn identity(n: u64) -> SessionIdentity {
    contract::caller(&format!("user-{n}"), "erp-web").identity
}

/// Opens `sessions` sessions (64 in flight) with identities from `first`
/// on; admissions per second.
async fn admissions_per_second(
    store: &Arc<RedisStore>,
    pool: &Arc<Pool>,
    first: u64,
    sessions: u64,
) -> anyhow::Result<f64> {
    Ok(admissions(store, pool, first, sessions).await?.0)
}

/// Opens `sessions` sessions (64 in flight) with identities from `first`
/// on; admissions per second and each admission's latency, sorted.
async fn admissions(
    store: &Arc<RedisStore>,
    pool: &Arc<Pool>,
    first: u64,
    sessions: u64,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let next = Arc::new(AtomicU64::new(first));
    let started = Instant::now();
    let workers = (0..64).map(|_| {
        let (store, next, pool) = (Arc::clone(store), Arc::clone(&next), Arc::clone(pool));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= first + sessions {
                    return anyhow::Ok(latencies);
                }
                let identity = identity(n);
                let request = AdmitRequest::of(&pool, &identity);
                let asked = Instant::now();
                let outcome = store.admit(&request).await?;
                latencies.push(asked.elapsed());
                anyhow::ensure!(outcome.admission.session().is_some(), "refused");
            }
        })
    });
    let mut latencies = Vec::with_capacity(sessions as usize);
    for worker in futures_util::future::join_all(workers).await {
        latencies.extend(worker??);
    }
    latencies.sort_unstable();
    Ok((sessions as f64 / started.elapsed().as_secs_f64(), latencies))
}

/// The `q` quantile of sorted latencies, in ms.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    sorted[((last as f64) * q).round() as usize].as_secs_f64() * 1000.0
}

/// This process's resident set size in MiB (Linux).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn config(url: String, touch_interval: Duration) -> RedisConfig {
    let mut config = session_gateway_e2e::store_config(url, "bench");
    config.touch_interval = touch_interval;
    config
}

fn info_number(info: &str, key: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The CPU time Redis has used (user + system), in seconds.
fn redis_cpu_seconds(redis: &RedisServer) -> anyhow::Result<f64> {
    let info = redis.cli(&["INFO", "cpu"])?;
    let field = |key: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(field("used_cpu_user") + field("used_cpu_sys"))
}

fn total_calls(commandstats: &str) -> u64 {
    commandstats
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// Opens `active` sessions through a store with the lease cache on, then
/// calls them at random from 64 tasks for `seconds`, as fast as they go or
/// paced so that each session is called about once per `pace`: the
/// admissions made and every command Redis ran meanwhile (script internals
/// included; the `INFO` that reads them counts one).
async fn steady_state(
    redis: &RedisServer,
    pools: &Pools,
    pool: &Arc<Pool>,
    (active, pace, seconds): (u64, Option<Duration>, u64),
    touch_interval: Duration,
    lease_revalidate: Duration,
) -> anyhow::Result<(u64, u64, f64)> {
    assert_eq!(redis.cli(&["FLUSHALL"])?, "OK");
    let mut config = config(redis.url(), touch_interval);
    config.lease_revalidate = lease_revalidate;
    let cached = RedisStore::new(&config, pools, Arc::new(SystemClock))?;
    admissions_per_second(&cached, pool, 0, active).await?;
    redis.cli(&["CONFIG", "RESETSTAT"])?;
    let cpu_before = redis_cpu_seconds(redis)?;
    let requests = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    const WORKERS: u64 = 64;
    // Each worker's share of the calls: one per `pace * WORKERS / active`.
    let period = pace.map(|p| p * WORKERS as u32 / active as u32);
    let workers = (0..WORKERS).map(|w| {
        let (store, requests, pool) =
            (Arc::clone(&cached), Arc::clone(&requests), Arc::clone(pool));
        tokio::spawn(async move {
            let mut ticks = period.map(tokio::time::interval);
            // xorshift64* over the whole u64 state, reduced per call: an LCG
            // reduced modulo `active` as its own state falls into short
            // cycles and calls a few sessions only.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (w + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            while Instant::now() < deadline {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let n = state.wrapping_mul(0x2545_f491_4f6c_dd1d) % active;
                let identity = identity(n);
                store.admit(&AdmitRequest::of(&pool, &identity)).await?;
                requests.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    });
    for worker in futures_util::future::join_all(workers).await {
        worker??;
    }
    let calls = total_calls(&redis.cli(&["INFO", "commandstats"])?);
    let cpu = redis_cpu_seconds(redis)? - cpu_before;
    Ok((requests.load(Ordering::Relaxed), calls, cpu))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sessions: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);

    let pool = Arc::new(contract::pool("bench", u32::MAX / 2));
    let pools = Pools::new(vec![(*pool).clone()]);
    if args.get(3).map(String::as_str) == Some("history") {
        return usage_history_cost(&pool, &pools, (sessions / 4).max(1000)).await;
    }
    let redis = RedisServer::start()?;

    // 1. Admissions per second (every identity is new: every call is a
    //    script), with the lease cache on as in a gateway, so the RSS below
    //    includes a lease per session.
    let store = RedisStore::new(
        &config(redis.url(), Duration::from_secs(30)),
        &pools,
        Arc::new(SystemClock),
    )?;
    store.ping().await?;
    let before = info_number(&redis.cli(&["INFO", "memory"])?, "used_memory");
    let rss_before = rss_mib();
    let (rate, latencies) = admissions(&store, &pool, 0, sessions).await?;
    let elapsed = Duration::from_secs_f64(sessions as f64 / rate);
    let after = info_number(&redis.cli(&["INFO", "memory"])?, "used_memory");
    println!(
        "admissions: {sessions} new sessions in {:.2} s = {:.0} admissions/s (64 in flight, store level); \
         latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        elapsed.as_secs_f64(),
        rate,
        quantile_ms(&latencies, 0.5),
        quantile_ms(&latencies, 0.9),
        quantile_ms(&latencies, 0.99),
        quantile_ms(&latencies, 0.999),
        quantile_ms(&latencies, 1.0),
    );
    println!(
        "process RSS: {:.0} MiB before, {:.0} MiB with {sessions} sessions confirmed (lease cache on)",
        rss_before,
        rss_mib()
    );

    // 2. Memory per open session: the whole of Redis's growth, and the two
    //    keys that hold a pool's sessions (layout 2: no key per session).
    let usage = store.usage().await?;
    let open = f64::from(usage[0].in_use.max(1));
    let key_usage = |key: &str| -> anyhow::Result<u64> {
        Ok(redis
            .cli(&["MEMORY", "USAGE", key, "SAMPLES", "0"])?
            .trim()
            .parse()
            .unwrap_or(0))
    };
    let sessions_hash = key_usage("{bench:bench}:s")?;
    let seats = key_usage("{bench:bench}:b:0")?;
    println!(
        "memory: {} open sessions, used_memory +{} bytes = {:.0} bytes/session; MEMORY USAGE: session hash {:.0} B/session, seat set {:.0} B/session, keys in Redis {}",
        usage[0].in_use,
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / open,
        sessions_hash as f64 / open,
        seats as f64 / open,
        redis.cli(&["DBSIZE"])?.trim(),
    );

    // 3. Commands per request at steady state with the lease cache on: a
    //    dense fleet (1,000 sessions, each called many times a second) and a
    //    sparse one (50,000 sessions, each called every second or two), each
    //    with leases that live one touch interval of 1 s (the behaviour
    //    before `lease_revalidate`) and with today's defaults (30 s / 30 s).
    //    The sparse run paces its calls so that each session is called about
    //    every 1.5 s, and lasts 65 s, so that every lease is touched at least
    //    twice at the 30 s default.
    let sparse = Some(Duration::from_millis(1500));
    for (active, pace, seconds) in [(1_000u64, None, seconds), (50_000, sparse, 65)] {
        for (touch, revalidate) in [(1, 1), (30, 30)] {
            let (requests, calls, cpu) = steady_state(
                &redis,
                &pools,
                &pool,
                (active, pace, seconds),
                Duration::from_secs(touch),
                Duration::from_secs(revalidate),
            )
            .await?;
            println!(
                "steady state: {active} open sessions, touch_interval {touch} s, lease_revalidate {revalidate} s: \
                 {requests} admissions in {seconds} s (each session every {:.2} s), {calls} Redis commands = {:.4} commands/request, \
                 Redis CPU {cpu:.2} s = {:.2} µs/request",
                (active * seconds) as f64 / requests.max(1) as f64,
                calls as f64 / requests.max(1) as f64,
                cpu * 1e6 / requests.max(1) as f64
            );
        }
    }

    // 4. WAIT's cost: one replica, admissions without and with WAIT, twice
    //    each, alternating (the machine is noisy: compare within the run).
    let replica_of = redis.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of])?;
    session_gateway_e2e::eventually("the replica to follow the primary", || async {
        let info = replica.cli(&["INFO", "replication"])?;
        Ok(info.contains("master_link_status:up").then_some(()))
    })
    .await?;
    let plain = RedisStore::new(
        &config(redis.url(), Duration::ZERO),
        &pools,
        Arc::new(SystemClock),
    )?;
    let mut waiting_config = config(redis.url(), Duration::ZERO);
    waiting_config.wait_replicas = 1;
    waiting_config.wait_timeout = Duration::from_secs(1);
    let waiting = RedisStore::new(&waiting_config, &pools, Arc::new(SystemClock))?;
    let batch = (sessions / 4).max(1000);
    let mut first = 10_000_000;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        without.push(admissions_per_second(&plain, &pool, first, batch).await?);
        first += batch;
        with.push(admissions_per_second(&waiting, &pool, first, batch).await?);
        first += batch;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "wait_replicas = 1 (one local replica): {:.0} admissions/s with WAIT vs {:.0}/s without ({:.2}x), {batch} per round, 2 rounds each",
        mean(&with),
        mean(&without),
        mean(&with) / mean(&without)
    );
    drop(replica);

    usage_history_cost(&pool, &pools, batch).await
}

/// 5. The usage history's cost: admissions with the default retention and
///    with the history off, alternating, on a fresh Redis; then the size of
///    its records and subject sets, and a read of two days of minutes.
async fn usage_history_cost(pool: &Arc<Pool>, pools: &Pools, batch: u64) -> anyhow::Result<()> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let redis = RedisServer::start()?;
    let off = UsageRetention {
        minutes: Duration::ZERO,
        hours: Duration::ZERO,
        days: Duration::ZERO,
    };
    let kept = RedisStore::new(
        &config(redis.url(), Duration::ZERO),
        pools,
        Arc::new(SystemClock),
    )?;
    let unkept = RedisStore::new(
        &config(redis.url(), Duration::ZERO),
        &Pools::new(vec![(**pool).clone()]).with_usage_retention(off),
        Arc::new(SystemClock),
    )?;
    let (mut on, mut none) = (Vec::new(), Vec::new());
    let mut first = 20_000_000;
    for _ in 0..3 {
        none.push(admissions_per_second(&unkept, pool, first, batch).await?);
        first += batch;
        on.push(admissions_per_second(&kept, pool, first, batch).await?);
        first += batch;
    }
    println!(
        "usage history: {:.0} admissions/s with it vs {:.0}/s without ({:.2}x), {batch} per round, 3 rounds each",
        mean(&on),
        mean(&none),
        mean(&on) / mean(&none)
    );
    let now = SystemClock.now_ms();
    let record = |letter: &str, step: Step| -> anyhow::Result<u64> {
        let key = format!("{{bench:bench}}:h:{letter}:{}", step.index(now));
        Ok(redis
            .cli(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])?
            .trim()
            .parse()
            .unwrap_or(0))
    };
    let (minute, hour, day) = (
        record("m", Step::Minute)?,
        record("h", Step::Hour)?,
        record("d", Step::Day)?,
    );
    let retention = UsageRetention::default();
    let count = |step: Step| retention.of(step).as_millis() as u64 / step.ms();
    let bound = minute * count(Step::Minute) + hour * count(Step::Hour) + day * count(Step::Day);
    let started = Instant::now();
    let two_days = kept
        .usage_ledger(
            "bench",
            None,
            Step::Minute,
            Step::Minute.index(now) - 2 * 1440,
        )
        .await?;
    println!(
        "usage history records (MEMORY USAGE): minute {minute} B, hour {hour} B, day {day} B; \
         at the default retention ({} minutes, {} hours, {} days) at most {:.2} MiB per pool; \
         reading two days of minutes took {:.1} ms ({} written)",
        count(Step::Minute),
        count(Step::Hour),
        count(Step::Day),
        bound as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64() * 1000.0,
        two_days.map_or(0, |s| s.tallies.len())
    );
    let day_set = format!("{{bench:bench}}:h:ds:{}", Step::Day.index(now));
    let members: f64 = redis
        .cli(&["SCARD", &day_set])?
        .trim()
        .parse()
        .unwrap_or(0.0);
    let set_bytes: f64 = redis
        .cli(&["MEMORY", "USAGE", &day_set, "SAMPLES", "0"])?
        .trim()
        .parse()
        .unwrap_or(0.0);
    println!(
        "distinct subjects: {members} in the day's set, {:.0} B per subject (the month's set costs as much while it lives)",
        set_bytes / members.max(1.0)
    );
    Ok(())
}
