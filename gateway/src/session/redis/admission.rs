//! One admission in Redis (`lua/admit.lua`): the arguments it sends, the
//! reply it decodes, and the undo of an admission whose caller was told 503
//! but that Redis may still have run.

use std::time::Duration;

use redis::Value;

use super::decode::{array, closed_list, int, protocol, session_of, text};
use super::layout;
use super::{LINGER, MAX_LUA_INT, RedisStore, millis};
use crate::clock::whole_seconds;
use crate::licensing::{Pool, SubjectLimitPolicy};
use crate::session::{
    Admission, AdmitOutcome, AdmitRequest, AuditSink, CloseReason, ClosedSession, Refusal,
    SessionId, StoreError,
};

/// How often, and how patiently, an admission whose caller was told 503 is
/// undone: 250 ms doubling to 5 s, 20 attempts (about a minute and a half).
const ABANDON_ATTEMPTS: u32 = 20;

const ABANDON_RETRY_START: Duration = Duration::from_millis(250);

const ABANDON_RETRY_MAX: Duration = Duration::from_secs(5);

/// How long an abandoned id stays refused to a late admission.
const ABANDON_MARK: Duration = Duration::from_secs(600);

impl RedisStore {
    /// After an admission whose caller was told 503: until Redis answers
    /// (bounded), close the session it opened under `proposed` if nobody
    /// used it since, or mark the id so that a late run opens nothing. The
    /// guarantee: a seat taken by an admission whose caller got 503 is held
    /// only until this succeeds, unless the client called again and uses it.
    pub(super) fn abandon_later(&self, tag: String, pool: &Pool, proposed: SessionId) {
        let Some(me) = self.me.upgrade() else { return };
        let history = self.history_arg(pool);
        let (pool, idle) = (pool.name.clone(), pool.idle_timeout);
        self.driver.spawn(async move {
            let mut delay = ABANDON_RETRY_START;
            for _ in 0..ABANDON_ATTEMPTS {
                let keys = [format!("{tag}:s"), format!("{tag}:ab:{proposed}")];
                let args = [
                    me.now_arg(),
                    tag.clone(),
                    proposed.clone(),
                    millis(ABANDON_MARK).to_string(),
                    millis(idle).to_string(),
                    history.clone(),
                ];
                match me.run(&me.scripts.abandon, &keys, &args).await {
                    Ok(Value::Nil) => return,
                    Ok(value) => {
                        if let Ok(Some((session, _))) = session_of(&pool, &value) {
                            tracing::warn!(
                                session_id = %session.id,
                                subject = %session.subject,
                                "released the seat of a session opened after its caller was told 503"
                            );
                            me.queue_audit(vec![
                                ("event", "session_closed".into()),
                                ("session_id", session.id.clone()),
                                ("pool", pool.clone()),
                                ("subject", session.subject.clone()),
                                ("reason", "abandoned".into()),
                            ]);
                        }
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(ABANDON_RETRY_MAX);
                    }
                }
            }
            tracing::warn!(
                session_id = %proposed,
                "could not release a possibly abandoned admission; its seat frees at the idle timeout"
            );
        });
    }

