//! `session-gateway admin`: the admin API from the command line.
//!
//! ```text
//! session-gateway admin [--url URL] [--token-env NAME] [--json] sessions [--pool P] [--subject S] [--limit N]
//! session-gateway admin … kill <session-id>
//! session-gateway admin … kill --subject <sub> [--issuer I]
//! session-gateway admin … licenses
//! session-gateway admin … revoke --token-id <jti> --until <time>
//! session-gateway admin … revoke --subject <sub> [--issuer I] [--not-before <time>]
//! session-gateway admin … revocations list
//! session-gateway admin … revocations delete <id>
//! session-gateway admin … audit [--pool P] [--subject S] [--event E] [--limit N] [--follow]
//! session-gateway admin … usage history|peaks|summary …   (see super::usage_cli)
//! ```
//!
//! Tables by default, the API's JSON with `--json`. Tables go to stdout and
//! counts and notes to stderr, so a table can be piped into other tools
//! without a footer to strip. The admin token is read from an environment
//! variable (never from an argument, which other users of the machine could
//! see in the process list).

use std::io::Write;
use std::ops::RangeInclusive;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};

use super::api::{
    ClosedSessions, DeletedRevocations, Licenses, RevocationRecorded, RevocationView, Revocations,
    SessionList,
};
use super::client::AdminClient;
use super::usage_cli::UsageCommand;
use crate::config::Secret;
use crate::session::SessionView;

/// The default admin listener, as in the default configuration.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9190";
/// The default environment variable holding the admin token.
pub const DEFAULT_TOKEN_ENV: &str = "SESSION_GATEWAY_ADMIN_TOKEN";

/// The values `sessions --limit` takes. The client pages through the API,
/// so the upper end only keeps a typo from asking for everything.
const LIMIT_RANGE: RangeInclusive<usize> = 1..=1_000_000;

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
        // Negative numbers reach the value parser, so `-1` gets the same
        // clear message as `0` instead of "unexpected argument".
        #[arg(long, value_name = "N", value_parser = limit, allow_negative_numbers = true)]
        limit: Option<usize>,
    },
    /// Close a session, or every session of a subject, and free the seats.
    // A group rather than `required_unless_present`, so that the usage error
    // of a bare `kill` names both forms.
    #[command(group(ArgGroup::new("target").required(true).args(["session_id", "subject"])))]
    Kill {
        /// The session to close.
        #[arg(value_name = "SESSION_ID")]
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
    /// Times must not lie in the past.
    #[command(group(ArgGroup::new("target").required(true).args(["token_id", "subject"])))]
    Revoke {
        /// The token's `jti`.
        #[arg(long, requires = "until")]
        token_id: Option<String>,
        /// With --token-id: until when (RFC 3339), normally the token's `exp`.
        #[arg(long, requires = "token_id")]
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
    /// Print the audit trail as JSON lines, oldest of the last `--limit`
    /// events first; with `--follow`, keep printing new events as they come.
    Audit {
        /// Only events of this pool.
        #[arg(long)]
        pool: Option<String>,
        /// Only events of this subject (the token's `sub`).
        #[arg(long)]
        subject: Option<String>,
        /// Only events of this kind (`session_opened`, `session_closed`,
        /// `session_refused`, `token_revoked`, `subject_revoked`, …).
        #[arg(long)]
        event: Option<String>,
        /// How many of the latest events to print first.
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = limit, allow_negative_numbers = true)]
        limit: usize,
        /// Keep running and print new events (polls once a second).
        #[arg(long)]
        follow: bool,
    },
    /// List or delete the revocations in force.
    Revocations {
        /// What to do with them.
        #[command(subcommand)]
        command: RevocationsCommand,
    },
    /// The license pools' usage history: intervals, peaks, monthly summary.
    Usage {
        /// Which report.
        #[command(subcommand)]
        command: UsageCommand,
    },
}

