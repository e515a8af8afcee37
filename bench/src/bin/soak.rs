//! Soak run: two real gateway processes (release build) sharing one real
//! `redis-server`, the devkit issuer and backend, a pool with fewer seats than
//! users, sustained load from one client task per user spread over both
//! instances, and on a schedule: a Redis restart, an issuer outage followed by
//! a signing-key rotation, and a graceful stop (SIGTERM) of one gateway.
//! Everything listens on 127.0.0.1 and is killed at the end.
//!
//! Bounded in time (`--duration`, default 60 s) and in requests
//! (`--max-requests`). Prints a summary and exits non-zero when an invariant
//! breaks; docs/soak.md explains the invariants and how each is checked.
//!
//! Run: `cargo build --release -p session-gateway -p session-gateway-bench &&
//! ./target/release/soak --duration 60`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer, Reply, TokenRequest};
use tokio::sync::{Mutex, RwLock};

/// The configured `sessions.touch_interval`: the documented bound on how
/// long an instance may still use a session that Redis no longer holds.
const TOUCH_INTERVAL: Duration = Duration::from_secs(1);
/// Extra time allowed on top of that bound for scheduling and the response's
/// way back to the client (the client stamps a response when it arrives).
const SLACK: Duration = Duration::from_secs(1);
/// The admin token of both gateways (read from a file).
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789abcdef";

struct Args {
    duration: Duration,
    users: usize,
    limit: usize,
    max_requests: u64,
    think: Duration,
    gateway_bin: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        users: 40,
        limit: 20,
        max_requests: 2_000_000,
        think: Duration::from_millis(10),
        gateway_bin: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release/session-gateway"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => args.duration = Duration::from_secs(value()?.parse()?),
            "--users" => args.users = value()?.parse()?,
            "--limit" => args.limit = value()?.parse()?,
            "--max-requests" => args.max_requests = value()?.parse()?,
            "--think-ms" => args.think = Duration::from_millis(value()?.parse()?),
            "--gateway-bin" => args.gateway_bin = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!(
                    "soak [--duration SECS=60] [--users N=40] [--limit SEATS=20] \
                     [--max-requests N=2000000] [--think-ms MS=10] [--gateway-bin PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.duration < Duration::from_secs(20) {
        bail!("--duration must be at least 20 s: the schedule needs room");
    }
    if !args.gateway_bin.exists() {
        bail!(
            "no gateway binary at {}: run `cargo build --release -p session-gateway` \
             or pass --gateway-bin",
            args.gateway_bin.display()
        );
    }
    Ok(args)
}

/// A tiny xorshift generator: think times and session lengths need no
/// quality, and the bench needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One response with a session, as the client saw it.
#[derive(Clone)]
struct Admission {
    session: String,
    at: Instant,
}

/// What one user task observed.
#[derive(Default)]
struct UserLog {
    /// Every 200 of an API call, in order.
    admissions: Vec<Admission>,
    /// Session id → when its logout was sent.
    logouts: HashMap<String, Instant>,
    /// Session ids that were replaced by another one while the client
    /// neither logged out nor was refused: legitimate only for sessions a
    /// Redis restart lost (checked after the run).
    replaced: Vec<String>,
    /// Earlier session ids (not the current one) that a 200 carried again:
    /// a cached lease still in use. Legitimate only for sessions that were
    /// logged out or lost in a Redis restart (checked after the run).
    returned: Vec<String>,
    /// The session the client believes it holds at the end.
    open: Option<String>,
}

/// A gateway instance as the clients know it: its addresses. The process
/// handles stay with `main` and the schedule, which stops one of them.
struct Endpoint {
    addr: SocketAddr,
    admin: SocketAddr,
    client: reqwest::Client,
}

impl Endpoint {
    fn of(gw: &Gateway) -> Self {
        Self {
            addr: gw.addr,
            admin: gw.admin,
            client: gw.client().clone(),
        }
    }

    async fn get(&self, path: &str, token: &str) -> anyhow::Result<Reply> {
        let url = format!("http://{}{path}", self.addr);
        Reply::read(self.client.get(url).bearer_auth(token).send().await?).await
    }

    async fn logout(&self, token: &str) -> anyhow::Result<Reply> {
        let url = format!("http://{}/.gateway/logout", self.addr);
        Reply::read(self.client.post(url).bearer_auth(token).send().await?).await
    }

