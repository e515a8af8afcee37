//! The deployment artefacts under `deploy/`: they parse, they name only
//! metrics the gateway registers, their gateway configurations pass the real
//! validation (and the compose one runs a real two-instance Redis fleet), and
//! the manifests agree with those configurations (ports, secrets, shutdown
//! timing). The Helm chart (`deploy/helm`) is linted and rendered with
//! `helm` (scripts/bootstrap.sh installs it), and what it renders agrees with
//! the kustomize manifests. Nothing here needs a cluster; `promtool`,
//! `haproxy` and `kubectl` checks run when those tools are on PATH and are
//! skipped (with a message) otherwise, and the image is built and started
//! only where a container runtime answers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail, ensure};
use serde::Deserialize as _;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use session_gateway_e2e::{Devkit, Issuer, RedisServer, Reply, client, eventually, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// Stand-ins for the secrets the configurations name (never real values).
const ADMIN_TOKEN: &str = "deploy-test-admin-token-0123456789";
const REDIS_PASSWORD: &str = "deploy-test-redis-password";

// ---------------------------------------------------------------------------
// Files

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Every file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// All documents of a YAML file (`---` separated), merge keys (`<<`) applied.
fn yaml_documents(path: &Path) -> anyhow::Result<Vec<Yaml>> {
    let text = read(path)?;
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let mut value = Yaml::deserialize(document)
            .with_context(|| format!("{}: document {index}", path.display()))?;
        value
            .apply_merge()
            .with_context(|| format!("{}: document {index}: merge keys", path.display()))?;
        documents.push(value);
    }
    Ok(documents)
}

/// The one document of a YAML file.
fn yaml(path: &Path) -> anyhow::Result<Yaml> {
    let mut documents = yaml_documents(path)?;
    ensure!(
        documents.len() == 1,
        "{}: expected one document, found {}",
        path.display(),
        documents.len()
    );
    Ok(documents.remove(0))
}

/// `value[a][b]…` as a string.
fn text_at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key))?.as_str()
}

fn at<'a>(value: &'a Yaml, path: &[&str]) -> anyhow::Result<&'a Yaml> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .with_context(|| format!("missing {}", path.join(".")))
}

fn seq<'a>(value: &'a Yaml, path: &[&str]) -> anyhow::Result<&'a Vec<Yaml>> {
    at(value, path)?
        .as_sequence()
        .with_context(|| format!("{} is not a list", path.join(".")))
}

/// Whole seconds of a duration written `"5s"`, `"2m"` or `"1h"`.
fn seconds(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("`{text}` has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().with_context(|| format!("`{text}`"))?;
    Ok(match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => bail!("`{text}`: only s, m and h are expected in deploy/"),
    })
}

fn toml_str<'a>(table: &'a toml::Table, section: &str, key: &str) -> Option<&'a str> {
    table.get(section)?.get(key)?.as_str()
}

/// The port of an `IP:port` listener address in a gateway configuration.
fn port_of(address: &str) -> anyhow::Result<u16> {
    Ok(address
        .parse::<SocketAddr>()
        .with_context(|| format!("`{address}` is not IP:port"))?
        .port())
}

/// The environment variables a gateway configuration reads secrets from.
fn secret_variables(config: &toml::Table) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    names.extend(toml_str(config, "admin", "token_env").map(str::to_string));
    names.extend(toml_str(config, "redis", "password_env").map(str::to_string));
    if let Some(routes) = config.get("routes").and_then(|r| r.as_array()) {
        for route in routes {
            if let Some(name) = route.get("authorization_env").and_then(|v| v.as_str()) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn compose() -> anyhow::Result<Yaml> {
    yaml(&deploy("compose/compose.yaml"))
}

fn compose_config_text() -> anyhow::Result<String> {
    read(&deploy("compose/gateway.toml"))
}

fn k8s_config_text() -> anyhow::Result<String> {
    let configmap = yaml(&deploy("k8s/configmap.yaml"))?;
    ensure!(text_at(&configmap, &["kind"]) == Some("ConfigMap"));
    Ok(text_at(&configmap, &["data", "gateway.toml"])
        .context("configmap.yaml has no data.gateway.toml")?
        .to_string())
}

fn parse_toml(text: &str) -> anyhow::Result<toml::Table> {
    Ok(text.parse::<toml::Table>()?)
}

// ---------------------------------------------------------------------------
// Metric names

/// The metric names `gateway/src/telemetry/metrics.rs` registers, read from
/// its source: each string literal `"session_gateway_…"` in the registration
/// code, marked `true` when it is passed to the `histogram(…)` helper.
fn registered_metrics() -> anyhow::Result<BTreeMap<String, bool>> {
    let source = read(&repo().join("gateway/src/telemetry/metrics.rs"))?;
    // The unit tests below `#[cfg(test)]` quote exposition lines, not registrations.
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names = BTreeMap::new();
    for (start, _) in code.match_indices("\"session_gateway_") {
        let literal = &code[start + 1..];
        let end = literal
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(literal.len());
        if !literal[end..].starts_with('"') {
            continue;
        }
        let before = code[..start].trim_end();
        let histogram = before.ends_with("histogram(") || before.ends_with("HistogramOpts::new(");
        names.insert(literal[..end].to_string(), histogram);
    }
    ensure!(
        names.len() >= 10 && names.values().any(|h| *h),
        "could not read the metric registrations of metrics.rs (found {names:?})"
    );
    Ok(names)
}

/// Every `session_gateway_*` identifier in a PromQL expression (or any text).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (start, _) in expr.match_indices("session_gateway_") {
        let preceded_by_identifier = expr[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if preceded_by_identifier {
            continue;
        }
        let rest = &expr[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        names.push(rest[..end].to_string());
    }
    names
}

/// Whether `name` is a registered metric, or a `_bucket`/`_sum`/`_count`
/// series of a registered histogram.
fn is_registered(name: &str, registered: &BTreeMap<String, bool>) -> bool {
    registered.contains_key(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| registered.get(base) == Some(&true))
        })
}

