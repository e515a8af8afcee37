//! Upstream host names looked up again on an interval
//! (`[[upstreams]] resolve_interval`), end to end: the gateway runs in a
//! mount namespace of its own whose `/etc/hosts` is a file of the test
//! (`unshare -m`, a bind mount), so the system resolver itself answers with
//! what the test writes there. Requests and the health check follow the
//! name to its new address, and away from it again.
//!
//! The other address is `::1`, where nothing listens: connecting there is
//! refused on loopback, nothing leaves the machine. The test needs root for
//! the mount namespace and says it skipped where it cannot make one.

use std::path::Path;

use session_gateway_e2e::{Backend, Devkit, Gateway, eventually, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

/// The name the upstream is configured by.
const NAME: &str = "erp-backend.session-gateway.test";

/// Whether this process may make a mount namespace and bind-mount a file.
fn can_bind_hosts(hosts: &Path) -> bool {
    std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts")
        .arg(hosts)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A launcher that starts the gateway with `hosts` as its `/etc/hosts`; the
/// process keeps its PID through each `exec`, so it is stopped by it.
fn launcher(dir: &Path, hosts: &Path) -> anyhow::Result<String> {
    let script = dir.join("gateway-with-hosts.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec unshare -m --propagation private sh -c \
             'mount --bind \"$0\" /etc/hosts && exec \"$@\"' '{}' '{BIN}' \"$@\"\n",
            hosts.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script.display().to_string())
}

#[tokio::test]
async fn requests_and_health_checks_follow_a_name_to_its_new_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hosts = dir.path().join("hosts");
    // Written in place each time: the bind mount keeps the same file.
    let point_to = |address: &str| std::fs::write(&hosts, format!("{address} {NAME}\n"));
    point_to("::1")?;
    if !can_bind_hosts(&hosts) {
        eprintln!("skipped: no mount namespace here (needs root and unshare)");
        return Ok(());
    }
    let kit = Devkit::start().await?;
    let port = free_port();
    let backend = Backend::start(format!("127.0.0.1:{port}").parse()?, "named").await?;
    let mut config = kit.config();
    config.push(
        "upstreams",
        &format!(
            "name = \"named\"\nservers = [\"{NAME}:{port}\"]\nresolve_interval = \"1s\"\n\
             health_check = {{ path = \"/health\", interval = \"1s\", timeout = \"1s\" }}"
        ),
    );
    config.push(
        "routes",
        "name = \"named\"\npath_prefix = \"/named/\"\nupstream = \"named\"\npolicy = \"public\"",
    );
    let gw = Gateway::start(&launcher(dir.path(), &hosts)?, &config).await?;

    // The name points where nothing listens.
    let reply = gw.get_anonymous("/named/x").await?;
    assert_eq!(reply.status, 502, "{:?}", reply.json());
    assert_eq!(backend.requests(), 0);

    // It moves to the backend: the health check and the requests follow.
    point_to("127.0.0.1")?;
    eventually("the health check probing the new address", || async {
        Ok((backend.health_checks() > 0).then_some(()))
    })
    .await?;
    let reply = eventually("a request reaching the new address", || async {
        let reply = gw.get_anonymous("/named/x").await?;
        Ok((reply.status == 200).then_some(reply))
    })
    .await?;
    assert_eq!(reply.json()["backend"], "named");

    // And away again: the old address is dropped, not kept beside the new.
    point_to("::1")?;
    eventually("requests leaving the old address", || async {
        let reply = gw.get_anonymous("/named/x").await?;
        Ok((reply.status == 502).then_some(()))
    })
    .await?;
    let served = backend.requests();
    for _ in 0..5 {
        assert_eq!(gw.get_anonymous("/named/x").await?.status, 502);
    }
    assert_eq!(
        backend.requests(),
        served,
        "nothing reached the old address"
    );
    Ok(())
}