    async fn admin_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("http://{}{path}", self.admin);
        let reply =
            Reply::read(self.client.get(url).bearer_auth(ADMIN_TOKEN).send().await?).await?;
        if reply.status != 200 {
            bail!("{path}: {} {}", reply.status, reply.problem());
        }
        Ok(reply.json())
    }
}

/// Shared between the tasks.
struct Shared {
    kit: RwLock<Devkit>,
    gateways: Vec<Endpoint>,
    draining: Vec<AtomicBool>,
    issuer_up: AtomicBool,
    /// Bumped by a key rotation: tokens of an older generation are replaced.
    key_generation: AtomicU64,
    requests: AtomicU64,
    stop: AtomicBool,
    statuses: Mutex<BTreeMap<String, u64>>,
    /// Redis restarts: (stopped, up again).
    redis_restarts: Mutex<Vec<(Instant, Instant)>>,
    max_in_use: AtomicUsize,
    usage_samples: AtomicU64,
    round_robin: AtomicUsize,
    started: Instant,
    max_requests: u64,
}

impl Shared {
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn live_gateway(&self) -> Option<&Endpoint> {
        let n = self.gateways.len();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| !self.draining[i].load(Ordering::Acquire))
            .map(|i| &self.gateways[i])
    }

    async fn count(&self, key: String) {
        *self.statuses.lock().await.entry(key).or_default() += 1;
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Acquire)
            || self.requests.load(Ordering::Relaxed) >= self.max_requests
    }
}

fn status_key(what: &str, reply: &Reply) -> String {
    match reply.problem().as_str() {
        "" => format!("{what} {}", reply.status),
        problem => format!("{what} {} {problem}", reply.status),
    }
}

/// Whether a status is one the scenario may produce: success, a refusal for
/// want of a seat, or the documented 503 while Redis is away.
fn allowed(key: &str) -> bool {
    key.ends_with(" 200")
        || key.ends_with(" 429 license_unavailable")
        || key.ends_with(" 503 store_unavailable")
}

async fn mint(shared: &Shared, user: &str) -> Option<(String, u64, Instant)> {
    if !shared.issuer_up.load(Ordering::Acquire) {
        // A real client cannot get a token while its identity provider is down.
        return None;
    }
    let generation = shared.key_generation.load(Ordering::Acquire);
    let kit = shared.kit.read().await;
    Some((
        kit.mint(&TokenRequest::new(user)),
        generation,
        Instant::now(),
    ))
}

/// One user: calls the API through either instance, now and then logs out
/// and comes back with a new token, retries after refusals.
async fn user_task(shared: Arc<Shared>, index: usize, think: Duration) -> UserLog {
    let user = format!("user-{index:02}");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1).wrapping_mul(0x2545_f491));
    let mut log = UserLog::default();
    let mut token: Option<(String, u64, Instant)> = None;
    let mut calls_left = 0u64;
    let mut seen: HashSet<String> = HashSet::new();
    while !shared.done() {
        let stale_token = token.as_ref().is_some_and(|(_, generation, minted)| {
            *generation != shared.key_generation.load(Ordering::Acquire)
                || minted.elapsed() > Duration::from_secs(120)
        });
        if token.is_none() || stale_token {
            match mint(&shared, &user).await {
                Some(t) => token = Some(t),
                None if token.is_some() => {}
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some((bearer, _, _)) = token.clone() else {
            continue;
        };
        let Some(gw) = shared.live_gateway() else {
            break;
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);

        if log.open.is_some() && calls_left == 0 {
            // End of this user's working session: log out, think, come back.
            let session = log.open.clone().unwrap_or_default();
            let sent = Instant::now();
            match gw.logout(&bearer).await {
                Ok(reply) => {
                    let key = status_key("logout", &reply);
                    if reply.status == 200 {
                        log.logouts.insert(session, sent);
                        log.open = None;
                        token = None;
                    }
                    shared.count(key).await;
                }
                Err(e) => shared.count(format!("logout transport error: {e:#}")).await,
            }
            tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
            continue;
        }

        let result = gw.get("/api/orders", &bearer).await;
        let received = Instant::now();
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                shared.count(format!("api transport error: {e:#}")).await;
                tokio::time::sleep(think).await;
                continue;
            }
        };
        let key = status_key("api", &reply);
        match reply.status {
            200 => {
                let session = reply.forwarded_header("x-session-id").unwrap_or_default();
                let current = log.open.as_deref() == Some(session.as_str());
                if !current && seen.contains(&session) {
                    // An instance still used its cached lease of a closed
                    // session; the client's own session does not change.
                    if !log.logouts.contains_key(&session) {
                        log.returned.push(session.clone());
                    }
                } else {
                    if !current {
                        if let Some(previous) = log.open.take() {
                            log.replaced.push(previous);
                        }
                        calls_left = 5 + rng.below(60);
                        seen.insert(session.clone());
                    }
                    calls_left = calls_left.saturating_sub(1);
                    log.open = Some(session.clone());
                }
                log.admissions.push(Admission {
                    session,
                    at: received,
                });
            }
            429 => {
                log.open = None;
                tokio::time::sleep(Duration::from_millis(20 + rng.below(80))).await;
            }
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => {}
        }
        shared.count(key).await;
        tokio::time::sleep(think + Duration::from_millis(rng.below(10))).await;
    }
    log
}