/// Checks one expression: at least one `session_gateway_*` name, all registered.
fn check_expression(
    what: &str,
    expr: &str,
    registered: &BTreeMap<String, bool>,
) -> anyhow::Result<Vec<String>> {
    let names = metric_names(expr);
    ensure!(
        !names.is_empty(),
        "{what}: no session_gateway_* metric in `{expr}`"
    );
    for name in &names {
        ensure!(
            is_registered(name, registered),
            "{what}: `{name}` is not registered in gateway/src/telemetry/metrics.rs (expression `{expr}`)"
        );
    }
    Ok(names)
}

/// The rules of alerts.yml as (alert name, expression, annotations text).
fn alert_rules() -> anyhow::Result<Vec<(String, String, String)>> {
    let rules_file = yaml(&deploy("prometheus/alerts.yml"))?;
    let mut rules = Vec::new();
    for group in seq(&rules_file, &["groups"])? {
        for rule in seq(group, &["rules"])? {
            let name = text_at(rule, &["alert"])
                .context("every rule of alerts.yml is an alert (no recording rules)")?;
            let expr = text_at(rule, &["expr"]).with_context(|| format!("{name}: no expr"))?;
            ensure!(
                text_at(rule, &["labels", "severity"]).is_some(),
                "{name}: no severity label"
            );
            let mut annotations = String::new();
            for key in ["summary", "description"] {
                let text = text_at(rule, &["annotations", key])
                    .with_context(|| format!("{name}: no {key} annotation"))?;
                annotations.push_str(text);
                annotations.push('\n');
            }
            rules.push((name.to_string(), expr.to_string(), annotations));
        }
    }
    Ok(rules)
}

/// Every query string of the dashboard: panel `expr`s and variable `query`s.
fn dashboard_queries(value: &Json, key: Option<&str>, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                dashboard_queries(v, Some(k), out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| dashboard_queries(v, key, out)),
        Json::String(text) => {
            if let Some(key @ ("expr" | "query" | "definition")) = key {
                out.push((key.to_string(), text.clone()));
            }
        }
        _ => {}
    }
}

fn dashboard() -> anyhow::Result<Json> {
    let path = deploy("grafana/dashboard.json");
    serde_json::from_str(&read(&path)?).with_context(|| format!("parsing {}", path.display()))
}

// ---------------------------------------------------------------------------
// check-config

/// Replaces each `host` of `hosts` where it stands as a host with 127.0.0.1:
/// after `"` or `//` and before `:<port>`, or after `//` and before `/` or
/// `"`. So `"redis://redis:6379"` becomes `"redis://127.0.0.1:6379"` while
/// `store = "redis"` stays.
fn loopback_hosts(text: &str, hosts: &BTreeSet<String>) -> String {
    let mut out = text.to_string();
    for host in hosts {
        let mut replaced = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(index) = rest.find(host.as_str()) {
            let (before, after) = (&rest[..index], &rest[index + host.len()..]);
            let host_start = before.ends_with('"') || before.ends_with("//");
            let mut following = after.chars();
            let host_end = match following.next() {
                Some(':') => following.next().is_some_and(|c| c.is_ascii_digit()),
                Some('/' | '"') => before.ends_with("//"),
                _ => false,
            };
            replaced.push_str(before);
            replaced.push_str(if host_start && host_end {
                "127.0.0.1"
            } else {
                host
            });
            rest = after;
        }
        replaced.push_str(rest);
        out = replaced;
    }
    out
}

/// The in-cluster host names (`….svc.cluster.local`) of a text.
fn cluster_hosts(text: &str) -> BTreeSet<String> {
    let suffix = ".svc.cluster.local";
    text.match_indices(suffix)
        .map(|(end, _)| {
            let start = text[..end]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                .map_or(0, |i| i + 1);
            text[start..end + suffix.len()].to_string()
        })
        .collect()
}

/// Runs `check-config` on `text` with the secret variables it names set to
/// stand-in values; returns the effective configuration it prints.
fn check_config(name: &str, text: &str) -> anyhow::Result<String> {
    let config = parse_toml(text).with_context(|| format!("{name}: TOML"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text)?;
    let mut command = Command::new(BIN);
    command
        .arg("check-config")
        .arg(&path)
        .env_remove("RUST_LOG");
    for variable in secret_variables(&config) {
        let value = match variable.as_str() {
            "SG_ADMIN_TOKEN" => ADMIN_TOKEN.to_string(),
            "SG_REDIS_PASSWORD" => REDIS_PASSWORD.to_string(),
            _ => format!("Basic deploy-test-{}", variable.to_lowercase()),
        };
        command.env(variable, value);
    }
    let out = command.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        out.status.success(),
        "{name} fails check-config:\n{stderr}\n--- file as checked ---\n{text}"
    );
    ensure!(
        !stdout.contains(ADMIN_TOKEN) && !stdout.contains(REDIS_PASSWORD),
        "{name}: check-config printed a secret"
    );
    Ok(stdout)
}

// ---------------------------------------------------------------------------
// (a) everything parses

#[test]
fn every_yaml_and_json_file_under_deploy_parses() -> anyhow::Result<()> {
    let files = files_under(&repo().join("deploy"))?;
    let mut yaml_files = 0;
    // The chart's templates are Go templates; `helm template` renders them
    // (the chart tests below).
    let templates = deploy("helm/session-gateway/templates");
    for path in files.iter().filter(|p| !p.starts_with(&templates)) {
        if has_extension(path, &["yml", "yaml"]) {
            let documents = yaml_documents(path)?;
            ensure!(
                !documents.is_empty(),
                "{}: no YAML document",
                path.display()
            );
            for (index, document) in documents.iter().enumerate() {
                ensure!(
                    document.is_mapping(),
                    "{}: document {index} is not a mapping",
                    path.display()
                );
            }
            yaml_files += 1;
        } else if has_extension(path, &["json"]) {
            serde_json::from_str::<Json>(&read(path)?)
                .with_context(|| format!("parsing {}", path.display()))?;
        }
    }
    // compose (2) + prometheus (2) + grafana (2) + k8s (8)
    ensure!(
        yaml_files >= 14,
        "only {yaml_files} YAML files under deploy/"
    );
    // The one multi-document manifest: the API and the admin Service.
    assert_eq!(yaml_documents(&deploy("k8s/service.yaml"))?.len(), 2);
    Ok(())
}

