//! The admin API (`/admin/v1` on the admin listener) and the
//! `session-gateway admin` command, end to end: a real gateway between the
//! devkit issuer and backend, sessions opened by real API calls.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use session_gateway_e2e::admin::{ADMIN_TOKEN as TOKEN, admin, admin_as};
use session_gateway_e2e::{ConfigDoc, Devkit, Gateway, Issuer, RedisServer, Reply, TokenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// A gateway of this test binary with the admin API on.
type AdminGateway = session_gateway_e2e::admin::AdminGateway;

async fn start_admin(config: ConfigDoc) -> anyhow::Result<AdminGateway> {
    AdminGateway::start(BIN, config).await
}

async fn cli(
    args: &[&str],
    token: Option<&str>,
) -> anyhow::Result<session_gateway_e2e::admin::CliRun> {
    session_gateway_e2e::admin::cli(BIN, args, token).await
}

/// Opens (or reuses) the session of a token with one API call; its id.
async fn call(gw: &Gateway, token: &str) -> anyhow::Result<String> {
    let r = gw.get("/api/orders", token).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.forwarded_header("x-session-id")
        .ok_or_else(|| anyhow::anyhow!("no X-Session-Id forwarded"))
}

/// A token of `user` from the desktop client.
fn desktop(kit: &Devkit, user: &str) -> String {
    kit.mint(&TokenRequest::new(user).client_id("erp-desktop"))
}

/// The standard configuration with a `desktop` pool (client `erp-desktop`)
/// before the catch-all `default` pool.
fn two_pools(kit: &Devkit) -> ConfigDoc {
    let mut config = kit.config();
    let default = config.pool(0).clone();
    config.clear("pools");
    config.push(
        "pools",
        r#"
name = "desktop"
limit = 5
match = { claim = "client_id", any_of = ["erp-desktop"] }
"#,
    );
    if let Some(pools) = config.0.get_mut("pools").and_then(|p| p.as_array_mut()) {
        pools.push(toml::Value::Table(default));
    }
    config
}

fn ids(sessions: &Value) -> Vec<String> {
    sessions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["session_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Session ids in the documented order: by `created`, then by id (RFC 3339
/// UTC timestamps of one format sort as text), read from each session.
async fn age_order(gw: &Gateway, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let mut keyed = Vec::new();
    for id in ids {
        let r = admin(gw, Method::GET, &format!("/admin/v1/sessions/{id}")).await?;
        let created = r.json()["created"].as_str().unwrap_or_default().to_string();
        keyed.push((created, id.clone()));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, id)| id).collect())
}

fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.json());
    assert_eq!(r.problem(), code, "{:?}", r.json());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let user = kit.token("alice");
    let id = call(&gw, &user).await?;

    for path in [
        "/admin/v1/sessions",
        "/admin/v1/licenses",
        "/admin/v1/nowhere",
    ] {
        let r = admin_as(&gw, Method::GET, path, None).await?;
        assert_problem(&r, 401, "admin_unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"session-gateway-admin\""),
            "{path}"
        );
    }
    // A wrong token, and a valid user access token, are not the admin token.
    for token in ["test-admin-token-0123456780", "x", user.as_str()] {
        let r = admin_as(
            &gw,
            Method::DELETE,
            &format!("/admin/v1/sessions/{id}"),
            Some(token),
        )
        .await?;
        assert_problem(&r, 401, "admin_unauthorized");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"session-gateway-admin\""),
            "{challenge}"
        );
    }
    let basic = gw
        .client()
        .get(gw.admin_url("/admin/v1/sessions"))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await?;
    assert_eq!(basic.status().as_u16(), 401);
    // Nothing was closed, and the wrong token never reached the log.
    assert_eq!(call(&gw, &user).await?, id);
    assert!(!gw.logs().contains("test-admin-token-012345678"));

    // Health, readiness and metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = admin_as(&gw, Method::GET, path, None).await?;
        assert_eq!(r.status, 200, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_disabled() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    for (method, path) in [
        (Method::GET, "/admin/v1/sessions"),
        (Method::GET, "/admin/v1/licenses"),
        (Method::DELETE, "/admin/v1/subjects/alice/sessions"),
        (Method::GET, "/admin/v1/whatever"),
    ] {
        let r = admin(&gw, method, path).await?;
        assert_problem(&r, 404, "admin_disabled");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(
            detail.contains("token_env") && detail.contains("token_file"),
            "{detail}"
        );
    }
    assert_eq!(
        admin_as(&gw, Method::GET, "/healthz", None).await?.status,
        200
    );
    Ok(())
}

