//! `/metrics` on the admin listener tells what the gateway did: requests by
//! outcome, token checks, sessions and seats (read from the store at scrape
//! time), refusals and JWKS state.

use session_gateway_e2e::{Devkit, Gateway, TokenRequest};

const BIN: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_tokens_sessions_and_seats() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let mut config = kit.config();
    config.pool(0).insert("limit".into(), 1.into());
    let gw = Gateway::start(BIN, &config).await?;

    let alice = kit.token("alice");
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &alice).await?.status, 200);
    assert_eq!(gw.get("/api/x", &kit.token("bob")).await?.status, 429);
    let expired = kit.mint(&TokenRequest::new("carol").expires_in(-120));
    assert_eq!(gw.get("/api/x", &expired).await?.status, 401);
    assert_eq!(gw.get_anonymous("/nowhere").await?.status, 404);

    // Requests are counted by the logging hook, after their response has gone
    // out: wait until all five are counted, then read every series.
    let counted = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("session_gateway_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let text = gw
        .eventually("all five requests counted", || async {
            let r = gw.client().get(gw.admin_url("/metrics")).send().await?;
            assert_eq!(r.status().as_u16(), 200);
            assert!(
                r.headers()["content-type"]
                    .to_str()?
                    .starts_with("text/plain")
            );
            let text = r.text().await?;
            Ok((counted(&text) >= 5.0).then_some(text))
        })
        .await?;
    let expect = |series: &str, wanted: f64| {
        assert_eq!(value(&text, series), Some(wanted), "{series} in:\n{text}");
    };
    expect(
        "session_gateway_requests_total{outcome=\"forwarded\",policy=\"session\",route=\"api\",status=\"2xx\"}",
        2.0,
    );
    expect(
        "session_gateway_requests_total{outcome=\"license_unavailable\",policy=\"session\",route=\"api\",status=\"4xx\"}",
        1.0,
    );
    expect(
        "session_gateway_requests_total{outcome=\"not_found\",policy=\"-\",route=\"-\",status=\"4xx\"}",
        1.0,
    );
    expect(
        "session_gateway_tokens_verified_total{source=\"signature\"}",
        2.0,
    );
    expect(
        "session_gateway_tokens_verified_total{source=\"cache\"}",
        1.0,
    );
    expect(
        "session_gateway_token_rejections_total{reason=\"expired\"}",
        1.0,
    );
    expect(
        "session_gateway_sessions_opened_total{pool=\"default\"}",
        1.0,
    );
    expect(
        "session_gateway_license_refusals_total{pool=\"default\",reason=\"pool_full\"}",
        1.0,
    );
    expect("session_gateway_seats_in_use{pool=\"default\"}", 1.0);
    expect("session_gateway_seats_limit{pool=\"default\"}", 1.0);
    let age = value(
        &text,
        &format!(
            "session_gateway_jwks_key_age_seconds{{issuer=\"{}\"}}",
            kit.issuer.issuer_url()
        ),
    );
    assert!(age.is_some_and(|a| a >= 0.0), "key age {age:?}");
    assert!(text.contains("session_gateway_request_duration_seconds_bucket"));
    Ok(())
}

/// `session_gateway_seats_peak` keeps the highest level since the previous
/// scrape, however briefly it was held, and starts again from the current
/// level.
#[tokio::test]
async fn the_seat_peak_keeps_what_happened_between_two_scrapes() -> anyhow::Result<()> {
    let kit = Devkit::start().await?;
    let gw = Gateway::start(BIN, &kit.config()).await?;
    // Both series from one scrape: each scrape starts the peak afresh.
    let scrape = || async {
        let text = gw.metrics_text().await?;
        let read = |series: &str| value(&text, series);
        anyhow::Ok((
            read("session_gateway_seats_in_use{pool=\"default\"}"),
            read("session_gateway_seats_peak{pool=\"default\"}"),
        ))
    };
    assert_eq!(scrape().await?, (Some(0.0), Some(0.0)));
    let tokens: Vec<String> = ["alice", "bob", "carol"].map(|u| kit.token(u)).to_vec();
    for token in &tokens {
        assert_eq!(gw.get("/api/x", token).await?.status, 200);
    }
    for token in &tokens[1..] {
        assert_eq!(gw.logout(token).await?.status, 200);
    }
    assert_eq!(
        scrape().await?,
        (Some(1.0), Some(3.0)),
        "three were held in between"
    );
    assert_eq!(
        scrape().await?,
        (Some(1.0), Some(1.0)),
        "and the next scrape starts afresh"
    );
    Ok(())
}