#[test]
fn deploy_refers_to_loopback_and_in_cluster_hosts_only() -> anyhow::Result<()> {
    for path in files_under(&repo().join("deploy"))? {
        let text = read(&path)?;
        for (start, _) in text.match_indices("://") {
            let rest = &text[start + 3..];
            let end = rest
                .find(|c: char| "/:\"' \n)]}`,".contains(c))
                .unwrap_or(rest.len());
            let host = &rest[..end];
            let allowed = host == "127.0.0.1"
                || host == "localhost"
                || host.starts_with('[')
                || host.is_empty()
                || !host.contains('.')
                || host.ends_with(".svc.cluster.local")
                || host.ends_with(".svc");
            ensure!(
                allowed,
                "{}: `{host}` is neither loopback nor an in-cluster name",
                path.display()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (b) metric names

#[test]
fn the_metric_name_checker_accepts_registered_names_only() -> anyhow::Result<()> {
    let registered = registered_metrics()?;
    assert_eq!(
        registered.get("session_gateway_request_duration_seconds"),
        Some(&true)
    );
    assert_eq!(
        registered.get("session_gateway_requests_total"),
        Some(&false)
    );
    let ok = |expr: &str| check_expression("self-test", expr, &registered).is_ok();
    assert!(ok("rate(session_gateway_requests_total[5m])"));
    assert!(ok(
        "histogram_quantile(0.99, sum by (le) (rate(session_gateway_request_duration_seconds_bucket[5m])))"
    ));
    assert!(ok("session_gateway_store_operation_duration_seconds_count"));
    // Unknown names, suffixes on a counter, and expressions without any name fail.
    assert!(!ok("session_gateway_seats_used"));
    assert!(!ok("session_gateway_requests_total_bucket"));
    assert!(!ok(
        "session_gateway_requests_total + session_gateway_request_duration"
    ));
    assert!(!ok("up == 0"));
    assert_eq!(
        metric_names("a / session_gateway_seats_limit{pool=\"x\"}"),
        ["session_gateway_seats_limit"]
    );
    Ok(())
}

/// The PrometheusRule of the k8s manifests carries exactly the groups of
/// alerts.yml, so both ways of loading the rules alert alike.
#[test]
fn the_prometheus_rule_carries_the_alert_rules() -> anyhow::Result<()> {
    let rule = yaml(&deploy("k8s/prometheusrule.yaml"))?;
    ensure!(
        text_at(&rule, &["kind"]) == Some("PrometheusRule"),
        "prometheusrule.yaml is not a PrometheusRule"
    );
    let alerts = yaml(&deploy("prometheus/alerts.yml"))?;
    ensure!(
        at(&rule, &["spec", "groups"])? == at(&alerts, &["groups"])?,
        "deploy/k8s/prometheusrule.yaml's spec.groups differ from deploy/prometheus/alerts.yml's groups"
    );
    Ok(())
}

#[test]
fn alert_rules_use_only_registered_metrics() -> anyhow::Result<()> {
    let registered = registered_metrics()?;
    let rules = alert_rules()?;
    let mut used = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for (name, expr, annotations) in &rules {
        ensure!(alerts.insert(name.clone()), "alert {name} is defined twice");
        used.extend(check_expression(
            &format!("alerts.yml {name}"),
            expr,
            &registered,
        )?);
        for metric in metric_names(annotations) {
            ensure!(
                is_registered(&metric, &registered),
                "alerts.yml {name}: annotation names unknown metric `{metric}`"
            );
        }
    }
    for required in [
        "session_gateway_seats_in_use",
        "session_gateway_seats_limit",
        "session_gateway_license_refusals_total",
        "session_gateway_store_errors_total",
        "session_gateway_jwks_key_age_seconds",
        "session_gateway_requests_total",
        "session_gateway_upstream_errors_total",
    ] {
        ensure!(used.contains(required), "no alert uses {required}");
    }
    // The promtool unit tests of the rules feed registered series only.
    let tests = yaml(&deploy("prometheus/alerts_test.yml"))?;
    for test in seq(&tests, &["tests"])? {
        for series in seq(test, &["input_series"])? {
            let series = text_at(series, &["series"]).context("input series without `series`")?;
            check_expression("alerts_test.yml", series, &registered)?;
        }
    }
    Ok(())
}

#[test]
fn dashboard_queries_use_only_registered_metrics() -> anyhow::Result<()> {
    let registered = registered_metrics()?;
    let dashboard = dashboard()?;
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, None, &mut queries);
    let mut used = BTreeSet::new();
    let mut exprs = 0;
    for (key, query) in &queries {
        if key == "expr" {
            exprs += 1;
            used.extend(check_expression("dashboard.json expr", query, &registered)?);
        } else {
            for metric in metric_names(query) {
                ensure!(
                    is_registered(&metric, &registered),
                    "dashboard.json {key}: unknown metric `{metric}`"
                );
            }
        }
    }
    ensure!(exprs >= 10, "only {exprs} panel expressions");
    for required in [
        "session_gateway_requests_total",
        "session_gateway_request_duration_seconds_bucket",
        "session_gateway_seats_in_use",
        "session_gateway_seats_limit",
        "session_gateway_license_refusals_total",
        "session_gateway_token_rejections_total",
        "session_gateway_tokens_verified_total",
        "session_gateway_store_operation_duration_seconds_bucket",
        "session_gateway_store_errors_total",
        "session_gateway_jwks_key_age_seconds",
    ] {
        ensure!(
            used.contains(required),
            "no dashboard panel uses {required}"
        );
    }
    // Panels are addressable and every query goes through the datasource variable.
    let panels = dashboard["panels"].as_array().context("no panels")?;
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_u64()).collect();
    ensure!(
        ids.len() == panels.len() && !ids.contains(&None),
        "panel ids must be unique"
    );
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        ensure!(
            panel["datasource"]["uid"] == "${datasource}",
            "panel {} does not use the datasource variable",
            panel["title"]
        );
    }
    ensure!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    Ok(())
}

// ---------------------------------------------------------------------------
// (c) the gateway configurations pass the real validation

#[test]
fn compose_gateway_config_passes_check_config() -> anyhow::Result<()> {
    let compose = compose()?;
    let services: BTreeSet<String> = at(&compose, &["services"])?
        .as_mapping()
        .context("services is not a mapping")?
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let text = loopback_hosts(&compose_config_text()?, &services);
    let effective = check_config("deploy/compose/gateway.toml", &text)?;
    // Every compose host name was replaced: none is left in the effective configuration.
    for host in ["devkit", "//redis:"] {
        assert!(!effective.contains(host), "{host} left in {effective}");
    }
    assert!(
        effective.contains("servers = [\"127.0.0.1:9181\"]"),
        "{effective}"
    );
    assert!(effective.contains("store = \"redis\""), "{effective}");
    assert!(
        effective.contains("url = \"redis://127.0.0.1:6379\""),
        "{effective}"
    );
    Ok(())
}

#[test]
fn k8s_configmap_gateway_config_passes_check_config() -> anyhow::Result<()> {
    let original = k8s_config_text()?;
    let hosts = cluster_hosts(&original);
    ensure!(!hosts.is_empty(), "the ConfigMap names no in-cluster host");
    let text = loopback_hosts(&original, &hosts);
    ensure!(
        !text.contains(".svc.cluster.local"),
        "a cluster host was left: {text}"
    );
    let effective = check_config("deploy/k8s/configmap.yaml gateway.toml", &text)?;
    assert!(effective.contains("store = \"redis\""), "{effective}");
    Ok(())
}

// ---------------------------------------------------------------------------
// The manifests agree with the configurations

#[test]
fn k8s_manifests_agree_with_the_gateway_config() -> anyhow::Result<()> {
    let config = parse_toml(&k8s_config_text()?)?;
    let dir = deploy("k8s");

    // The kustomization lists every manifest, and nothing creates a Secret.
    let kustomization = yaml(&dir.join("kustomization.yaml"))?;
    let listed: BTreeSet<String> = seq(&kustomization, &["resources"])?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let mut objects = Vec::new();
    for path in files_under(&dir)? {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if file == "kustomization.yaml" {
            continue;
        }
        ensure!(
            listed.contains(file),
            "kustomization.yaml does not list {file}"
        );
        objects.extend(yaml_documents(&path)?);
    }
    for resource in &listed {
        ensure!(
            dir.join(resource).is_file(),
            "kustomization.yaml lists missing {resource}"
        );
    }
    let kind = |k: &str| -> Vec<&Yaml> {
        objects
            .iter()
            .filter(|o| text_at(o, &["kind"]) == Some(k))
            .collect()
    };
    ensure!(kind("Secret").is_empty(), "secrets must not be manifests");
    for k in [
        "Deployment",
        "ConfigMap",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        ensure!(!kind(k).is_empty(), "no {k}");
    }
    let [deployment] = kind("Deployment")[..] else {
        bail!("expected one Deployment");
    };
    let name = text_at(deployment, &["metadata", "name"]).context("Deployment name")?;
    assert_eq!(at(deployment, &["spec", "replicas"])?.as_u64(), Some(2));
    let pod = at(deployment, &["spec", "template", "spec"])?;
    let pod_labels = at(deployment, &["spec", "template", "metadata", "labels"])?;
    let [container] = &seq(pod, &["containers"])?[..] else {
        bail!("expected one container");
    };

    // Ports: the container's named ports are the configuration's listeners.
    let listen = config["server"]["listen"][0]
        .as_str()
        .context("server.listen")?;
    let admin = toml_str(&config, "server", "admin_listen").context("server.admin_listen")?;
    let port = |name: &str| -> Option<u64> {
        seq(container, &["ports"])
            .ok()?
            .iter()
            .find(|p| text_at(p, &["name"]) == Some(name))?
            .get("containerPort")?
            .as_u64()
    };
    assert_eq!(port("http"), Some(u64::from(port_of(listen)?)));
    assert_eq!(port("admin"), Some(u64::from(port_of(admin)?)));
    ensure!(
        !admin.starts_with("127."),
        "admin_listen on loopback cannot be probed or scraped"
    );

    // Probes on the admin port.
    assert_eq!(
        text_at(container, &["readinessProbe", "httpGet", "path"]),
        Some("/readyz")
    );
    assert_eq!(
        text_at(container, &["livenessProbe", "httpGet", "path"]),
        Some("/healthz")
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            text_at(container, &[probe, "httpGet", "port"]),
            Some("admin")
        );
    }

    // Shutdown: preStop sleep + grace_period + shutdown_timeout fit in the grace.
    let pre_stop = seq(container, &["lifecycle", "preStop", "exec", "command"])?;
    let pre_stop: Vec<&str> = pre_stop.iter().filter_map(Yaml::as_str).collect();
    let ["sleep", sleep] = pre_stop[..] else {
        bail!("preStop is not `sleep N`: {pre_stop:?}");
    };
    let sleep: u64 = sleep.parse()?;
    assert_eq!(sleep, 5);
    let grace = seconds(toml_str(&config, "server", "grace_period").context("grace_period")?)?;
    let shutdown =
        seconds(toml_str(&config, "server", "shutdown_timeout").context("shutdown_timeout")?)?;
    let termination = at(pod, &["terminationGracePeriodSeconds"])?
        .as_u64()
        .context("terminationGracePeriodSeconds")?;
    ensure!(
        termination > sleep + grace + shutdown,
        "terminationGracePeriodSeconds {termination} <= preStop {sleep} + grace {grace} + shutdown {shutdown}"
    );

    // Non-root, read-only root filesystem.
    assert_eq!(
        at(pod, &["securityContext", "runAsNonRoot"])?.as_bool(),
        Some(true)
    );
    let security = at(container, &["securityContext"])?;
    assert_eq!(
        at(security, &["readOnlyRootFilesystem"])?.as_bool(),
        Some(true)
    );
    assert_eq!(
        at(security, &["allowPrivilegeEscalation"])?.as_bool(),
        Some(false)
    );
    for resource in ["requests", "limits"] {
        at(container, &["resources", resource, "memory"])?;
    }

    // Secrets: every variable the configuration names comes from a Secret.
    let env = seq(container, &["env"])?;
    for variable in secret_variables(&config) {
        let entry = env
            .iter()
            .find(|e| text_at(e, &["name"]) == Some(variable.as_str()))
            .with_context(|| format!("the Deployment does not set {variable}"))?;
        ensure!(
            entry.get("value").is_none(),
            "{variable} has a literal value"
        );
        ensure!(
            text_at(entry, &["valueFrom", "secretKeyRef", "name"]).is_some(),
            "{variable} is not read from a Secret"
        );
    }

    // The configuration is the ConfigMap, mounted where the command reads it.
    let args: Vec<&str> = seq(container, &["args"])?
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let config_path = args
        .windows(2)
        .find_map(|w| (w[0] == "--config").then_some(w[1]))
        .context("no --config argument")?;
    let configmap_name = text_at(kind("ConfigMap")[0], &["metadata", "name"]).context("name")?;
    let volume = seq(pod, &["volumes"])?
        .iter()
        .find(|v| text_at(v, &["configMap", "name"]) == Some(configmap_name))
        .context("the ConfigMap is not a volume")?;
    let volume_name = text_at(volume, &["name"]).context("volume name")?;
    let mount = seq(container, &["volumeMounts"])?
        .iter()
        .find(|m| text_at(m, &["name"]) == Some(volume_name))
        .context("the ConfigMap volume is not mounted")?;
    let mount_path = text_at(mount, &["mountPath"]).context("mountPath")?;
    assert_eq!(config_path, format!("{mount_path}/gateway.toml"));

    // Selectors: Services, PDB and ServiceMonitor find the pods; HPA the Deployment.
    let selects_pods = |selector: &Yaml| -> bool {
        selector
            .as_mapping()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    };
    for service in kind("Service") {
        ensure!(
            selects_pods(at(service, &["spec", "selector"])?),
            "Service selector"
        );
    }
    let pdb = kind("PodDisruptionBudget")[0];
    ensure!(
        selects_pods(at(pdb, &["spec", "selector", "matchLabels"])?),
        "PDB selector"
    );
    let hpa = kind("HorizontalPodAutoscaler")[0];
    assert_eq!(
        text_at(hpa, &["spec", "scaleTargetRef", "name"]),
        Some(name)
    );
    let monitor = kind("ServiceMonitor")[0];
    assert_eq!(
        text_at(monitor, &["apiVersion"]),
        Some("monitoring.coreos.com/v1")
    );
    let wanted = at(monitor, &["spec", "selector", "matchLabels"])?;
    let admin_service = kind("Service")
        .into_iter()
        .find(|s| {
            wanted.as_mapping().is_some_and(|m| {
                m.iter().all(|(k, v)| {
                    at(s, &["metadata", "labels"]).ok().and_then(|l| l.get(k)) == Some(v)
                })
            })
        })
        .context("the ServiceMonitor selects no Service")?;
    let endpoint_port = text_at(&seq(monitor, &["spec", "endpoints"])?[0], &["port"]);
    let service_port = seq(admin_service, &["spec", "ports"])?
        .iter()
        .find(|p| text_at(p, &["name"]) == endpoint_port)
        .context("the ServiceMonitor port is not a port of its Service")?;
    assert_eq!(text_at(service_port, &["targetPort"]), Some("admin"));
    Ok(())
}

