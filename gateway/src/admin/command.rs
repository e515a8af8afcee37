//! `session-gateway admin`: the admin API from the command line.
//!
//! ```text
//! session-gateway admin [--url URL] [--token-env NAME] [--json] sessions [--pool P] [--subject S] [--limit N]
//! session-gateway admin … kill <session-id>
//! session-gateway admin … kill --subject <sub> [--issuer I]
//! session-gateway admin … licenses
//! ```
//!
//! Tables by default, the API's JSON with `--json`. The admin token is read
//! from an environment variable (never from an argument, which other users
//! of the machine could see in the process list).

use std::num::NonZeroUsize;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::api::{ClosedSessions, Licenses, SessionList};
use super::client::AdminClient;
use crate::config::Secret;
use crate::session::SessionView;

/// The default admin listener, as in the default configuration.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9190";
/// The default environment variable holding the admin token.
pub const DEFAULT_TOKEN_ENV: &str = "SESSION_GATEWAY_ADMIN_TOKEN";

/// Options of `session-gateway admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The gateway's admin listener.
    #[arg(long, global = true, env = "SESSION_GATEWAY_ADMIN_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// The environment variable that holds the admin token.
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_TOKEN_ENV)]
    pub token_env: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin operations.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List open sessions, oldest first.
    Sessions {
        /// Only sessions of this pool.
        #[arg(long)]
        pool: Option<String>,
        /// Only sessions of this subject (the token's `sub`).
        #[arg(long)]
        subject: Option<String>,
        /// Show at most this many sessions (all by default).
        #[arg(long)]
        limit: Option<NonZeroUsize>,
    },
    /// Close a session, or every session of a subject, and free the seats.
    Kill {
        /// The session to close.
        #[arg(
            value_name = "SESSION_ID",
            required_unless_present = "subject",
            conflicts_with = "subject"
        )]
        session_id: Option<String>,
        /// Close every session of this subject (the token's `sub`) instead.
        #[arg(long)]
        subject: Option<String>,
        /// The subject's issuer; needed when the gateway trusts several.
        #[arg(long, requires = "subject")]
        issuer: Option<String>,
    },
    /// Show seat use per license pool.
    Licenses,
    /// Refuse tokens that still verify: one token by its `jti` until a time,
    /// or every token of a subject issued before a time (default: now).
    Revoke {
        /// The token's `jti`.
        #[arg(
            long,
            required_unless_present = "subject",
            conflicts_with = "subject",
            requires = "until"
        )]
        token_id: Option<String>,
        /// With --token-id: until when (RFC 3339), normally the token's `exp`.
        #[arg(long)]
        until: Option<String>,
        /// Revoke every token of this subject (the token's `sub`) instead.
        #[arg(long)]
        subject: Option<String>,
        /// The subject's issuer; needed when the gateway trusts several.
        #[arg(long, requires = "subject")]
        issuer: Option<String>,
        /// With --subject: refuse tokens issued before this (RFC 3339).
        #[arg(long, requires = "subject")]
        not_before: Option<String>,
    },
}

/// Runs `session-gateway admin` on a small runtime of its own (this command
/// never runs beside Pingora, which builds its own runtimes).
pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let token = std::env::var(&args.token_env)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!(
                "no admin token: set the environment variable {} (or name another one with --token-env)",
                args.token_env
            )
        })?;
    let client = AdminClient::new(&args.url, Secret::new(token))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the admin client")?;
    let output = runtime.block_on(execute(&client, &args.command, args.json))?;
    print!("{output}");
    Ok(())
}

/// Runs one operation and renders its answer.
async fn execute(
    client: &AdminClient,
    command: &AdminCommand,
    json: bool,
) -> anyhow::Result<String> {
    let render = |value: &dyn Render| -> anyhow::Result<String> {
        if json {
            Ok(format!("{}\n", value.json()?))
        } else {
            Ok(value.table())
        }
    };
    match command {
        AdminCommand::Sessions {
            pool,
            subject,
            limit,
        } => {
            let list = client
                .sessions(
                    pool.as_deref(),
                    subject.as_deref(),
                    limit.map(NonZeroUsize::get),
                )
                .await?;
            render(&list)
        }
        AdminCommand::Kill {
            session_id: Some(id),
            ..
        } => render(&Killed(client.kill(id).await?)),
        AdminCommand::Kill {
            subject: Some(subject),
            issuer,
            ..
        } => render(&client.kill_subject(subject, issuer.as_deref()).await?),
        AdminCommand::Kill { .. } => anyhow::bail!("kill needs a session id or --subject"),
        AdminCommand::Licenses => render(&client.licenses().await?),
        AdminCommand::Revoke {
            token_id,
            until,
            subject,
            issuer,
            not_before,
        } => {
            let mut request = serde_json::Map::new();
            for (key, value) in [
                ("token_id", token_id),
                ("until", until),
                ("subject", subject),
                ("issuer", issuer),
                ("not_before", not_before),
            ] {
                if let Some(value) = value {
                    request.insert(key.into(), value.clone().into());
                }
            }
            let answer = client.revoke(&serde_json::Value::Object(request)).await?;
            render(&Revoked(answer))
        }
    }
}