#[tokio::test]
async fn sessions_are_listed_oldest_first_with_filters_and_pages() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(two_pools(&kit)).await?;
    let mut opened = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        opened.push(call(&gw, &kit.token(user)).await?);
    }
    let alice_desktop = call(&gw, &desktop(&kit, "alice")).await?;

    // Every open session, in pages of two, each once.
    let mut walked = Vec::new();
    let mut pages = 0;
    let mut path = "/admin/v1/sessions?limit=2".to_string();
    loop {
        let r = admin(&gw, Method::GET, &path).await?;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let page = r.json();
        let page_ids = ids(&page["sessions"]);
        assert!(page_ids.len() <= 2);
        walked.extend(page_ids);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/v1/sessions?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3, "six sessions in pages of two");
    let all = admin(&gw, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(
        walked,
        ids(&all["sessions"]),
        "pages concatenate to the list"
    );
    assert!(all["next_cursor"].is_null());
    let unique: BTreeSet<_> = walked.iter().cloned().collect();
    let expected: BTreeSet<_> = opened
        .iter()
        .cloned()
        .chain([alice_desktop.clone()])
        .collect();
    assert_eq!(unique, expected);
    assert_eq!(walked.len(), 6);
    // Oldest first, as each session's own `created` says.
    let all_ids: Vec<String> = expected.into_iter().collect();
    assert_eq!(walked, age_order(&gw, &all_ids).await?);

    // The shape of one session.
    let first = all["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["session_id"] == opened[0].as_str()))
        .cloned()
        .unwrap_or_default();
    let keys: BTreeSet<&str> = first
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let documented: BTreeSet<&str> = [
        "session_id",
        "pool",
        "subject",
        "issuer",
        "client",
        "created",
        "last_seen",
        "idle_expires",
        "absolute_expires",
        "expires",
    ]
    .into();
    assert_eq!(keys, documented);
    assert_eq!(first["pool"], "default");
    assert_eq!(first["subject"], "alice");
    assert_eq!(first["issuer"], kit.issuer.issuer_url());
    assert_eq!(first["client"], "erp-web");
    let created = first["created"].as_str().unwrap_or_default();
    assert!(
        created.ends_with('Z') && created.contains('.'),
        "RFC 3339 with milliseconds: {created}"
    );

    // Filters, alone and together, with a page of the default pool.
    let r = admin(&gw, Method::GET, "/admin/v1/sessions?pool=desktop").await?;
    assert_eq!(ids(&r.json()["sessions"]), [alice_desktop.as_str()]);
    let r = admin(&gw, Method::GET, "/admin/v1/sessions?subject=alice").await?;
    assert_eq!(
        ids(&r.json()["sessions"]),
        age_order(&gw, &[opened[0].clone(), alice_desktop.clone()]).await?
    );
    let r = admin(
        &gw,
        Method::GET,
        "/admin/v1/sessions?subject=alice&pool=default",
    )
    .await?;
    assert_eq!(ids(&r.json()["sessions"]), [opened[0].clone()]);
    let r = admin(&gw, Method::GET, "/admin/v1/sessions?subject=nobody").await?;
    assert_eq!(r.json(), json!({"sessions": [], "next_cursor": null}));
    let opened = age_order(&gw, &opened).await?;
    let r = admin(&gw, Method::GET, "/admin/v1/sessions?pool=default&limit=3").await?;
    assert_eq!(ids(&r.json()["sessions"]), opened[..3]);
    let cursor = r.json()["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = admin(
        &gw,
        Method::GET,
        &format!("/admin/v1/sessions?pool=default&limit=3&cursor={cursor}"),
    )
    .await?;
    assert_eq!(ids(&r.json()["sessions"]), opened[3..]);
    assert!(r.json()["next_cursor"].is_null());
    Ok(())
}

#[tokio::test]
async fn one_session_is_shown_and_closed() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let alice = kit.token("alice");
    let id = call(&gw, &alice).await?;
    let bob = call(&gw, &kit.token("bob")).await?;
    let path = format!("/admin/v1/sessions/{id}");

    let shown = admin(&gw, Method::GET, &path).await?;
    assert_eq!(shown.status, 200);
    let session = shown.json();
    assert_eq!(session["session_id"], id.as_str());
    assert_eq!(session["subject"], "alice");
    // The same view the user gets from the proxy listener.
    let own = gw.session(&alice).await?.json();
    for key in [
        "session_id",
        "pool",
        "subject",
        "client",
        "created",
        "absolute_expires",
    ] {
        assert_eq!(session[key], own[key], "{key}");
    }

    let closed = admin(&gw, Method::DELETE, &path).await?;
    assert_eq!(closed.status, 200, "{:?}", closed.json());
    assert_eq!(closed.json()["session_id"], id.as_str());
    assert_eq!(closed.json()["subject"], "alice");

    // Gone: not shown, not closable twice, not the user's any more.
    assert_problem(
        &admin(&gw, Method::GET, &path).await?,
        404,
        "session_not_found",
    );
    let again = admin(&gw, Method::DELETE, &path).await?;
    assert_problem(&again, 404, "session_not_found");
    assert_eq!(again.json()["session_id"], id.as_str());
    assert_eq!(gw.session(&alice).await?.status, 404);
    let listed = admin(&gw, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), [bob.as_str()]);

    // The user's next call opens a new session; bob's is untouched.
    let reopened = call(&gw, &alice).await?;
    assert_ne!(reopened, id);
    assert_eq!(call(&gw, &kit.token("bob")).await?, bob);

    // The close is audited with its reason.
    gw.eventually("the audit event of the admin close", || async {
        Ok(gw
            .logs()
            .lines()
            .any(|l| l.contains("session_closed") && l.contains(&id) && l.contains("admin"))
            .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn unknown_sessions_routes_and_methods_are_problems() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let id = call(&gw, &kit.token("alice")).await?;

    for path in [
        "/admin/v1/sessions/0123456789abcdef0123456789abcdef",
        "/admin/v1/sessions/not%2Fan%20id",
        &format!("/admin/v1/sessions/{}", "a".repeat(200)),
    ] {
        assert_problem(
            &admin(&gw, Method::GET, path).await?,
            404,
            "session_not_found",
        );
        assert_problem(
            &admin(&gw, Method::DELETE, path).await?,
            404,
            "session_not_found",
        );
    }
    for path in ["/admin/v1/nowhere", "/admin/v1/sessions/a/b", "/admin/v1"] {
        assert_problem(&admin(&gw, Method::GET, path).await?, 404, "not_found");
    }
    let r = admin(&gw, Method::POST, "/admin/v1/sessions").await?;
    assert_problem(&r, 405, "method_not_allowed");
    assert!(r.header("allow").unwrap_or_default().contains("GET"));
    let r = admin(&gw, Method::PUT, &format!("/admin/v1/sessions/{id}")).await?;
    assert_problem(&r, 405, "method_not_allowed");
    let allow = r.header("allow").unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    let r = admin(&gw, Method::GET, "/admin/v1/subjects/alice/sessions").await?;
    assert_problem(&r, 405, "method_not_allowed");
    // None of this closed anything.
    assert_eq!(call(&gw, &kit.token("alice")).await?, id);
    Ok(())
}

#[tokio::test]
async fn every_session_of_a_subject_is_closed() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    // One subject with two clients (two sessions), with a `sub` that needs
    // escaping in a path, and a bystander.
    let web = kit.token("auth0|dave");
    let desktop = desktop(&kit, "auth0|dave");
    let dave_web = call(&gw, &web).await?;
    let dave_desktop = call(&gw, &desktop).await?;
    let erin = call(&gw, &kit.token("erin")).await?;

    let r = admin(
        &gw,
        Method::DELETE,
        "/admin/v1/subjects/auth0%7Cdave/sessions",
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let body = r.json();
    assert_eq!(body["count"], 2);
    assert_eq!(
        ids(&body["closed"]).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([dave_web.clone(), dave_desktop.clone()])
    );
    assert!(
        body["closed"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["subject"] == "auth0|dave")
    );
    let listed = admin(&gw, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), [erin.as_str()]);
    assert_eq!(gw.session(&web).await?.status, 404);
    assert_eq!(gw.session(&desktop).await?.status, 404);

    // Naming the (only) issuer explicitly works too; nothing is left.
    let issuer: String = url_encode(kit.issuer.issuer_url());
    let r = admin(
        &gw,
        Method::DELETE,
        &format!("/admin/v1/subjects/auth0%7Cdave/sessions?issuer={issuer}"),
    )
    .await?;
    assert_eq!(r.json(), json!({"closed": [], "count": 0}));
    // An issuer the gateway does not trust is a mistake, not "nothing found".
    let r = admin(
        &gw,
        Method::DELETE,
        "/admin/v1/subjects/erin/sessions?issuer=https%3A%2F%2Felsewhere",
    )
    .await?;
    assert_problem(&r, 400, "bad_request");
    assert_eq!(r.json()["parameter"], "issuer");

    // Dave's next calls open new sessions.
    assert_ne!(call(&gw, &web).await?, dave_web);
    assert_eq!(call(&gw, &kit.token("erin")).await?, erin);
    gw.eventually("the audit events of both closes", || async {
        let logs = gw.logs();
        Ok([&dave_web, &dave_desktop]
            .iter()
            .all(|id| {
                logs.lines().any(|l| {
                    l.contains("session_closed") && l.contains(id.as_str()) && l.contains("admin")
                })
            })
            .then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_subject_needs_its_issuer_when_several_are_trusted() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let other = Issuer::start("127.0.0.1:0".parse()?).await?;
    let mut config = kit.config();
    config.push(
        "issuers",
        &format!(
            "issuer = \"{}\"\naudiences = [\"erp-api\"]\nalgorithms = [\"RS256\"]\n",
            other.issuer_url()
        ),
    );
    let gw = start_admin(config).await?;
    // The same `sub` at two issuers: two subjects.
    let ours = call(&gw, &kit.token("alice")).await?;
    let theirs = call(&gw, &other.mint(&TokenRequest::new("alice"))).await?;

    let r = admin(&gw, Method::DELETE, "/admin/v1/subjects/alice/sessions").await?;
    assert_problem(&r, 400, "bad_request");
    assert_eq!(r.json()["parameter"], "issuer");

    let r = admin(
        &gw,
        Method::DELETE,
        &format!(
            "/admin/v1/subjects/alice/sessions?issuer={}",
            url_encode(other.issuer_url())
        ),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(ids(&r.json()["closed"]), [theirs]);
    let listed = admin(&gw, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), [ours]);
    Ok(())
}

#[tokio::test]
async fn licenses_show_limit_use_and_free_seats_per_pool() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = two_pools(&kit);
    config.pool(0).insert("limit".into(), 2.into());
    config.pool(1).insert("limit".into(), 3.into());
    let reserved: toml::Value = toml::from_str::<toml::Table>(
        r#"reserved = [{ claim = "sub", any_of = ["cfo"], seats = 1 }]"#,
    )?["reserved"]
        .clone();
    config.pool(1).insert("reserved".into(), reserved);
    let gw = start_admin(config).await?;

    let licenses =
        || async { anyhow::Ok(admin(&gw, Method::GET, "/admin/v1/licenses").await?.json()) };
    assert_eq!(
        licenses().await?,
        json!({"pools": [
            {"pool": "desktop", "limit": 2, "reserved": 0, "in_use": 0, "free": 2, "waiting": 0},
            {"pool": "default", "limit": 3, "reserved": 1, "in_use": 0, "free": 3, "waiting": 0},
        ]})
    );
    call(&gw, &desktop(&kit, "alice")).await?;
    let bob = call(&gw, &kit.token("bob")).await?;
    call(&gw, &kit.token("carol")).await?;
    assert_eq!(
        licenses().await?,
        json!({"pools": [
            {"pool": "desktop", "limit": 2, "reserved": 0, "in_use": 1, "free": 1, "waiting": 0},
            {"pool": "default", "limit": 3, "reserved": 1, "in_use": 2, "free": 1, "waiting": 0},
        ]})
    );
    // Closing a session frees its seat at once.
    let r = admin(&gw, Method::DELETE, &format!("/admin/v1/sessions/{bob}")).await?;
    assert_eq!(r.status, 200);
    assert_eq!(licenses().await?["pools"][1]["in_use"], 1);
    assert_eq!(licenses().await?["pools"][1]["free"], 2);
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_refused_by_name() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        ("pool=nope", "pool"),
        ("pool=", "pool"),
        ("subject=a&subject=b", "subject"),
        ("subjekt=alice", "subjekt"),
    ] {
        let r = admin(&gw, Method::GET, &format!("/admin/v1/sessions?{query}")).await?;
        assert_problem(&r, 400, "bad_request");
        assert_eq!(r.json()["parameter"], parameter, "{query}");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains(parameter), "{query}: {detail}");
    }
    let r = admin(
        &gw,
        Method::DELETE,
        "/admin/v1/subjects/alice/sessions?pool=x",
    )
    .await?;
    assert_problem(&r, 400, "bad_request");
    assert_eq!(r.json()["parameter"], "pool");
    // The limits themselves are fine.
    for query in ["limit=1", "limit=1000", "pool=default&subject=alice"] {
        let r = admin(&gw, Method::GET, &format!("/admin/v1/sessions?{query}")).await?;
        assert_eq!(r.status, 200, "{query}: {:?}", r.json());
    }
    Ok(())
}

#[tokio::test]
async fn a_store_outage_is_a_503_with_retry_after() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut redis = RedisServer::start()?;
    let mut config = kit.config();
    config.use_redis(redis.url());
    config.set("redis", "connect_timeout", "500ms");
    config.set("redis", "response_timeout", "500ms");
    let gw = start_admin(config).await?;
    let id = call(&gw, &kit.token("alice")).await?;
    let listed = admin(&gw, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), [id.as_str()]);

    redis.stop();
    for (method, path) in [
        (Method::GET, "/admin/v1/sessions".to_string()),
        (Method::GET, format!("/admin/v1/sessions/{id}")),
        (Method::DELETE, format!("/admin/v1/sessions/{id}")),
        (
            Method::DELETE,
            "/admin/v1/subjects/alice/sessions".to_string(),
        ),
        (Method::GET, "/admin/v1/licenses".to_string()),
    ] {
        let r = admin(&gw, method, &path).await?;
        assert_problem(&r, 503, "store_unavailable");
        assert!(r.header("retry-after").is_some(), "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn an_admin_close_reaches_every_instance_of_a_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "touch_interval", "1s");
    config.set("redis", "url", redis.url());
    let a = start_admin(config.clone()).await?;
    let b = start_admin(config).await?;
    let alice = kit.token("alice");
    let id = call(&a, &alice).await?;
    assert_eq!(call(&b, &alice).await?, id, "one session across the fleet");

    // Closed through A's admin API: B's cached lease does not keep it alive.
    let r = admin(&a, Method::DELETE, &format!("/admin/v1/sessions/{id}")).await?;
    assert_eq!(r.status, 200);
    let listed = admin(&b, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), Vec::<String>::new());
    let reopened = b
        .eventually("a new session on the other instance", || async {
            let id_now = call(&b, &alice).await?;
            Ok((id_now != id).then_some(id_now))
        })
        .await?;
    let listed = admin(&a, Method::GET, "/admin/v1/sessions").await?.json();
    assert_eq!(ids(&listed["sessions"]), [reopened]);
    Ok(())
}