#[test]
fn compose_fleet_agrees_with_the_gateway_config() -> anyhow::Result<()> {
    let compose = compose()?;
    let config = parse_toml(&compose_config_text()?)?;
    let services = at(&compose, &["services"])?;
    for service in [
        "redis",
        "devkit",
        "gateway-1",
        "gateway-2",
        "haproxy",
        "prometheus",
        "grafana",
    ] {
        ensure!(
            services.get(service).is_some(),
            "compose.yaml has no service {service}"
        );
    }
    assert_eq!(text_at(services, &["redis", "image"]), Some("redis:7"));
    assert_eq!(
        text_at(services, &["haproxy", "image"]),
        Some("haproxy:2.8")
    );

    // Every bind-mounted file exists.
    let compose_dir = deploy("compose");
    for (name, service) in services.as_mapping().context("services")? {
        let Ok(volumes) = seq(service, &["volumes"]) else {
            continue;
        };
        for volume in volumes {
            let volume = volume.as_str().context("short volume syntax expected")?;
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with('.') {
                ensure!(
                    compose_dir.join(source).exists(),
                    "{name:?}: mounted {source} does not exist"
                );
            }
        }
    }

    // The gateways: the configuration, its secrets, shutdown timing.
    let admin_port = port_of(toml_str(&config, "server", "admin_listen").context("admin")?)?;
    let listen_port = port_of(config["server"]["listen"][0].as_str().context("listen")?)?;
    let grace = seconds(toml_str(&config, "server", "grace_period").context("grace")?)?;
    let shutdown = seconds(toml_str(&config, "server", "shutdown_timeout").context("shutdown")?)?;
    for gateway in ["gateway-1", "gateway-2"] {
        let service = at(services, &[gateway])?;
        let command: Vec<&str> = seq(service, &["command"])?
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert_eq!(
            command,
            ["run", "--config", "/etc/session-gateway/gateway.toml"]
        );
        let volumes: Vec<&str> = seq(service, &["volumes"])?
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        ensure!(
            volumes.contains(&"./gateway.toml:/etc/session-gateway/gateway.toml:ro"),
            "{gateway} does not mount gateway.toml: {volumes:?}"
        );
        for variable in secret_variables(&config) {
            let value = text_at(service, &["environment", &variable])
                .with_context(|| format!("{gateway} does not set {variable}"))?;
            ensure!(
                value.starts_with("${"),
                "{gateway}: {variable} must come from the environment"
            );
        }
        let stop = seconds(text_at(service, &["stop_grace_period"]).context("stop_grace_period")?)?;
        ensure!(
            stop > grace + shutdown,
            "{gateway}: stop_grace_period {stop}s is too short"
        );
    }

    // The devkit and the issuer the gateways trust.
    let devkit: Vec<&str> = seq(services, &["devkit", "command"])?
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        devkit,
        [
            "devkit",
            "--issuer",
            "0.0.0.0:9180",
            "--backend",
            "0.0.0.0:9181"
        ]
    );
    let issuer = config["issuers"][0]["issuer"].as_str().context("issuer")?;
    assert_eq!(issuer, "http://127.0.0.1:9180");
    assert_eq!(
        config["upstreams"][0]["servers"][0].as_str(),
        Some("devkit:9181")
    );
    assert_eq!(
        toml_str(&config, "redis", "url"),
        Some("redis://redis:6379")
    );
    assert_eq!(toml_str(&config, "sessions", "store"), Some("redis"));

    // Prometheus scrapes both admin listeners and loads the alert rules.
    let prometheus = yaml(&compose_dir.join("prometheus.yml"))?;
    let targets: BTreeSet<&str> = seq(&prometheus, &["scrape_configs"])?
        .iter()
        .flat_map(|job| {
            seq(job, &["static_configs"])
                .map(|s| s.iter())
                .into_iter()
                .flatten()
        })
        .flat_map(|s| seq(s, &["targets"]).map(|t| t.iter()).into_iter().flatten())
        .filter_map(Yaml::as_str)
        .collect();
    for gateway in ["gateway-1", "gateway-2"] {
        let target = format!("{gateway}:{admin_port}");
        ensure!(
            targets.contains(target.as_str()),
            "Prometheus does not scrape {target}"
        );
    }
    let rule_files: Vec<&str> = seq(&prometheus, &["rule_files"])?
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let prometheus_volumes: Vec<&str> = seq(services, &["prometheus", "volumes"])?
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for rule_file in rule_files {
        ensure!(
            prometheus_volumes
                .contains(&format!("../prometheus/alerts.yml:{rule_file}:ro").as_str()),
            "{rule_file} is not the mounted alerts.yml"
        );
    }

    // haproxy balances both proxy listeners and checks readiness on the admin port.
    let haproxy = read(&compose_dir.join("haproxy.cfg"))?;
    for gateway in ["gateway-1", "gateway-2"] {
        ensure!(haproxy.contains(&format!("server {gateway} {gateway}:{listen_port}")));
    }
    ensure!(
        haproxy.contains("uri /readyz") && haproxy.contains(&format!("check port {admin_port}"))
    );
    Ok(())
}

