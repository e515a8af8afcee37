//! The command line: `check-config`, `dev` and the usage errors of `admin`,
//! as an operator runs them.

use std::path::Path;
use std::process::{Command, Stdio};

use session_gateway_e2e::{Reply, client, eventually, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn check_config(text: &str) -> anyhow::Result<(bool, String, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text)?;
    let out = Command::new(BIN).arg("check-config").arg(&path).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

const MINIMAL: &str = r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["erp-api"]

[[pools]]
name = "default"
limit = 5

[[upstreams]]
name = "erp"
servers = ["127.0.0.1:9000"]

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "erp"
policy = "session"
"#;

#[test]
fn check_config_prints_the_effective_configuration() -> anyhow::Result<()> {
    let (ok, stdout, stderr) = check_config(MINIMAL)?;
    assert!(ok, "{stderr}");
    // Defaults are filled in and the output is itself a valid configuration.
    assert!(stdout.contains("idle_timeout = \"20m\""), "{stdout}");
    assert!(stdout.contains("absolute_timeout = \"8h\""), "{stdout}");
    let (ok_again, stdout_again, stderr) = check_config(&stdout)?;
    assert!(ok_again, "{stderr}");
    assert_eq!(stdout, stdout_again);
    Ok(())
}

#[test]
fn check_config_names_the_key_of_the_first_error_in_one_line() -> anyhow::Result<()> {
    let cases = [
        (MINIMAL.replace("limit = 5", "limit = 0"), "pools[0].limit"),
        (
            MINIMAL.replace("limit = 5", "limit = 5\ncolour = \"red\""),
            "pools[0]",
        ),
        (
            format!("{MINIMAL}\n[sessions]\nidle_timeout = \"soon\"\n"),
            "sessions.idle_timeout",
        ),
        (
            MINIMAL.replace("audiences", "algorithms = [\"none\"]\naudiences"),
            "issuers[0].algorithms",
        ),
        (
            MINIMAL.replace("upstream = \"erp\"", "upstream = \"crm\""),
            "routes[0].upstream",
        ),
    ];
    for (text, key) in cases {
        let (ok, stdout, stderr) = check_config(&text)?;
        assert!(!ok, "accepted, printed {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(key), "expected `{key}` in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    Ok(())
}

/// The value given to every environment variable an example names: long
/// enough for an admin token, valid as a password and as a header value.
const EXAMPLE_SECRET: &str = "example-secret-0123456789";

/// Every file in `config/` passes `check-config` with the environment
/// variables it names set, and prints an effective configuration that parses
/// and keeps the file's store choices but none of the secrets. A file added
/// to `config/` is checked without touching this test.
#[test]
fn every_example_configuration_passes_check_config() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.display().to_string();
        let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path)?)
            .map_err(|e| anyhow::anyhow!("{name} is not TOML: {e}"))?;
        let mut command = Command::new(BIN);
        command
            .arg("check-config")
            .arg(&path)
            .env_remove("RUST_LOG");
        let mut names = Vec::new();
        env_names(&file, &mut names);
        for var in &names {
            command.env(var, EXAMPLE_SECRET);
        }
        let out = command.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name} (with {names:?} set) failed: {stderr}"
        );
        let effective: toml::Table = toml::from_str(&stdout)
            .map_err(|e| anyhow::anyhow!("output for {name} is not TOML: {e}\n{stdout}"))?;
        for (table, key) in [("sessions", "store"), ("redis", "mode")] {
            let wanted = file.get(table).and_then(|t| t.get(key));
            if let Some(wanted) = wanted {
                let got = effective.get(table).and_then(|t| t.get(key));
                assert_eq!(got, Some(wanted), "{name}: effective {table}.{key}");
            }
        }
        assert!(
            !stdout.contains(EXAMPLE_SECRET),
            "{name}: a secret was printed"
        );
        checked.push(path.file_name().map(|n| n.to_string_lossy().to_string()));
    }
    for example in [
        "dev.toml",
        "single-instance.toml",
        "redis-fleet.toml",
        "redis-cluster.toml",
        "redis-sentinel.toml",
    ] {
        assert!(
            checked.contains(&Some(example.to_string())),
            "config/{example} is missing; checked {checked:?}"
        );
    }
    Ok(())
}