    pub(super) async fn admit_in_store(
        &self,
        request: &AdmitRequest<'_>,
    ) -> Result<AdmitOutcome, StoreError> {
        let pool = request.pool;
        let tag = self.tag(&pool.name);
        let (subject_max, policy) = match pool.subject_limit {
            Some(limit) => (
                limit.max,
                match limit.policy {
                    SubjectLimitPolicy::Deny => "deny",
                    SubjectLimitPolicy::ReplaceOldest => "replace",
                },
            ),
            None => (0, "deny"),
        };
        let proposed = layout::new_session_id(&request.identity.key);
        let mut args = vec![
            self.now_arg(),
            tag.clone(),
            request.identity.key.to_base64(),
            proposed.clone(),
            request.identity.issuer.clone(),
            request.identity.subject.clone(),
            request.identity.client.clone().unwrap_or_default(),
            layout::slot(&request.identity.subject_key),
            millis(pool.idle_timeout).to_string(),
            millis(pool.absolute_timeout).to_string(),
            millis(LINGER).to_string(),
            request.reserved.unwrap_or(0).to_string(),
            subject_max.to_string(),
            policy.to_string(),
            if request.token.is_some() { "1" } else { "0" }.to_string(),
            request
                .token
                .and_then(|t| t.issued_ms)
                .map_or_else(|| "-1".to_string(), |ms| ms.min(MAX_LUA_INT).to_string()),
            request.identity.key.to_hex(),
            request.identity.subject_key.to_hex(),
            self.history_arg(pool),
            pool.overdraft_bucket().unwrap_or(0).to_string(),
            Self::hold_arg(pool),
            Self::queue_arg(pool),
            request.ticket.map(|t| t.id.clone()).unwrap_or_default(),
            // The ticket to hand out if the caller must wait.
            if pool.queue.is_some() && request.ticket.is_none() {
                crate::session::new_session_id()
            } else {
                String::new()
            },
        ];
        args.extend(Self::bucket_args(pool));
        let token_key = request.token.map_or("", |t| t.key);
        let mut keys = vec![
            format!("{tag}:s"),
            format!("{tag}:rt:{token_key}"),
            format!("{tag}:rs:{}", request.identity.subject_key.to_hex()),
        ];
        if let Some(sid) = request.sid {
            let sid = sid.key();
            keys.push(format!("{tag}:sid:{sid}"));
            keys.push(format!("{tag}:rt:sid:{sid}"));
        }
        let value = match self.run(&self.scripts.admit, &keys, &args).await {
            Ok(value) => value,
            Err(error @ StoreError::Unavailable(_)) => {
                // The caller is told 503, but Redis may run (or have run)
                // the admission: release what it opens.
                self.abandon_later(tag, pool, proposed);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let parts = array(&value)?;
        if !(6..=7).contains(&parts.len()) {
            return Err(protocol("admit reply has the wrong shape"));
        }
        let kind = text(&parts[0])?;
        let expired = closed_list(&pool.name, &parts[5])?;
        let count = u32::try_from(int(&parts[3])?).unwrap_or(u32::MAX);
        let retry_ms = int(&parts[4])?;
        let retry_after = if retry_ms < 0 {
            whole_seconds(pool.idle_timeout)
        } else {
            whole_seconds(Duration::from_millis(retry_ms as u64))
        };
        let session = || {
            session_of(&pool.name, &parts[1])?
                .map(|(s, _)| s)
                .ok_or_else(|| protocol("admit reply lacks the session"))
        };
        let admission = match kind.as_str() {
            "reused" => Admission::Reused(session()?),
            "opened" => Admission::Opened {
                session: session()?,
                replaced: session_of(&pool.name, &parts[2])?.map(|(s, reason)| ClosedSession {
                    session: s,
                    reason: reason.unwrap_or(CloseReason::Replaced),
                }),
            },
            "full" => Admission::Refused(Refusal::PoolFull {
                limit: pool.limit,
                in_use: count,
                retry_after,
            }),
            "revoked" => Admission::Refused(Refusal::Revoked),
            "queued" => Admission::Queued {
                ticket: ticket_of(&parts[1])?,
                ahead: count,
                retry_after: (retry_ms >= 0).then(|| Duration::from_millis(retry_ms as u64)),
            },
            "queue_full" => Admission::Refused(Refusal::QueueFull {
                limit: pool.limit,
                in_use: count,
                waiting: parts
                    .get(6)
                    .map(int)
                    .transpose()?
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                retry_after,
            }),
            "queue_timeout" => Admission::Refused(Refusal::QueueTimeout {
                limit: pool.limit,
                retry_after,
            }),
            // Only an admission already given up answers this, and nobody
            // waits for its answer.
            "abandoned" => {
                return Err(StoreError::Unavailable("admission abandoned".into()));
            }
            "subject" => Admission::Refused(Refusal::SubjectLimit {
                limit: subject_max,
                retry_after,
            }),
            other => return Err(protocol(&format!("admit reply kind `{other}`"))),
        };
        if let Admission::Opened { session, .. } = &admission
            && !self.replicated("admit").await
        {
            // Not acknowledged by enough replicas: a failover could lose
            // it, so the caller is not told it holds a seat, and the seat
            // is released again.
            self.abandon_later(tag, pool, session.id.clone());
            return Err(StoreError::Unavailable(
                "the new session did not reach enough replicas in time".into(),
            ));
        }
        let seats_held = matches!(admission, Admission::Opened { .. }).then_some(count);
        Ok(AdmitOutcome {
            admission,
            expired,
            seats_held,
        })
    }
}

/// The ticket of a `queued` answer: `{id, number}`.
fn ticket_of(value: &Value) -> Result<crate::session::Ticket, StoreError> {
    let parts = array(value)?;
    let (Some(id), Some(seq)) = (parts.first(), parts.get(1)) else {
        return Err(protocol("queued reply lacks the ticket"));
    };
    Ok(crate::session::Ticket {
        id: text(id)?,
        seq: text(seq)?
            .parse()
            .map_err(|_| protocol("queued reply has a bad ticket number"))?,
    })
}