/// The `session-gateway admin` command against a running gateway.
#[tokio::test]
async fn the_admin_command_shows_licenses_and_closes_sessions() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let id = call(&gw, &kit.token("alice")).await?;
    call(&gw, &kit.token("bob")).await?;
    let url = format!("http://{}", gw.admin);

    // A table by default: header and one aligned row per pool.
    let out = cli(&["admin", "--url", &url, "licenses"], Some(TOKEN)).await?;
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(lines[0]),
        ["POOL", "LIMIT", "RESERVED", "IN", "USE", "FREE", "WAITING"]
    );
    assert_eq!(words(lines[1]), ["default", "10", "0", "2", "8", "0"]);
    assert_eq!(
        lines[0].len(),
        lines[1].len(),
        "aligned columns:\n{}",
        out.stdout
    );

    // --json: the API's document.
    let out = cli(&["admin", "--url", &url, "--json", "licenses"], Some(TOKEN)).await?;
    assert!(out.ok, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout)?;
    assert_eq!(
        doc,
        json!({"pools": [{"pool": "default", "limit": 10, "reserved": 0, "in_use": 2, "free": 8, "waiting": 0}]})
    );

    let out = cli(
        &["admin", "--url", &url, "sessions", "--subject", "alice"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("SESSION ID"), "{}", out.stdout);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    assert!(!out.stdout.contains("bob"), "{}", out.stdout);

    let out = cli(
        &["admin", "--url", &url, "--json", "sessions", "--limit", "1"],
        Some(TOKEN),
    )
    .await?;
    let doc: Value = serde_json::from_str(&out.stdout)?;
    let oldest = admin(&gw, Method::GET, "/admin/v1/sessions?limit=1").await?;
    assert_eq!(ids(&doc["sessions"]), ids(&oldest.json()["sessions"]));
    assert_eq!(ids(&doc["sessions"]).len(), 1);
    assert!(doc["next_cursor"].is_string(), "one session left out");

    let out = cli(&["admin", "--url", &url, "kill", &id], Some(TOKEN)).await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("SESSION ID"), "{}", out.stdout);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    assert_eq!(out.stderr.trim(), format!("closed session {id}"));
    let out = cli(&["admin", "--url", &url, "kill", &id], Some(TOKEN)).await?;
    assert!(!out.ok);
    assert!(out.stderr.contains("no open session"), "{}", out.stderr);

    let out = cli(
        &["admin", "--url", &url, "kill", "--subject", "bob"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "closed 1 session(s)");
    assert!(out.stdout.starts_with("SESSION ID"), "{}", out.stdout);
    assert!(out.stdout.contains("bob"), "{}", out.stdout);

    // Errors: one line on stderr, a failing exit code.
    let out = cli(
        &["admin", "--url", &url, "licenses"],
        Some("not-the-admin-token"),
    )
    .await?;
    assert!(!out.ok);
    assert_eq!(out.stderr.trim(), "session-gateway: admin token rejected");
    let out = cli(&["admin", "--url", &url, "licenses"], None).await?;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("SESSION_GATEWAY_ADMIN_TOKEN"),
        "{}",
        out.stderr
    );
    let nowhere = format!("http://127.0.0.1:{}", session_gateway_e2e::free_port());
    let out = cli(&["admin", "--url", &nowhere, "licenses"], Some(TOKEN)).await?;
    assert!(!out.ok);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&nowhere) && out.stderr.contains("connection refused"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// Percent-encodes a query value.
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /admin/v1/revocations`: a token by id until a time, or every token
/// of a subject issued before a time; listed by `GET`; bad bodies refused.
#[tokio::test]
async fn revocations_refuse_tokens_by_id_or_by_subject() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let revoke = |body: Value| {
        let gw = &gw;
        async move {
            let r = gw
                .client()
                .post(gw.admin_url("/admin/v1/revocations"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await?;
            Reply::read(r).await
        }
    };

    // A token by its jti.
    let claims = kit.issuer.claims(&TokenRequest::new("alice"));
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    let alice = kit
        .issuer
        .sign_raw(&kit.issuer.header(jsonwebtoken::Algorithm::RS256), &claims);
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let r = revoke(json!({"token_id": jti, "until": "2099-01-01T00:00:00Z"})).await?;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(r.json()["revocation"]["kind"], "token");
    let refused = gw.get("/api/x", &alice).await?;
    assert_eq!(refused.status, 401);
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked")
    );
    // Another token of alice's is not affected.
    assert_eq!(gw.get("/api/x", &kit.token("alice")).await?.status, 200);

    // Every token of bob issued before now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let old = kit.mint(&TokenRequest::new("bob").claim("iat", now - 60));
    assert_eq!(gw.get("/api/x", &old).await?.status, 200);
    let r = revoke(json!({"subject": "bob"})).await?;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(gw.get("/api/x", &old).await?.status, 401);
    let newer = kit.mint(&TokenRequest::new("bob").claim("iat", now + 2));
    assert_eq!(gw.get("/api/x", &newer).await?.status, 200);

    // The command line records one too.
    let url = gw.admin_url("");
    let out = cli(
        &["admin", "--url", &url, "revoke", "--subject", "erin"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("subject"), "{}", out.stdout);
    let out = cli(
        &["admin", "--url", &url, "revoke", "--token-id", "x"],
        Some(TOKEN),
    )
    .await?;
    assert!(!out.ok, "--token-id needs --until");

    let listed = admin(&gw, Method::GET, "/admin/v1/revocations").await?;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json()["revocations"].as_array().map(Vec::len),
        Some(3)
    );

    for bad in [
        json!({}),
        json!({"token_id": "x"}),
        json!({"token_id": "x", "until": "tomorrow"}),
        json!({"token_id": "x", "until": "2099-01-01T00:00:00Z", "subject": "bob"}),
        json!({"subject": "bob", "colour": "red"}),
    ] {
        let r = revoke(bad.clone()).await?;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.json());
    }
    Ok(())
}

/// Tables go to stdout and nothing else, so they can be piped; counts and
/// notes go to stderr.
#[tokio::test]
async fn the_admin_command_prints_tables_on_stdout_and_counts_on_stderr() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let url = format!("http://{}", gw.admin);
    let sessions = |extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut args = vec!["admin", "--url", url.as_str(), "sessions"];
            args.extend_from_slice(extra);
            cli(&args, Some(TOKEN)).await
        }
    };

    let out = sessions(&[]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, "", "nothing to pipe");
    assert_eq!(out.stderr.trim(), "no open sessions");

    let alice = call(&gw, &kit.token("alice")).await?;
    let bob = call(&gw, &kit.token("bob")).await?;
    let out = sessions(&[]).await?;
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and one row each:\n{}", out.stdout);
    assert!(lines[0].starts_with("SESSION ID"), "{}", out.stdout);
    let mut shown: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    shown.sort_unstable();
    let mut opened = vec![alice.as_str(), bob.as_str()];
    opened.sort_unstable();
    assert_eq!(shown, opened);
    assert_eq!(out.stderr.trim(), "2 session(s)");

    let out = sessions(&["--limit", "1"]).await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert_eq!(
        out.stderr.trim(),
        "1 session(s); more not shown (raise --limit)"
    );
    Ok(())
}

/// `POST /admin/v1/revocations` refuses times in the past, naming the
/// field, and records nothing; the command line shows the problem's detail.
#[tokio::test]
async fn revocations_dated_in_the_past_are_refused() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    for (body, field) in [
        (
            json!({"token_id": "jti-1", "until": "2020-01-01T00:00:00Z"}),
            "until",
        ),
        (
            json!({"subject": "bob", "not_before": "2020-01-01T00:00:00Z"}),
            "not_before",
        ),
    ] {
        let r = Reply::read(
            gw.client()
                .post(gw.admin_url("/admin/v1/revocations"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        assert_problem(&r, 400, "bad_request");
        assert_eq!(r.json()["parameter"], field, "{body}");
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains("in the past"), "{detail}");
    }
    let listed = admin(&gw, Method::GET, "/admin/v1/revocations").await?;
    assert_eq!(listed.json()["revocations"], json!([]), "nothing recorded");

    let url = gw.admin_url("");
    let out = cli(
        &[
            "admin",
            "--url",
            &url,
            "revoke",
            "--token-id",
            "jti-1",
            "--until",
            "2020-01-01T00:00:00Z",
        ],
        Some(TOKEN),
    )
    .await?;
    assert!(!out.ok, "{}", out.stdout);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("parameter `until`") && out.stderr.contains("in the past"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// A subject revocation shows the issuer and subject it concerns, over the
/// API and on the command line, not only their key.
#[tokio::test]
async fn subject_revocations_show_the_subject_they_concern() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let issuer = kit.issuer.claims(&TokenRequest::new("bob"))["iss"].clone();
    let url = gw.admin_url("");
    let out = cli(
        &[
            "admin",
            "--url",
            &url,
            "--json",
            "revoke",
            "--subject",
            "bob",
        ],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout)?;
    let revocation = &doc["revocation"];
    assert_eq!(revocation["kind"], "subject");
    assert_eq!(revocation["subject"], "bob");
    assert_eq!(revocation["issuer"], issuer);
    assert!(
        revocation["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("subject:")),
        "{revocation}"
    );

    let listed = admin(&gw, Method::GET, "/admin/v1/revocations").await?;
    assert_eq!(listed.json()["revocations"][0]["subject"], "bob");

    let out = cli(
        &["admin", "--url", &url, "revocations", "list"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        words,
        ["ID", "KIND", "SUBJECT", "ISSUER", "NOT", "BEFORE", "UNTIL"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[1..4],
        ["subject", "bob", issuer.as_str().unwrap_or("")]
    );
    assert_eq!(out.stderr.trim(), "1 revocation(s)");
    Ok(())
}

/// A revocation is deleted by its id: over the API (`DELETE
/// /admin/v1/revocations/{id}`) and with `admin revocations delete`, and the
/// token it refused is accepted again at once.
#[tokio::test]
async fn revocations_are_listed_and_deleted_by_id() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let url = gw.admin_url("");
    let claims = kit.issuer.claims(&TokenRequest::new("alice"));
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    let alice = kit
        .issuer
        .sign_raw(&kit.issuer.header(jsonwebtoken::Algorithm::RS256), &claims);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let bob = kit.mint(&TokenRequest::new("bob").claim("iat", now - 60));
    for args in [
        vec![
            "revoke",
            "--token-id",
            &jti,
            "--until",
            "2099-01-01T00:00:00Z",
        ],
        vec!["revoke", "--subject", "bob"],
    ] {
        let mut all = vec!["admin", "--url", &url];
        all.extend(args);
        let out = cli(&all, Some(TOKEN)).await?;
        assert!(out.ok, "{}", out.stderr);
    }
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401);
    assert_eq!(gw.get("/api/x", &bob).await?.status, 401);

    let listed = admin(&gw, Method::GET, "/admin/v1/revocations")
        .await?
        .json();
    let id_of = |kind: &str| {
        listed["revocations"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["kind"] == kind))
            .and_then(|r| r["id"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(id_of("token"), jti);
    let bob_id = id_of("subject");

    // Over the API: the token is accepted again at once; a second delete
    // finds nothing.
    let path = format!("/admin/v1/revocations/{}", url_encode(&jti));
    let r = admin_as(&gw, Method::DELETE, &path, Some(&alice)).await?;
    assert_problem(&r, 401, "admin_unauthorized");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 401, "still revoked");
    let r = admin(&gw, Method::DELETE, &path).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["deleted"][0]["token_id"], jti.as_str());
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    let r = admin(&gw, Method::DELETE, &path).await?;
    assert_problem(&r, 404, "revocation_not_found");
    assert_eq!(r.json()["revocation_id"], jti.as_str());

    // On the command line.
    let out = cli(
        &["admin", "--url", &url, "revocations", "delete", &bob_id],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.starts_with("ID"), "{}", out.stdout);
    assert!(out.stdout.contains("bob"), "{}", out.stdout);
    assert_eq!(out.stderr.trim(), "deleted 1 revocation(s)");
    assert_eq!(gw.get("/api/x", &bob).await?.status, 200);
    let out = cli(
        &["admin", "--url", &url, "revocations", "delete", &bob_id],
        Some(TOKEN),
    )
    .await?;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("no revocation in force"),
        "{}",
        out.stderr
    );
    let out = cli(
        &["admin", "--url", &url, "revocations", "list"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.trim(), "no revocations in force");
    Ok(())
}