/// Runs `session-gateway admin …` against nothing: these fail in parsing,
/// before any token or connection is looked at. Exit code and stderr.
fn admin_usage(args: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .env_remove("SESSION_GATEWAY_ADMIN_TOKEN")
        .env_remove("SESSION_GATEWAY_ADMIN_URL")
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

/// `admin kill` without a session id or `--subject` is a usage error that
/// names both forms, like any other clap usage error (exit code 2).
#[test]
fn admin_kill_without_a_target_names_both_forms() -> anyhow::Result<()> {
    let (code, stdout, stderr) = admin_usage(&["kill"])?;
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("SESSION_ID"), "{stderr}");
    assert!(stderr.contains("--subject"), "{stderr}");
    assert!(stderr.contains("Usage:"), "{stderr}");
    let (code, _, stderr) = admin_usage(&["revoke"])?;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--token-id") && stderr.contains("--subject"),
        "{stderr}"
    );
    let (code, _, stderr) = admin_usage(&["kill", "abc", "--subject", "bob"])?;
    assert_eq!(code, Some(2), "{stderr}");
    Ok(())
}

/// A bad `--limit` gets one clear message naming the option and the range,
/// not the integer parser's internals.
#[test]
fn admin_sessions_limit_must_be_a_positive_number() -> anyhow::Result<()> {
    for bad in ["0", "-1", "ten", "1.5", ""] {
        let (code, _, stderr) = admin_usage(&["sessions", "--limit", bad])?;
        assert_eq!(code, Some(2), "--limit {bad:?}: {stderr}");
        assert!(
            stderr.contains("--limit") && stderr.contains("must be a whole number from 1"),
            "--limit {bad:?}: {stderr}"
        );
        for internal in ["non-zero", "invalid digit", "unexpected argument"] {
            assert!(!stderr.contains(internal), "--limit {bad:?}: {stderr}");
        }
    }
    Ok(())
}

/// The environment variables a configuration names: the string value of
/// every key ending in `_env`, at any depth.
fn env_names(table: &toml::Table, names: &mut Vec<String>) {
    for (key, value) in table {
        match value {
            toml::Value::String(var) if key.ends_with("_env") => names.push(var.clone()),
            toml::Value::Table(inner) => env_names(inner, names),
            toml::Value::Array(items) => items
                .iter()
                .filter_map(toml::Value::as_table)
                .for_each(|inner| env_names(inner, names)),
            _ => {}
        }
    }
}

/// `session-gateway dev` serves the walkthrough it prints: open, reuse
/// across refresh, pool full.
#[tokio::test]
async fn dev_mode_runs_the_walkthrough() -> anyhow::Result<()> {
    let port = || format!("127.0.0.1:{}", free_port());
    let (listen, admin, issuer, backend) = (port(), port(), port(), port());
    let child = Command::new(BIN)
        .args([
            "dev",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--issuer",
            &issuer,
            "--backend",
            &backend,
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let guard = Kill(std::sync::Mutex::new(child));
    let http = client();
    eventually("dev mode ready", || async {
        if let Some(status) = guard.exited()? {
            anyhow::bail!("dev mode exited: {status}");
        }
        let ready = http.get(format!("http://{admin}/readyz")).send().await;
        Ok(ready.ok().filter(|r| r.status().is_success()).map(|_| ()))
    })
    .await?;

    let token = |user: &str| {
        let http = http.clone();
        let url = format!("http://{issuer}/dev/token?user={user}");
        async move { anyhow::Ok(http.get(url).send().await?.text().await?.trim().to_string()) }
    };
    let call = |token: String| {
        let http = http.clone();
        let url = format!("http://{listen}/api/orders");
        async move { Reply::read(http.get(url).bearer_auth(token).send().await?).await }
    };

    let alice = call(token("alice").await?).await?;
    assert_eq!(alice.status, 200);
    let id = alice.forwarded_header("x-session-id").unwrap_or_default();
    let refreshed = call(token("alice").await?).await?;
    assert_eq!(refreshed.forwarded_header("x-session-id"), Some(id));
    assert_eq!(call(token("bob").await?).await?.status, 200);
    let carol = call(token("carol").await?).await?;
    assert_eq!(carol.status, 429);
    assert_eq!(carol.problem(), "license_unavailable");
    Ok(())
}

/// Kills the process when the test ends, however it ends.
struct Kill(std::sync::Mutex<std::process::Child>);

impl Kill {
    fn exited(&self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let mut child = self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(child.try_wait()?)
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        if let Ok(child) = self.0.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