/// `session-gateway admin revocations …`.
#[derive(Debug, Subcommand)]
pub enum RevocationsCommand {
    /// List the revocations in force, soonest to lapse first.
    List,
    /// Delete a revocation by the id `list` shows, for every instance: the
    /// tokens it refused are accepted again.
    Delete {
        /// The revocation's id: a token id, or `subject:` and a subject key.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `--limit`'s value parser: one message for every bad value (`0`, `-1`,
/// `ten`), where the integer parser would show its internals.
fn limit(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| LIMIT_RANGE.contains(n))
        .ok_or_else(|| {
            format!(
                "must be a whole number from {} to {}",
                LIMIT_RANGE.start(),
                LIMIT_RANGE.end()
            )
        })
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
    if let AdminCommand::Audit {
        pool,
        subject,
        event,
        limit,
        follow,
    } = &args.command
    {
        let filters: Vec<(&str, &str)> = [("pool", pool), ("subject", subject), ("event", event)]
            .into_iter()
            .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
            .collect();
        return runtime.block_on(audit(&client, &filters, *limit, *follow));
    }
    let output = runtime.block_on(execute(&client, &args.command, args.json))?;
    output.emit()
}

/// How often `audit --follow` asks for new events.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `admin audit`: the latest `limit` events as JSON lines, oldest first,
/// then (with `follow`) every new one until interrupted.
async fn audit(
    client: &AdminClient,
    filters: &[(&str, &str)],
    limit: usize,
    follow: bool,
) -> anyhow::Result<()> {
    let mut latest = Vec::new();
    let mut before: Option<String> = None;
    let mut newest_seen: Option<String> = None;
    while latest.len() < limit {
        let mut page_filters = filters.to_vec();
        if let Some(before) = &before {
            page_filters.push(("before", before));
        }
        let page = client.audit(&page_filters, limit - latest.len()).await?;
        if newest_seen.is_none() {
            newest_seen = page.events.first().map(|e| e.id.clone());
        }
        latest.extend(page.events);
        match page.next_cursor {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    latest.reverse();
    if !print_lines(&latest)? || !follow {
        return Ok(());
    }
    // Events older than everything shown are not new: start from the newest
    // shown, or from the beginning of the trail when it was empty.
    let mut after = newest_seen.unwrap_or_else(|| "0-0".to_string());
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let mut page_filters = filters.to_vec();
        page_filters.push(("after", &after));
        let page = client.audit(&page_filters, super::api::MAX_LIMIT).await?;
        if !print_lines(&page.events)? {
            return Ok(());
        }
        if let Some(next) = page.next_cursor {
            after = next;
        }
    }
}

/// Prints events one JSON object per line, flushed at once (a follower is
/// often piped into another tool); `false` once the reader has gone.
fn print_lines(events: &[super::audit::AuditEntry]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    for event in events {
        let line = serde_json::to_string(event).context("encoding an audit event")?;
        match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
            other => other.context("writing to stdout")?,
        }
    }
    Ok(true)
}

/// What one operation prints.
#[derive(Debug, Default, PartialEq, Eq)]
struct Output {
    /// For stdout: a table or JSON, nothing else.
    stdout: String,
    /// For stderr, one line each: counts and notes.
    notes: Vec<String>,
}

impl Output {
    fn emit(&self) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(self.stdout.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // A reader that stopped early (`| head`) has what it wanted.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("writing to stdout");
            }
            _ => {}
        }
        for note in &self.notes {
            eprintln!("{note}");
        }
        Ok(())
    }
}

/// Runs one operation and renders its answer.
async fn execute(
    client: &AdminClient,
    command: &AdminCommand,
    json: bool,
) -> anyhow::Result<Output> {
    let render = |value: &dyn Render| -> anyhow::Result<Output> {
        if json {
            Ok(Output {
                stdout: format!("{}\n", value.json()?),
                notes: Vec::new(),
            })
        } else {
            Ok(Output {
                stdout: value.table(),
                notes: value.notes(),
            })
        }
    };
    match command {
        AdminCommand::Sessions {
            pool,
            subject,
            limit,
        } => {
            let list = client
                .sessions(pool.as_deref(), subject.as_deref(), *limit)
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
            render(&client.revoke(&serde_json::Value::Object(request)).await?)
        }
        AdminCommand::Revocations {
            command: RevocationsCommand::List,
        } => render(&client.revocations().await?),
        AdminCommand::Revocations {
            command: RevocationsCommand::Delete { id },
        } => render(&client.delete_revocation(id).await?),
        AdminCommand::Audit { .. } => anyhow::bail!("audit prints as it reads"),
        AdminCommand::Usage {
            command: UsageCommand::History { range, csv: true },
        } => Ok(Output {
            stdout: client.usage_csv(&range.params()).await?,
            notes: Vec::new(),
        }),
        AdminCommand::Usage {
            command: UsageCommand::History { range, .. },
        } => render(&client.usage(&["usage"], &range.params()).await?),
        AdminCommand::Usage {
            command: UsageCommand::Peaks { range, top },
        } => {
            let mut params = range.params();
            params.push(("top", top.to_string()));
            render(&client.usage(&["usage", "peaks"], &params).await?)
        }
        AdminCommand::Usage {
            command: UsageCommand::Summary { pool, month },
        } => {
            let params: Vec<(&str, String)> = [("pool", pool), ("month", month)]
                .into_iter()
                .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
                .collect();
            render(&client.usage_summary(&params).await?)
        }
    }
}