/// The compose setup relies on how the devkit names itself when bound to
/// 0.0.0.0: `iss` is `http://127.0.0.1:<port>`, which is why each gateway
/// reaches it through a relay on its own loopback.
#[tokio::test]
async fn devkit_bound_to_all_interfaces_names_itself_127_0_0_1() -> anyhow::Result<()> {
    let issuer = Issuer::start("0.0.0.0:0".parse()?).await?;
    assert_eq!(
        issuer.issuer_url(),
        format!("http://127.0.0.1:{}", issuer.addr().port())
    );
    issuer.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// The compose configuration runs a real fleet

/// A gateway process with the secret variables set, killed on drop.
struct FleetMember {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl FleetMember {
    async fn start(config: &toml::Table) -> anyhow::Result<Self> {
        let mut config = config.clone();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let server = config
            .get_mut("server")
            .and_then(|s| s.as_table_mut())
            .context("[server]")?;
        server.insert("listen".into(), vec![addr.to_string()].into());
        server.insert("admin_listen".into(), admin.to_string().into());
        server.insert("threads".into(), 1.into());
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .env("SG_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SG_REDIS_PASSWORD", REDIS_PASSWORD)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut member = Self {
            child,
            addr,
            admin,
            dir,
        };
        let http = client();
        let ready = session_gateway_e2e::eventually("the gateway's /readyz", || {
            let exited = member.child.try_wait();
            let probe = http.get(format!("http://{admin}/readyz")).send();
            async move {
                if let Some(status) = exited? {
                    bail!("gateway exited with {status}");
                }
                Ok(probe
                    .await
                    .is_ok_and(|r| r.status().is_success())
                    .then_some(()))
            }
        })
        .await;
        match ready {
            Ok(()) => Ok(member),
            Err(e) => bail!("{e}: {}", member.logs()),
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> anyhow::Result<Reply> {
        let mut request = client().get(format!("http://{}{path}", self.addr));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await?).await
    }

    async fn admin(&self, path: &str, bearer: Option<&str>) -> anyhow::Result<Reply> {
        let mut request = client().get(format!("http://{}{path}", self.admin));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await?).await
    }
}

impl Drop for FleetMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_gateway_config_runs_a_two_instance_redis_fleet() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let redis = RedisServer::start()?;
    // As in compose: Redis wants the password the gateways read from SG_REDIS_PASSWORD.
    let set = redis.cli(&["CONFIG", "SET", "requirepass", REDIS_PASSWORD])?;
    ensure!(set == "OK", "redis-cli CONFIG SET requirepass: {set}");

    // The compose file with this machine's addresses for devkit and redis.
    let mut config = parse_toml(&compose_config_text()?)?;
    let mut issuer = config["issuers"][0]
        .as_table()
        .cloned()
        .context("issuers[0]")?;
    issuer.insert("issuer".into(), kit.issuer.issuer_url().into());
    config.insert("issuers".into(), toml::Value::Array(vec![issuer.into()]));
    let mut upstream = config["upstreams"][0]
        .as_table()
        .cloned()
        .context("upstreams[0]")?;
    upstream.insert(
        "servers".into(),
        vec![kit.backend.addr().to_string()].into(),
    );
    config.insert(
        "upstreams".into(),
        toml::Value::Array(vec![upstream.into()]),
    );
    config
        .get_mut("redis")
        .and_then(|r| r.as_table_mut())
        .context("[redis]")?
        .insert("url".into(), redis.url().into());

    let one = FleetMember::start(&config).await?;
    let two = FleetMember::start(&config).await?;

    // A session opened through one instance is reused through the other.
    let token = kit.token("alice");
    let first = one.get("/api/orders", Some(&token)).await?;
    assert_eq!(first.status, 200, "{:?} {}", first.json(), one.logs());
    assert_eq!(
        first.forwarded_header("x-license-pool").as_deref(),
        Some("interactive")
    );
    let session = first
        .forwarded_header("x-session-id")
        .context("no X-Session-Id")?;
    let second = two.get("/api/orders", Some(&kit.token("alice"))).await?;
    assert_eq!(second.status, 200, "{:?}", second.json());
    assert_eq!(second.forwarded_header("x-session-id"), Some(session));

    // The admin API takes the token from SG_ADMIN_TOKEN, and sees the fleet's seat.
    assert_eq!(two.admin("/admin/v1/licenses", None).await?.status, 401);
    let licenses = two.admin("/admin/v1/licenses", Some(ADMIN_TOKEN)).await?;
    assert_eq!(licenses.status, 200, "{:?}", licenses.json());
    let pools = licenses.json()["pools"].clone();
    let interactive = pools
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pool"] == "interactive"))
        .with_context(|| format!("no interactive pool in {pools}"))?;
    assert_eq!(interactive["in_use"], 1, "{pools}");

    // What Prometheus scrapes there, under the names alerts and dashboard use.
    // A request is counted by the logging hook, which runs after the response
    // has gone out, so the counter is awaited rather than expected at once.
    let text = session_gateway_e2e::eventually("the request counted on instance two", || async {
        let metrics = two.admin("/metrics", None).await?;
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        Ok(text
            .contains("session_gateway_requests_total{")
            .then_some(text))
    })
    .await?;
    assert!(
        text.contains("session_gateway_seats_in_use{pool=\"interactive\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("session_gateway_seats_limit{pool=\"interactive\"} 5"),
        "{text}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// External validators, when installed

/// `name` on PATH, or None (and a message saying the check is skipped).
fn tool(name: &str, check: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        println!("skipped: {check} ({name} is not installed)");
    }
    found
}

fn run_tool(program: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    Ok(text)
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_the_dashboard_queries() -> anyhow::Result<()> {
    let Some(promtool) = tool("promtool", "promtool check/test rules") else {
        return Ok(());
    };
    let alerts = deploy("prometheus/alerts.yml");
    run_tool(
        &promtool,
        &["check".as_ref(), "rules".as_ref(), alerts.as_os_str()],
    )?;
    let tests = deploy("prometheus/alerts_test.yml");
    run_tool(
        &promtool,
        &["test".as_ref(), "rules".as_ref(), tests.as_os_str()],
    )?;
    let config = deploy("compose/prometheus.yml");
    run_tool(
        &promtool,
        &[
            "check".as_ref(),
            "config".as_ref(),
            "--syntax-only".as_ref(),
            config.as_os_str(),
        ],
    )?;

    // The dashboard's expressions, with Grafana's variables filled in, as
    // recording rules: promtool parses each one.
    let mut queries = Vec::new();
    dashboard_queries(&dashboard()?, None, &mut queries);
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, (_, expr)) in queries.iter().filter(|(k, _)| k == "expr").enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$pool", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{index}\n        expr: {}\n",
            serde_json::to_string(&expr)?
        ));
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("dashboard_rules.yml");
    std::fs::write(&path, rules)?;
    run_tool(
        &promtool,
        &["check".as_ref(), "rules".as_ref(), path.as_os_str()],
    )?;
    Ok(())
}

#[test]
fn haproxy_accepts_its_configurations() -> anyhow::Result<()> {
    let Some(haproxy) = tool("haproxy", "haproxy -c") else {
        return Ok(());
    };
    for file in ["compose/haproxy.cfg", "compose/issuer-relay.cfg"] {
        let path = deploy(file);
        // Compose names do not resolve here; the files say `init-addr …,none`.
        run_tool(&haproxy, &["-c".as_ref(), "-f".as_ref(), path.as_os_str()])?;
    }
    Ok(())
}

#[test]
fn kustomize_renders_the_k8s_manifests() -> anyhow::Result<()> {
    let Some(kubectl) = tool("kubectl", "kubectl kustomize") else {
        return Ok(());
    };
    let dir = deploy("k8s");
    let rendered = run_tool(&kubectl, &["kustomize".as_ref(), dir.as_os_str()])?;
    let mut kinds = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let object = Yaml::deserialize(document)?;
        assert_eq!(
            text_at(&object, &["metadata", "namespace"])
                .or(text_at(&object, &["metadata", "name"])),
            Some("session-gateway"),
            "{object:?}"
        );
        kinds.extend(text_at(&object, &["kind"]).map(str::to_string));
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
    ] {
        ensure!(
            kinds.contains(kind),
            "kustomize rendered no {kind}: {kinds:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The Helm chart

/// The helm binary: `HELM`, `helm` on PATH, or the one scripts/bootstrap.sh
/// unpacks into tests/helm/bin. `None` (with a message) only outside CI.
fn helm() -> anyhow::Result<Option<PathBuf>> {
    let candidates = [
        std::env::var_os("HELM").map(PathBuf::from),
        Some(PathBuf::from("helm")),
        Some(repo().join("tests/helm/bin/helm")),
    ];
    for candidate in candidates.into_iter().flatten() {
        if Command::new(&candidate)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(Some(candidate));
        }
    }
    ensure!(
        std::env::var_os("CI").is_none(),
        "helm is missing in CI: scripts/bootstrap.sh installs it into tests/helm/bin"
    );
    eprintln!("skipped: helm is not installed (scripts/bootstrap.sh installs it)");
    Ok(None)
}

/// `helm template` of the chart with `--set` values; every rendered document.
fn render_chart(helm: &Path, sets: &[&str]) -> anyhow::Result<Vec<Yaml>> {
    let mut command = Command::new(helm);
    command
        .args(["template", "sg"])
        .arg(deploy("helm/session-gateway"))
        .args(["--namespace", "erp"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output()?;
    ensure!(
        out.status.success(),
        "helm template {sets:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Yaml::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn kinds(documents: &[Yaml]) -> Vec<String> {
    let mut kinds: Vec<String> = documents
        .iter()
        .filter_map(|d| text_at(d, &["kind"]).map(str::to_string))
        .collect();
    kinds.sort();
    kinds
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> anyhow::Result<&'a Yaml> {
    documents
        .iter()
        .find(|d| text_at(d, &["kind"]) == Some(kind))
        .with_context(|| format!("the chart renders no {kind}"))
}

#[test]
fn the_chart_lints_and_renders_its_toggles() -> anyhow::Result<()> {
    let Some(helm) = helm()? else { return Ok(()) };
    let out = Command::new(&helm)
        .arg("lint")
        .arg(deploy("helm/session-gateway"))
        .output()?;
    ensure!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let defaults = render_chart(&helm, &[])?;
    assert_eq!(
        kinds(&defaults),
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "Service"
        ]
    );
    // With the autoscaler the Deployment leaves the replica count to it.
    let deployment = of_kind(&defaults, "Deployment")?;
    assert!(at(deployment, &["spec", "replicas"]).is_err());

    let toggled = render_chart(
        &helm,
        &[
            "autoscaling.enabled=false",
            "replicaCount=3",
            "podDisruptionBudget.enabled=false",
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "networkPolicy.enabled=false",
        ],
    )?;
    assert_eq!(
        kinds(&toggled),
        [
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Service",
            "Service",
            "ServiceMonitor"
        ]
    );
    let deployment = of_kind(&toggled, "Deployment")?;
    assert_eq!(at(deployment, &["spec", "replicas"])?.as_u64(), Some(3));
    // The PrometheusRule carries exactly the rules file's groups.
    let rule = of_kind(&toggled, "PrometheusRule")?;
    let alerts = yaml(&deploy("prometheus/alerts.yml"))?;
    ensure!(
        at(rule, &["spec", "groups"])? == at(&alerts, &["groups"])?,
        "the chart's PrometheusRule differs from deploy/prometheus/alerts.yml"
    );
    ensure!(
        read(&deploy("helm/session-gateway/files/alerts.yml"))?
            == read(&deploy("prometheus/alerts.yml"))?,
        "deploy/helm/session-gateway/files/alerts.yml differs from deploy/prometheus/alerts.yml"
    );
    // The ServiceMonitor scrapes the admin Service's port.
    let monitor = of_kind(&toggled, "ServiceMonitor")?;
    assert_eq!(
        text_at(&seq(monitor, &["spec", "endpoints"])?[0], &["port"]),
        Some("admin")
    );
    Ok(())
}

#[test]
fn the_chart_keeps_the_admin_port_inside_the_namespace() -> anyhow::Result<()> {
    let Some(helm) = helm()? else { return Ok(()) };
    let rendered = render_chart(&helm, &[])?;
    let policy = of_kind(&rendered, "NetworkPolicy")?;
    let deployment = of_kind(&rendered, "Deployment")?;
    assert_eq!(
        at(policy, &["spec", "podSelector", "matchLabels"])?,
        at(deployment, &["spec", "selector", "matchLabels"])?,
        "the policy selects the gateway pods"
    );
    let rules = seq(policy, &["spec", "ingress"])?;
    let admin = rules
        .iter()
        .find(|r| {
            seq(r, &["ports"])
                .is_ok_and(|ports| ports.iter().any(|p| text_at(p, &["port"]) == Some("admin")))
        })
        .context("no rule for the admin port")?;
    let from = seq(admin, &["from"])?;
    assert_eq!(from.len(), 1, "{from:?}");
    let same_namespace: Yaml = serde_yaml::from_str("podSelector: {}")?;
    assert_eq!(from[0], same_namespace, "pods of this namespace only");
    // Every ingress rule names its port: nothing else is open.
    for rule in rules {
        ensure!(
            seq(rule, &["ports"]).is_ok_and(|p| !p.is_empty()),
            "{rule:?}"
        );
    }
    // Another namespace is let in only when the values say so.
    let monitoring = render_chart(
        &helm,
        &["networkPolicy.adminFrom[0].namespaceSelector.matchLabels.team=monitoring"],
    )?;
    let policy = of_kind(&monitoring, "NetworkPolicy")?;
    let rules = seq(policy, &["spec", "ingress"])?;
    assert_eq!(seq(&rules[1], &["from"])?.len(), 2);
    Ok(())
}

#[test]
fn the_chart_renders_the_kustomize_configuration_and_it_passes_check_config() -> anyhow::Result<()>
{
    let Some(helm) = helm()? else { return Ok(()) };
    let rendered = render_chart(&helm, &[])?;
    let configmap = of_kind(&rendered, "ConfigMap")?;
    let text = text_at(configmap, &["data", "gateway.toml"]).context("no gateway.toml")?;
    // In-cluster names do not resolve here: loopback stands in for them.
    check_config(
        "the chart's gateway.toml",
        &loopback_hosts(text, &cluster_hosts(text)),
    )?;
    let chart = parse_toml(text)?;
    let kustomize = parse_toml(&k8s_config_text()?)?;
    assert_eq!(
        chart, kustomize,
        "the chart's default configuration differs from deploy/k8s/configmap.yaml's"
    );
    // The Redis values reach the [redis] table.
    let rendered = render_chart(
        &helm,
        &["redis.url=redis://redis.erp.svc.cluster.local:6379/1"],
    )?;
    let text = text_at(of_kind(&rendered, "ConfigMap")?, &["data", "gateway.toml"])
        .context("no gateway.toml")?;
    assert_eq!(
        toml_str(&parse_toml(text)?, "redis", "url"),
        Some("redis://redis.erp.svc.cluster.local:6379/1")
    );
    // The secrets come from the named Secret, never from the values.
    let deployment = of_kind(&rendered, "Deployment")?;
    let env = seq(
        &seq(deployment, &["spec", "template", "spec", "containers"])?[0],
        &["env"],
    )?;
    for variable in env {
        assert_eq!(
            text_at(variable, &["valueFrom", "secretKeyRef", "name"]),
            Some("session-gateway"),
            "{variable:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The image

/// A container runtime that answers (`docker` or `podman`), if any.
fn container_runtime() -> Option<&'static str> {
    ["docker", "podman"].into_iter().find(|tool| {
        Command::new(tool)
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test]
async fn the_image_builds_and_serves_where_a_container_runtime_exists() -> anyhow::Result<()> {
    let Some(runtime) = container_runtime() else {
        eprintln!("skipped: no container runtime answers (docker info / podman info)");
        return Ok(());
    };
    let tag = format!("session-gateway-test:{}", std::process::id());
    let build = Command::new(runtime)
        .args(["build", "-f"])
        .arg(deploy("Dockerfile"))
        .args(["-t", &tag])
        .arg(repo())
        .status()?;
    ensure!(build.success(), "{runtime} build failed");
    let port = free_port();
    let run = Command::new(runtime)
        .args(["run", "--rm", "-d", "-p"])
        .arg(format!("127.0.0.1:{port}:9190"))
        .arg(&tag)
        .args(["dev", "--admin", "0.0.0.0:9190"])
        .output()?;
    ensure!(
        run.status.success(),
        "{runtime} run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let id = String::from_utf8(run.stdout)?.trim().to_string();
    // GET /healthz through the published port, until it answers 200.
    let url = format!("http://127.0.0.1:{port}/healthz");
    let healthy = eventually("the container's /healthz answering 200", || async {
        let answered = client().get(&url).send().await;
        Ok(answered.is_ok_and(|r| r.status() == 200).then_some(()))
    })
    .await;
    let _ = Command::new(runtime).args(["rm", "-f", &id]).status();
    let _ = Command::new(runtime).args(["rmi", "-f", &tag]).status();
    healthy?;
    Ok(())
}
