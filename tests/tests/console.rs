//! The admin console (`GET /admin/` on the admin listener) in a real
//! headless Chromium: Debian's `chromium`, driven by playwright-core
//! (`tests/browser/console.mjs`) as a child process of this test, killed by
//! PID if it outlives it. The script signs in, reads the pools, the chart,
//! the sessions and the audit trail, closes one session with the keyboard
//! and writes a screenshot; this test checks what it reports against what
//! the gateway did.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use session_gateway_e2e::admin::{ADMIN_TOKEN, AdminGateway, admin};
use session_gateway_e2e::{Devkit, TokenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the browser script against the console; its report.
async fn drive_console(console_url: &str, close: &str, screenshot: &str) -> anyhow::Result<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/console.mjs");
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/browser/node_modules/playwright-core"
    );
    anyhow::ensure!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(modules).exists(),
        "{CHROMIUM} or {modules} is missing: scripts/bootstrap.sh installs Debian's chromium and \
         runs npm ci --prefix tests/browser"
    );
    let child = tokio::process::Command::new("node")
        .arg(script)
        .env("CONSOLE_URL", console_url)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("CLOSE_SUBJECT", close)
        .env("SCREENSHOT", screenshot)
        .env("CHROMIUM", CHROMIUM)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("the browser script ran past 120 s"))??;
    anyhow::ensure!(
        out.status.success(),
        "the browser script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn rows(report: &Value, table: &str) -> Vec<Vec<String>> {
    report[table]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|c| c.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_console_shows_pools_usage_sessions_and_events_and_closes_a_session()
-> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 3.into());
    let pool = config.pool(0)["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let gw = AdminGateway::start(BIN, config).await?;

    // Three seats taken, one caller refused. One subject is markup, which
    // the console must show as text.
    let markup = "<img src=x onerror=alert(1)>";
    for user in ["alice", "bob", markup] {
        let token = kit.mint(&TokenRequest::new(user));
        assert_eq!(gw.get("/api/x", &token).await?.status, 200, "{user}");
    }
    assert_eq!(gw.get("/api/x", &kit.token("dave")).await?.status, 429);

    let screenshot = format!("{}/console.png", env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::remove_file(&screenshot);
    let report = drive_console(&gw.admin_url("/admin/"), "alice", &screenshot).await?;

    let csp = report["csp"].as_str().unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        report["unlabelled"],
        serde_json::json!([]),
        "every control has a label"
    );
    assert_eq!(report["wrongToken"]["consoleHidden"], true);
    assert!(
        report["wrongToken"]["errors"].as_array().is_some_and(|e| e
            .iter()
            .all(|m| m.as_str().is_some_and(|m| m.contains("401")))),
        "{report}"
    );
    assert!(
        report["wrongToken"]["status"]
            .as_str()
            .is_some_and(|s| s.contains("not accepted"))
    );
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report}");
    // Nothing but the admin listener was asked for anything.
    let admin_host = gw
        .admin_url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert_eq!(report["requests"], serde_json::json!([admin_host]));

    // Pool, limit, in use, free, peak today, refused today.
    assert_eq!(
        rows(&report, "pools"),
        vec![vec![
            pool.clone(),
            "3".into(),
            "3".into(),
            "0".into(),
            "3".into(),
            "1".into()
        ]]
    );
    let before = rows(&report, "sessionsBefore");
    let mut subjects: Vec<&str> = before.iter().map(|r| r[0].as_str()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, vec![markup, "alice", "bob"]);
    assert_eq!(
        report["htmlInCells"],
        serde_json::json!([]),
        "markup stays text"
    );
    assert!(report["bars"].as_u64().is_some_and(|n| n >= 1));
    assert!(
        report["caption"]
            .as_str()
            .is_some_and(|c| c.contains("at most 3 of a limit of 3")),
        "{}",
        report["caption"]
    );

    // Alice's session was closed from the console (after a confirmation).
    assert_eq!(report["dialogs"].as_array().map(Vec::len), Some(1));
    let after = rows(&report, "sessionsAfter");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|r| r[0] != "alice"));
    let alice = admin(&gw, Method::GET, "/admin/v1/sessions?subject=alice").await?;
    assert_eq!(alice.json()["sessions"], serde_json::json!([]));
    let audit = rows(&report, "audit");
    assert!(
        audit
            .iter()
            .any(|r| r[1] == "session_closed" && r[3] == "alice" && r[4] == "admin"),
        "{audit:?}"
    );

    let png = std::fs::read(&screenshot)?;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "a PNG at {screenshot}"
    );
    println!("screenshot: {screenshot}");
    Ok(())
}

#[tokio::test]
async fn the_console_is_static_and_guarded_by_its_headers() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = AdminGateway::start(BIN, kit.config()).await?;
    for (path, kind) in [
        ("/admin/", "text/html"),
        ("/admin/favicon.svg", "image/svg+xml"),
        ("/admin/console.js", "text/javascript"),
        ("/admin/console.css", "text/css"),
    ] {
        let reply = gw.client().get(gw.admin_url(path)).send().await?;
        assert_eq!(reply.status(), 200, "{path}");
        let header = |name: &str| {
            reply
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").contains("default-src 'none'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("x-frame-options"), "DENY");
    }
    // `/admin` leads to the console; the proxy listener has no console.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let bare = no_redirects.get(gw.admin_url("/admin")).send().await?;
    assert_eq!(bare.status(), 308);
    let on_proxy = gw.get_anonymous("/admin/").await?;
    assert_ne!(on_proxy.status, 200);
    Ok(())
}