async fn seats_in_use(gw: &Endpoint) -> anyhow::Result<usize> {
    let body = gw.admin_get("/admin/v1/licenses").await?;
    body["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["pool"] == "default"))
        .and_then(|p| p["in_use"].as_u64())
        .map(|n| n as usize)
        .context("no `default` pool in /admin/v1/licenses")
}

async fn open_sessions(gw: &Endpoint) -> anyhow::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/sessions?limit=1000&cursor={c}"),
            None => "/admin/v1/sessions?limit=1000".to_string(),
        };
        let body = gw.admin_get(&path).await?;
        for s in body["sessions"].as_array().into_iter().flatten() {
            ids.insert(s["session_id"].as_str().unwrap_or_default().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(ids),
        }
    }
}

/// Samples the seat use through the admin API of a live instance.
async fn sampler(shared: Arc<Shared>) {
    while !shared.done() {
        if let Some(gw) = shared.live_gateway()
            && let Ok(in_use) = seats_in_use(gw).await
        {
            shared.max_in_use.fetch_max(in_use, Ordering::Relaxed);
            shared.usage_samples.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The disturbances, at fixed fractions of the run.
async fn schedule(
    shared: Arc<Shared>,
    mut redis: RedisServer,
    second: Gateway,
    duration: Duration,
) -> anyhow::Result<(RedisServer, Vec<String>)> {
    let at = |fraction: f64| shared.started + duration.mul_f64(fraction);
    let mut timeline = Vec::new();
    let mut note = |shared: &Shared, what: String| {
        let line = format!("{:>6.1} s  {what}", shared.elapsed());
        println!("{line}");
        timeline.push(line);
    };

    tokio::time::sleep_until(at(0.20).into()).await;
    let stopped = Instant::now();
    tokio::task::block_in_place(|| redis.restart())?;
    let up = Instant::now();
    shared.redis_restarts.lock().await.push((stopped, up));
    note(
        &shared,
        format!(
            "redis-server restarted (empty, no persistence), down {} ms",
            (up - stopped).as_millis()
        ),
    );

    tokio::time::sleep_until(at(0.35).into()).await;
    shared.issuer_up.store(false, Ordering::Release);
    shared.kit.write().await.issuer.suspend().await;
    note(&shared, "issuer stopped (discovery, JWKS, tokens)".into());

    tokio::time::sleep_until(at(0.45).into()).await;
    {
        // Rotate first so that the JWKS served when it comes back has the
        // new key next to the old one, as during a real rollover.
        let kid = shared.kit.read().await.issuer.rotate().await?;
        shared.kit.write().await.issuer.resume().await?;
        shared.key_generation.fetch_add(1, Ordering::AcqRel);
        shared.issuer_up.store(true, Ordering::Release);
        note(
            &shared,
            format!("issuer back, signing key rotated to {kid}; clients mint new tokens"),
        );
    }

    tokio::time::sleep_until(at(0.65).into()).await;
    // Take instance 1 out of the rotation (as a load balancer would on
    // SIGTERM), then stop it gracefully; its in-flight requests complete.
    shared.draining[1].store(true, Ordering::Release);
    let sent = Instant::now();
    let status = tokio::task::block_in_place(|| second.stop())?;
    note(
        &shared,
        format!(
            "gateway 1 stopped with SIGTERM: {status} after {} ms; load continues on gateway 0",
            sent.elapsed().as_millis()
        ),
    );
    if !status.success() {
        bail!("gateway 1 did not stop cleanly: {status}");
    }
    Ok((redis, timeline))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let args = parse_args()?;
    let bin = args.gateway_bin.display().to_string();
    let redis = RedisServer::start()?;
    let kit = Devkit::start().await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN)?;

    let mut config: ConfigDoc = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "idle_timeout", "10m");
    config.set("sessions", "touch_interval", "1s");
    config.set("redis", "url", redis.url());
    config.set("server", "grace_period", "1s");
    config.set("server", "shutdown_timeout", "1s");
    config.set("admin", "token_file", token_file.display().to_string());
    config
        .pool(0)
        .insert("limit".into(), (args.limit as i64).into());
    config.set("logging", "level", "warn");

    let first = Gateway::start(&bin, &config).await?;
    let second = Gateway::start(&bin, &config).await?;
    let gateways = vec![Endpoint::of(&first), Endpoint::of(&second)];
    println!(
        "soak: {} users, {} seats, 2 gateways ({} and {}), redis :{}, {} s, at most {} requests",
        args.users,
        args.limit,
        gateways[0].addr,
        gateways[1].addr,
        redis.port,
        args.duration.as_secs(),
        args.max_requests
    );

    let shared = Arc::new(Shared {
        kit: RwLock::new(kit),
        draining: gateways.iter().map(|_| AtomicBool::new(false)).collect(),
        gateways,
        issuer_up: AtomicBool::new(true),
        key_generation: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        statuses: Mutex::new(BTreeMap::new()),
        redis_restarts: Mutex::new(Vec::new()),
        max_in_use: AtomicUsize::new(0),
        usage_samples: AtomicU64::new(0),
        round_robin: AtomicUsize::new(0),
        started: Instant::now(),
        max_requests: args.max_requests,
    });

    let users: Vec<_> = (0..args.users)
        .map(|i| tokio::spawn(user_task(Arc::clone(&shared), i, args.think)))
        .collect();
    let sampling = tokio::spawn(sampler(Arc::clone(&shared)));
    let scheduled = tokio::spawn(schedule(Arc::clone(&shared), redis, second, args.duration));

    tokio::time::sleep_until((shared.started + args.duration).into()).await;
    shared.stop.store(true, Ordering::Release);
    let mut logs = Vec::new();
    for user in users {
        logs.push(user.await?);
    }
    sampling.await?;
    let (redis, timeline) = scheduled.await??;
    let load_secs = shared.elapsed();

    let mut violations: Vec<String> = Vec::new();
    let gw = &shared.gateways[0];
    let restarts = shared.redis_restarts.lock().await.clone();

    // 1. Concurrency as the clients saw it. A session is counted from the
    //    arrival of its first 200 to the arrival of its last 200 sent before
    //    its logout or before a Redis restart lost it. That interval lies
    //    inside the time the seat was really held, so more than `limit`
    //    sessions overlapping means a real over-admission.
    let mut points: Vec<(Instant, i32)> = Vec::new();
    // Calls on a session after its seat was gone, by cause: (count, latest).
    let mut stale_after_logout = (0u64, Duration::ZERO);
    let mut stale_after_restart = (0u64, Duration::ZERO);
    // When (seconds into the run) calls after a logout happened.
    let mut stale_logout_times: Vec<f64> = Vec::new();
    let mut sessions_seen = 0usize;
    let mut lost_in_restart = 0usize;
    for log in &logs {
        let mut by_session: HashMap<&str, Vec<Instant>> = HashMap::new();
        for a in &log.admissions {
            by_session.entry(&a.session).or_default().push(a.at);
        }
        for (session, times) in by_session {
            sessions_seen += 1;
            let first = times[0];
            let logout = log.logouts.get(session).copied();
            let lost_at = restarts
                .iter()
                .map(|(stopped, _)| *stopped)
                .find(|stopped| first < *stopped && logout.is_none_or(|l| l > *stopped));
            if lost_at.is_some() {
                lost_in_restart += 1;
            }
            let end_of_seat = lost_at.or(logout);
            let mut last = first;
            for &t in &times {
                match end_of_seat {
                    Some(end) if t > end => {
                        // Forwarded after the seat was gone: allowed by the
                        // lease cache for about one touch_interval.
                        let stale = if lost_at.is_some() {
                            &mut stale_after_restart
                        } else {
                            &mut stale_after_logout
                        };
                        stale.0 += 1;
                        stale.1 = stale.1.max(t - end);
                        if lost_at.is_none() {
                            stale_logout_times.push((t - shared.started).as_secs_f64());
                        }
                    }
                    _ => last = last.max(t),
                }
            }
            points.push((first, 1));
            points.push((last, -1));
        }
    }
    // Starts before ends at the same instant: the conservative order.
    points.sort_by_key(|&(t, delta)| (t, -delta));
    let mut concurrent = 0i32;
    let mut max_concurrent = 0i32;
    for (_, delta) in &points {
        concurrent += delta;
        max_concurrent = max_concurrent.max(concurrent);
    }
    if max_concurrent as usize > args.limit {
        violations.push(format!(
            "{max_concurrent} sessions were in use at once (limit {})",
            args.limit
        ));
    }
    let max_stale = stale_after_logout.1.max(stale_after_restart.1);
    if max_stale > TOUCH_INTERVAL + SLACK {
        violations.push(format!(
            "a closed session was still used {} ms after its seat was gone \
             (bound: touch_interval {} ms + {} ms slack)",
            max_stale.as_millis(),
            TOUCH_INTERVAL.as_millis(),
            SLACK.as_millis()
        ));
    }
    let max_in_use = shared.max_in_use.load(Ordering::Relaxed);
    if max_in_use > args.limit {
        violations.push(format!(
            "/admin/v1/licenses reported {max_in_use} seats in use (limit {})",
            args.limit
        ));
    }
    // A session replaced under a client that neither logged out nor was
    // refused, or an old session coming back, is only legitimate for a
    // session that lived through a Redis restart (which lost it).
    let lost = |log: &UserLog, session: &str| {
        let first = log
            .admissions
            .iter()
            .find(|a| a.session == session)
            .map(|a| a.at);
        first.is_some_and(|f| restarts.iter().any(|(stopped, _)| f < *stopped))
    };
    let unexpected: usize = logs
        .iter()
        .map(|log| {
            log.replaced
                .iter()
                .chain(&log.returned)
                .filter(|session| !lost(log, session))
                .count()
        })
        .sum();
    if unexpected > 0 {
        violations.push(format!(
            "{unexpected} times a session was replaced or came back without a logout \
             or a Redis restart"
        ));
    }

    // 2. Statuses.
    let statuses = shared.statuses.lock().await.clone();
    for (key, n) in &statuses {
        if !allowed(key) {
            violations.push(format!("{n} × unexpected `{key}`"));
        }
    }

    // 3. Seats at rest: after more than one touch_interval (every cached
    //    lease stale), one more call per user refreshes what each client
    //    believes; then Redis, the admin API and the clients must agree.
    tokio::time::sleep(TOUCH_INTERVAL + Duration::from_millis(500)).await;
    let mut believed: HashSet<String> = HashSet::new();
    for (i, log) in logs.iter().enumerate() {
        let Some(session) = &log.open else { continue };
        let token = shared
            .kit
            .read()
            .await
            .mint(&TokenRequest::new(format!("user-{i:02}")));
        let reply = gw.get("/api/settle", &token).await?;
        match reply.status {
            200 => {
                let now = reply.forwarded_header("x-session-id").unwrap_or_default();
                if &now != session {
                    violations.push(format!(
                        "user-{i:02} believed it held {session} but the gateway now says {now}"
                    ));
                }
                believed.insert(now);
            }
            _ => violations.push(format!(
                "user-{i:02} believed it held {session} but got {}",
                status_key("settle", &reply)
            )),
        }
    }
    let listed = open_sessions(gw).await?;
    let in_use = seats_in_use(gw).await?;
    let zcard: usize = redis
        .cli(&["ZCARD", "{sg:default}:b:0"])?
        .parse()
        .unwrap_or(usize::MAX);
    if listed != believed {
        violations.push(format!(
            "open sessions listed by the admin API ({}) differ from those the clients hold ({})",
            listed.len(),
            believed.len()
        ));
    }
    if in_use != believed.len() || zcard != believed.len() {
        violations.push(format!(
            "seats: /admin/v1/licenses {in_use}, Redis ZCARD {zcard}, sessions the clients hold {}",
            believed.len()
        ));
    }
    // 4. Everybody logs out: every seat frees.
    for i in 0..args.users {
        let token = shared
            .kit
            .read()
            .await
            .mint(&TokenRequest::new(format!("user-{i:02}")));
        gw.logout(&token).await?;
    }
    let in_use_after = seats_in_use(gw).await?;
    let zcard_after: usize = redis
        .cli(&["ZCARD", "{sg:default}:b:0"])?
        .parse()
        .unwrap_or(usize::MAX);
    if in_use_after != 0 || zcard_after != 0 {
        violations.push(format!(
            "after everybody logged out: {in_use_after} seats in use, ZCARD {zcard_after}"
        ));
    }

    // Summary.
    let total: u64 = statuses.values().sum();
    let admissions: u64 = statuses
        .iter()
        .filter(|(k, _)| k.as_str() == "api 200")
        .map(|(_, n)| n)
        .sum();
    let refusals: u64 = statuses
        .iter()
        .filter(|(k, _)| k.contains("429"))
        .map(|(_, n)| n)
        .sum();
    println!();
    println!("timeline");
    for line in &timeline {
        println!("  {line}");
    }
    println!();
    println!(
        "{:<52} {:>10}",
        format!("requests in {load_secs:.1} s"),
        total
    );
    println!("{:<52} {:>10.0}", "  per second", total as f64 / load_secs);
    for (key, n) in &statuses {
        let mark = if allowed(key) { "" } else { "  <-- unexpected" };
        println!("  {:<50} {:>10}{mark}", key, n);
    }
    println!("{:<52} {:>10}", "API calls forwarded (200)", admissions);
    println!(
        "{:<52} {:>10}",
        "refused for want of a seat (429)", refusals
    );
    println!("{:<52} {:>10}", "distinct sessions opened", sessions_seen);
    println!(
        "{:<52} {:>10}",
        "  of which lost in the Redis restart", lost_in_restart
    );
    println!("{:<52} {:>10}", "seat limit", args.limit);
    println!(
        "{:<52} {:>10}",
        "max sessions in use at once (client view)", max_concurrent
    );
    println!(
        "{:<52} {:>10}",
        format!(
            "max seats in use (admin API, {} samples)",
            shared.usage_samples.load(Ordering::Relaxed)
        ),
        max_in_use
    );
    println!(
        "{:<52} {:>10}",
        "calls on a session after its logout (count / latest)",
        format!(
            "{} / {} ms",
            stale_after_logout.0,
            stale_after_logout.1.as_millis()
        )
    );
    if !stale_logout_times.is_empty() {
        stale_logout_times.sort_by(f64::total_cmp);
        let seconds: Vec<String> = stale_logout_times
            .chunk_by(|a, b| b - a < 1.0)
            .map(|run| format!("{:.1}–{:.1} s ({})", run[0], run[run.len() - 1], run.len()))
            .collect();
        println!("  when: {}", seconds.join(", "));
    }
    println!(
        "{:<52} {:>10}",
        "calls on a session lost in the restart (count / latest)",
        format!(
            "{} / {} ms",
            stale_after_restart.0,
            stale_after_restart.1.as_millis()
        )
    );
    println!(
        "{:<52} {:>10}",
        "sessions replaced or returning (legit: restart)",
        logs.iter()
            .map(|l| l.replaced.len() + l.returned.len())
            .sum::<usize>()
    );
    println!(
        "{:<52} {:>10}",
        "final: sessions the clients hold",
        believed.len()
    );
    println!(
        "{:<52} {:>10}",
        "final: sessions in /admin/v1/sessions",
        listed.len()
    );
    println!(
        "{:<52} {:>10}",
        "final: seats in /admin/v1/licenses", in_use
    );
    println!("{:<52} {:>10}", "final: seats in Redis (ZCARD)", zcard);
    println!(
        "{:<52} {:>10}",
        "after everybody logged out: seats (admin / Redis)",
        format!("{in_use_after} / {zcard_after}")
    );
    println!();
    // Stop the processes before reporting (an exit code, not
    // `process::exit`, so that every destructor runs).
    drop(first);
    drop(redis);
    if violations.is_empty() {
        println!("all invariants held");
        Ok(ExitCode::SUCCESS)
    } else {
        for v in &violations {
            println!("VIOLATION: {v}");
        }
        Ok(ExitCode::FAILURE)
    }
}