/// How an answer is shown: as JSON or as a table.
pub(super) trait Render {
    /// The answer's JSON, pretty-printed.
    fn json(&self) -> serde_json::Result<String>;
    /// The answer for a terminal: a table, or nothing.
    fn table(&self) -> String;
    /// Counts and notes that go with the table, for stderr.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The answer of `kill <session-id>`.
struct Killed(SessionView);

impl Render for SessionList {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        if self.sessions.is_empty() {
            return String::new();
        }
        sessions_table(&self.sessions)
    }

    fn notes(&self) -> Vec<String> {
        if self.sessions.is_empty() {
            return vec!["no open sessions".to_string()];
        }
        let mut note = format!("{} session(s)", self.sessions.len());
        if self.next_cursor.is_some() {
            note.push_str("; more not shown (raise --limit)");
        }
        vec![note]
    }
}

impl Render for Killed {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&self.0)
    }

    fn table(&self) -> String {
        sessions_table(std::slice::from_ref(&self.0))
    }

    fn notes(&self) -> Vec<String> {
        vec![format!("closed session {}", self.0.session_id)]
    }
}

impl Render for ClosedSessions {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        if self.closed.is_empty() {
            return String::new();
        }
        sessions_table(&self.closed)
    }

    fn notes(&self) -> Vec<String> {
        vec![format!("closed {} session(s)", self.count)]
    }
}

impl Render for RevocationRecorded {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        revocations_table(std::slice::from_ref(&self.revocation))
    }
}

impl Render for Revocations {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        if self.revocations.is_empty() {
            return String::new();
        }
        revocations_table(&self.revocations)
    }

    fn notes(&self) -> Vec<String> {
        if self.revocations.is_empty() {
            return vec!["no revocations in force".to_string()];
        }
        vec![format!("{} revocation(s)", self.revocations.len())]
    }
}

impl Render for DeletedRevocations {
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    fn table(&self) -> String {
        revocations_table(&self.deleted)
    }

    fn notes(&self) -> Vec<String> {
        vec![format!("deleted {} revocation(s)", self.count)]
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
                    p.waiting.to_string(),
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
                ("WAITING", Align::Right),
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

/// One row per revocation. Cells that do not apply to a kind are `-`; the
/// names of a subject revoked by an older version, which kept only its key,
/// are `(not recorded)`.
fn revocations_table(revocations: &[RevocationView]) -> String {
    let rows: Vec<Vec<String>> = revocations
        .iter()
        .map(|r| {
            let subject_cell = |value: &Option<String>| match (value, r.kind.as_str()) {
                (Some(v), _) => v.clone(),
                (None, "subject") => "(not recorded)".to_string(),
                (None, _) => "-".to_string(),
            };
            vec![
                r.id.clone(),
                r.kind.clone(),
                subject_cell(&r.subject),
                subject_cell(&r.issuer),
                r.not_before.clone().unwrap_or_else(|| "-".to_string()),
                r.until.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("ID", Align::Left),
            ("KIND", Align::Left),
            ("SUBJECT", Align::Left),
            ("ISSUER", Align::Left),
            ("NOT BEFORE", Align::Left),
            ("UNTIL", Align::Left),
        ],
        &rows,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, no trailing
/// blanks. Control characters in cells (a hostile `sub`) are replaced so a
/// cell cannot break the layout or drive the terminal.
pub(super) fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
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
mod tests;