/// A revocation deleted through one instance of a fleet stops refusing
/// the token there at once, and on the others by their next sync.
#[tokio::test]
async fn a_deleted_revocation_reaches_every_instance_of_a_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    let mut config = kit.config();
    config.set("sessions", "store", "redis");
    config.set("sessions", "sweep_interval", "1s");
    config.set("redis", "url", redis.url());
    let a = start_admin(config.clone()).await?;
    let b = start_admin(config).await?;
    let claims = kit.issuer.claims(&TokenRequest::new("alice"));
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    let alice = kit
        .issuer
        .sign_raw(&kit.issuer.header(jsonwebtoken::Algorithm::RS256), &claims);
    let r = Reply::read(
        a.client()
            .post(a.admin_url("/admin/v1/revocations"))
            .bearer_auth(TOKEN)
            .json(&json!({"token_id": jti, "until": "2099-01-01T00:00:00Z"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(r.status, 201, "{:?}", r.json());
    b.eventually("B refusing the token", || async {
        Ok((b.get("/api/x", &alice).await?.status == 401).then_some(()))
    })
    .await?;

    let path = format!("/admin/v1/revocations/{}", url_encode(&jti));
    let r = admin(&a, Method::DELETE, &path).await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(a.get("/api/x", &alice).await?.status, 200, "at once on A");
    b.eventually("B accepting the token again", || async {
        Ok((b.get("/api/x", &alice).await?.status == 200).then_some(()))
    })
    .await?;
    Ok(())
}

/// `GET /admin/v1/audit` reads the trail newest first, filtered, and oldest
/// first after an event; `admin audit` prints it as JSON lines and, with
/// `--follow`, keeps printing new events.
#[tokio::test]
async fn the_audit_trail_is_read_filtered_followed_and_printed_by_the_command() -> anyhow::Result<()>
{
    let kit = Devkit::start().await?;
    let gw = start_admin(kit.config()).await?;
    let id = call(&gw, &kit.token("alice")).await?;
    assert_eq!(
        admin(&gw, Method::DELETE, &format!("/admin/v1/sessions/{id}"))
            .await?
            .status,
        200
    );

    let r = admin(&gw, Method::GET, "/admin/v1/audit").await?;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let body = r.json();
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["session_closed", "session_opened"], "newest first");
    let closed = &events[0];
    assert_eq!(closed["reason"], "admin");
    assert_eq!(closed["session_id"], id.as_str());
    assert_eq!(closed["subject"], "alice");
    assert_eq!(closed["pool"], "default");
    assert!(
        closed["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{closed}"
    );
    assert_eq!(body["next_cursor"], Value::Null);

    let r = admin(&gw, Method::GET, "/admin/v1/audit?event=session_opened").await?;
    assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(1));
    let opened_id = events[1]["id"].as_str().unwrap_or("");
    let r = admin(
        &gw,
        Method::GET,
        &format!("/admin/v1/audit?after={opened_id}"),
    )
    .await?;
    let body = r.json();
    assert_eq!(body["events"][0]["event"], "session_closed");
    assert_eq!(body["next_cursor"], events[0]["id"]);

    let r = admin(&gw, Method::GET, "/admin/v1/audit?after=yesterday").await?;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("after")),
        "{:?}",
        r.json()
    );

    // The command: the latest events as JSON lines, oldest first.
    let url = format!("http://{}", gw.admin);
    let out = cli(
        &["admin", "--url", &url, "audit", "--limit", "10"],
        Some(TOKEN),
    )
    .await?;
    assert!(out.ok, "{}", out.stderr);
    let printed: Vec<Value> = out
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = printed.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["session_opened", "session_closed"]);

    // --follow prints what happens after it started, until it is stopped.
    let mut follower = tokio::process::Command::new(BIN)
        .args(["admin", "--url", &url, "audit", "--limit", "1", "--follow"])
        .env("SESSION_GATEWAY_ADMIN_TOKEN", TOKEN)
        .env_remove("SESSION_GATEWAY_ADMIN_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = follower
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(next_json(&mut lines).await?["event"], "session_closed");
    call(&gw, &kit.token("bob")).await?;
    let followed = next_json(&mut lines).await?;
    assert_eq!(followed["event"], "session_opened");
    assert_eq!(followed["subject"], "bob");
    follower.kill().await?;
    Ok(())
}

/// The next line a child prints, as JSON (bounded in time).
async fn next_json<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> anyhow::Result<Value> {
    let line = tokio::time::timeout(session_gateway_e2e::DEADLINE, lines.next_line())
        .await??
        .ok_or_else(|| anyhow::anyhow!("the command ended"))?;
    Ok(serde_json::from_str(&line)?)
}
