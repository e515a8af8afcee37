//! Writes what a load benchmark needs to present many distinct users:
//! `tokens.txt` (one RS256 access token per line, each for another user,
//! valid for two hours), `jwks.json` (for the gateway's `jwks_file`),
//! `public.pem` (for HAProxy's `jwt_verify`) and `issuer.txt` (the `iss`).
//!
//! The devkit issuer runs in process only to sign; nothing listens after.
//!
//! Run: `cargo run --release -p session-gateway-bench --bin mint-tokens -- COUNT DIR`

use std::path::PathBuf;

use session_gateway::devkit::{Issuer, TokenRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = PathBuf::from(args.get(2).map_or("bench-tokens", String::as_str));
    std::fs::create_dir_all(&dir)?;

    let issuer = Issuer::start("127.0.0.1:0".parse()?).await?;
    let mut tokens = String::with_capacity(count * 900);
    for n in 0..count {
        tokens.push_str(&issuer.mint(&TokenRequest::new(format!("user-{n}")).expires_in(7200)));
        tokens.push('\n');
    }
    std::fs::write(dir.join("tokens.txt"), tokens)?;
    std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string())?;
    std::fs::write(dir.join("public.pem"), issuer.rsa_public_pem())?;
    std::fs::write(dir.join("issuer.txt"), issuer.issuer_url())?;
    println!(
        "{count} tokens of {} in {}",
        issuer.issuer_url(),
        dir.display()
    );
    issuer.shutdown().await;
    Ok(())
}