/// How an answer is shown: as JSON or as a table.
trait Render {
    /// The answer's JSON, pretty-printed.
    fn json(&self) -> serde_json::Result<String>;
    /// The answer for a terminal.
    fn table(&self) -> String;
}

/// The answer of `kill <session-id>`.
struct Killed(SessionView);

impl Render for SessionList {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        if self.sessions.is_empty() {
            return "no open sessions\n".to_string();
        }
        let mut out = sessions_table(&self.sessions);
        out.push_str(&format!("{} session(s)", self.sessions.len()));
        if self.next_cursor.is_some() {
            out.push_str("; more not shown (raise --limit)");
        }
        out.push('\n');
        out
    }
}

impl Render for Killed {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&self.0)
    }

    fn table(&self) -> String {
        let s = &self.0;
        format!(
            "closed session {} (pool {}, subject {})\n",
            s.session_id, s.pool, s.subject
        )
    }
}

impl Render for ClosedSessions {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        let mut out = format!("closed {} session(s)\n", self.count);
        if !self.closed.is_empty() {
            out.push_str(&sessions_table(&self.closed));
        }
        out
    }
}

/// The answer of `revoke`.
struct Revoked(serde_json::Value);

impl Render for Revoked {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&self.0)
    }

    fn table(&self) -> String {
        let revocation = &self.0["revocation"];
        let rows: Vec<Vec<String>> = revocation
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        vec![
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        table(&[("REVOCATION", Align::Left), ("", Align::Left)], &rows)
    }
}

impl Render for Licenses {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.pool.clone(),
                    p.limit.to_string(),
                    p.reserved.to_string(),
                    p.in_use.to_string(),
                    p.free.to_string(),
                ]
            })
            .collect();
        table(
            &[
                ("POOL", Align::Left),
                ("LIMIT", Align::Right),
                ("RESERVED", Align::Right),
                ("IN USE", Align::Right),
                ("FREE", Align::Right),
            ],
            &rows,
        )
    }
}

fn sessions_table(sessions: &[SessionView]) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.session_id.clone(),
                s.pool.clone(),
                s.subject.clone(),
                s.client.clone().unwrap_or_else(|| "-".to_string()),
                s.created.clone(),
                s.last_seen.clone(),
                s.expires.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("SESSION ID", Align::Left),
            ("POOL", Align::Left),
            ("SUBJECT", Align::Left),
            ("CLIENT", Align::Left),
            ("CREATED", Align::Left),
            ("LAST SEEN", Align::Left),
            ("EXPIRES", Align::Left),
        ],
        &rows,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, no trailing
/// blanks. Control characters in cells (a hostile `sub`) are replaced so a
/// cell cannot break the layout or drive the terminal.
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| -> String {
        cell.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    let header: Vec<String> = columns.iter().map(|(h, _)| (*h).to_string()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&body) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if i > 0 {
                line.push_str("  ");
            }
            match columns.get(i).map_or(Align::Left, |c| c.1) {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
                Align::Right => {
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::PoolSeats;

    #[test]
    fn tables_align_their_columns() {
        let licenses = Licenses {
            pools: vec![
                PoolSeats {
                    pool: "interactive".into(),
                    limit: 50,
                    reserved: 1,
                    in_use: 7,
                    free: 43,
                },
                PoolSeats {
                    pool: "batch".into(),
                    limit: 5,
                    reserved: 0,
                    in_use: 5,
                    free: 0,
                },
            ],
        };
        assert_eq!(
            licenses.table(),
            "POOL         LIMIT  RESERVED  IN USE  FREE\n\
             interactive     50         1       7    43\n\
             batch            5         0       5     0\n"
        );
    }

    #[test]
    fn cells_cannot_break_the_table() {
        let out = table(
            &[("A", Align::Left), ("B", Align::Left)],
            &[vec!["x\ny".into(), "\u{1b}[2J".into()]],
        );
        assert_eq!(out, "A    B\nx?y  ?[2J\n");
    }
}
