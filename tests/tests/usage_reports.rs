//! The usage reports of license administration, end to end: real gateway
//! processes, sessions opened, refused and closed by real API calls, and the
//! history read back through `GET /admin/v1/usage…` (JSON and CSV) and
//! `session-gateway admin usage …`. The timeline is the real clock's, so the
//! checks are on counts and peaks summed over whatever minutes it spanned;
//! the exact per-interval arithmetic is the store contract's
//! (`usage_history_of_a_scripted_day_is_exact`).

use reqwest::Method;
use serde_json::Value;
use session_gateway::clock::rfc3339_ms;
use session_gateway_e2e::admin::{ADMIN_TOKEN, AdminGateway, admin, cli};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The kit's configuration with a pool of two seats.
fn two_seats(kit: &Devkit) -> ConfigDoc {
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 2.into());
    config
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `GET /admin/v1/usage…` as JSON; fails on anything but 200.
async fn report(gw: &Gateway, path: &str) -> anyhow::Result<Value> {
    let reply = admin(gw, Method::GET, path).await?;
    anyhow::ensure!(
        reply.status == 200,
        "{path}: {} {:?}",
        reply.status,
        reply.json()
    );
    Ok(reply.json())
}

/// Sums a counter over a report's intervals (`opened`, or `closed.<reason>`).
fn total(report: &Value, field: &str) -> u64 {
    report["intervals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| field.split('.').fold(i, |v, k| &v[k]).as_u64().unwrap_or(0))
        .sum()
}

fn peak(report: &Value) -> u64 {
    report["intervals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["peak"].as_u64())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_pool_s_opens_refusals_closes_and_peak_are_reported_as_json_csv_and_tables()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = AdminGateway::start(BIN, two_seats(&kit)).await?;
    let pool = kit.config().pool(0)["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let began = rfc3339_ms(now_ms());
    let (alice, bob, carol) = (kit.token("alice"), kit.token("bob"), kit.token("carol"));

    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &bob).await?.status, 200);
    assert_eq!(gw.get("/api/x", &carol).await?.status, 429);
    assert_eq!(gw.logout(&bob).await?.status, 200);
    let carol_call = gw.get("/api/x", &carol).await?;
    assert_eq!(carol_call.status, 200);
    let alice_id = gw
        .get("/api/x", &alice)
        .await?
        .forwarded_header("x-session-id")
        .unwrap_or_default();
    let killed = admin(
        &gw,
        Method::DELETE,
        &format!("/admin/v1/sessions/{alice_id}"),
    )
    .await?;
    assert_eq!(killed.status, 200, "{:?}", killed.json());

    let minutes = report(&gw, &format!("/admin/v1/usage?step=minute&from={began}")).await?;
    assert_eq!(minutes["pool"], pool.as_str());
    assert_eq!(total(&minutes, "opened"), 3);
    assert_eq!(total(&minutes, "refused.pool_full"), 1);
    assert_eq!(total(&minutes, "closed.logout"), 1);
    assert_eq!(total(&minutes, "closed.admin"), 1);
    assert_eq!(peak(&minutes), 2);
    let last = minutes["intervals"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        last["complete"], false,
        "the running minute counts up to now"
    );
    // Seats were held for some milliseconds of these minutes.
    assert!(total(&minutes, "seat_ms") > 0, "{minutes}");

    let days = report(&gw, "/admin/v1/usage?step=day").await?;
    let today = days["intervals"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(today["subjects"], 3, "{today}");
    assert_eq!(today["peak"], 2);

    let top = report(
        &gw,
        &format!("/admin/v1/usage/peaks?step=minute&from={began}&top=1"),
    )
    .await?;
    assert_eq!(top["intervals"].as_array().map(Vec::len), Some(1));
    assert_eq!(top["intervals"][0]["peak"], 2);

    let month = report(&gw, "/admin/v1/usage/summary").await?;
    assert_eq!(month["pool"], pool.as_str());
    assert_eq!(month["peak"], 2);
    assert_eq!(month["opened"], 3);
    assert_eq!(month["refused_total"], 1);
    assert_eq!(month["distinct_subjects"], 3);
    assert!(
        month["p95_hourly_peak"]
            .as_u64()
            .is_some_and(|p| (1..=2).contains(&p)),
        "{month}"
    );

    // CSV, by parameter and by Accept: one header line and one line per
    // interval, the same counts.
    let csv = admin(
        &gw,
        Method::GET,
        &format!("/admin/v1/usage?step=minute&from={began}&format=csv"),
    )
    .await?;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(csv.body.clone())?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        1 + minutes["intervals"].as_array().map_or(0, Vec::len)
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = header
        .iter()
        .position(|h| *h == "opened")
        .expect("an opened column");
    let opened: u64 = lines[1..]
        .iter()
        .filter_map(|l| l.split(',').nth(column)?.parse::<u64>().ok())
        .sum();
    assert_eq!(opened, 3);
    let by_accept = gw
        .client()
        .get(gw.admin_url(&format!("/admin/v1/usage?step=minute&from={began}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await?;
    // (The running minute's seat-time grows between two reads: compare the
    // shape and the counts.)
    let same_counts = |other: &str| {
        let a: Vec<&str> = other.lines().collect();
        a.len() == lines.len()
            && a[0] == lines[0]
            && a[1..]
                .iter()
                .zip(&lines[1..])
                .all(|(x, y)| x.split(',').nth(column) == y.split(',').nth(column))
    };
    assert!(same_counts(&by_accept.text().await?));

    // The command: a sparkline and a table, the summary, and CSV.
    let url = gw.admin_url("");
    let url = url.trim_end_matches('/');
    let history = cli(
        BIN,
        &[
            "admin", "--url", url, "usage", "history", "--step", "minute", "--from", &began,
        ],
        Some(ADMIN_TOKEN),
    )
    .await?;
    assert!(history.ok, "{}", history.stderr);
    assert!(history.stdout.starts_with("peak "), "{}", history.stdout);
    assert!(
        history.stdout.contains("max 2") && history.stdout.contains("PEAK"),
        "{}",
        history.stdout
    );
    assert!(
        history.stderr.contains(&format!("of pool {pool}")),
        "{}",
        history.stderr
    );
    let summary = cli(
        BIN,
        &["admin", "--url", url, "usage", "summary"],
        Some(ADMIN_TOKEN),
    )
    .await?;
    assert!(summary.ok, "{}", summary.stderr);
    assert!(
        summary.stdout.contains("P95 HOURLY") && summary.stdout.contains(&pool),
        "{}",
        summary.stdout
    );
    let as_csv = cli(
        BIN,
        &[
            "admin", "--url", url, "usage", "history", "--step", "minute", "--from", &began,
            "--csv",
        ],
        Some(ADMIN_TOKEN),
    )
    .await?;
    assert!(same_counts(&as_csv.stdout), "{}", as_csv.stdout);
    let bad = cli(
        BIN,
        &["admin", "--url", url, "usage", "history", "--step", "week"],
        Some(ADMIN_TOKEN),
    )
    .await?;
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("week") && bad.stderr.contains("minute, hour or day"),
        "{}",
        bad.stderr
    );
    Ok(())
}

#[tokio::test]
async fn bad_usage_queries_get_a_problem_naming_the_parameter() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = AdminGateway::start(BIN, two_seats(&kit)).await?;
    for (query, parameter, fragment) in [
        ("/admin/v1/usage?step=week", "step", "minute, hour or day"),
        ("/admin/v1/usage?pool=nope", "pool", "no pool `nope`"),
        (
            "/admin/v1/usage?group=0",
            "group",
            "number of a reserved group",
        ),
        (
            "/admin/v1/usage?group=2",
            "group",
            "no reserved group 2 (it has 0)",
        ),
        ("/admin/v1/usage?from=yesterday", "from", "RFC 3339"),
        (
            "/admin/v1/usage?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
            "before `to`",
        ),
        (
            "/admin/v1/usage?step=minute&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
            "at most 10000",
        ),
        ("/admin/v1/usage?format=xml", "format", "json or csv"),
        ("/admin/v1/usage?colour=red", "colour", "unknown parameter"),
        ("/admin/v1/usage/peaks?top=0", "top", "1 to 1000"),
        ("/admin/v1/usage/summary?month=2026-13", "month", "YYYY-MM"),
    ] {
        let reply = admin(&gw, Method::GET, query).await?;
        assert_eq!(reply.status, 400, "{query}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{query}"
        );
        let problem = reply.json();
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(parameter) && detail.contains(fragment),
            "{query}: {problem}"
        );
    }
    // Without the admin token there is nothing to read.
    let anonymous = gw
        .client()
        .get(gw.admin_url("/admin/v1/usage"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}

/// The history lives in Redis: the whole fleet writes one, and a gateway
/// started later reads what instances before it saw.
#[tokio::test]
async fn the_fleet_shares_one_history_that_outlives_its_instances() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = two_seats(&kit);
    config.set("sessions", "store", "redis");
    config.set("redis", "url", redis.url());
    let began = rfc3339_ms(now_ms());
    let first = AdminGateway::start(BIN, config.clone()).await?;
    let second = AdminGateway::start(BIN, config.clone()).await?;
    assert_eq!(first.get("/api/x", &kit.token("alice")).await?.status, 200);
    assert_eq!(second.get("/api/x", &kit.token("bob")).await?.status, 200);
    assert_eq!(first.get("/api/x", &kit.token("carol")).await?.status, 429);
    assert_eq!(second.logout(&kit.token("alice")).await?.status, 200);
    first.stop()?;
    second.stop()?;

    let later = AdminGateway::start(BIN, config).await?;
    let minutes = report(&later, &format!("/admin/v1/usage?step=minute&from={began}")).await?;
    assert_eq!(total(&minutes, "opened"), 2);
    assert_eq!(total(&minutes, "refused.pool_full"), 1);
    assert_eq!(total(&minutes, "closed.logout"), 1);
    assert_eq!(peak(&minutes), 2);
    let hours = report(&later, &format!("/admin/v1/usage?step=hour&from={began}")).await?;
    assert_eq!(total(&hours, "opened"), 2);
    assert_eq!(peak(&hours), 2);
    Ok(())
}
