//! [`SessionStore`] for the Redis store: the lease cache's fast path in
//! front of the admission, and the scripts that find, close, list, count and
//! sweep sessions pool by pool.

use std::sync::Arc;

use async_trait::async_trait;
use redis::{Script, Value};

use super::decode::{array, closed_list, int, protocol, session_of, text};
use super::{RedisStore, StorePools};
use super::{layout, millis};
use crate::licensing::{Pool, Pools};
use crate::session::{
    Admission, AdmitOutcome, AdmitRequest, CloseReason, ClosedSession, IdentityKey, PoolUsage,
    Session, SessionFilter, SessionStore, StoreError, SubjectKey,
};

#[async_trait]
impl SessionStore for RedisStore {
    async fn admit(&self, request: &AdmitRequest<'_>) -> Result<AdmitOutcome, StoreError> {
        let sid_key = request.sid.map(|sid| sid.key());
        if let Some(lease) = self.leases.fresh(&request.pool.name, &request.identity.key)
            && sid_key.as_ref().is_none_or(|key| {
                self.sid_links
                    .get(&(lease.session.id.clone(), key.clone()))
                    .is_some()
            })
        {
            if lease.touch_due {
                self.touch_later(lease.session.clone());
            }
            return Ok(AdmitOutcome {
                admission: Admission::Reused(lease.session),
                expired: Vec::new(),
                seats_held: None,
            });
        }
        let epoch = self.leases.epoch();
        let asked_at = self.leases.now();
        match self.admit_in_store(request).await {
            Ok(outcome) => {
                if let Some(session) = outcome.admission.session() {
                    self.leases.confirm(session.clone(), epoch, asked_at);
                    if let Some(key) = sid_key {
                        self.sid_links.insert((session.id.clone(), key), ());
                    }
                }
                // Closed sessions lose their leases, except an expired one
                // of this very identity: its lease is now the new session's.
                let served = outcome.admission.session().map(|s| s.identity);
                let replaced = match &outcome.admission {
                    Admission::Opened {
                        replaced: Some(replaced),
                        ..
                    } => Some(replaced),
                    _ => None,
                };
                for closed in replaced.into_iter().chain(&outcome.expired) {
                    if Some(closed.session.identity) != served {
                        self.leases
                            .forget(&closed.session.pool, &closed.session.identity);
                    }
                }
                Ok(outcome)
            }
            Err(error) => match self
                .leases
                .within_grace(&request.pool.name, &request.identity.key)
            {
                // Redis is down, but this session was confirmed recently
                // enough: the operator chose to let it continue.
                Some(session) => Ok(AdmitOutcome {
                    admission: Admission::Reused(session),
                    expired: Vec::new(),
                    seats_held: None,
                }),
                None => Err(error),
            },
        }
    }

    async fn find(
        &self,
        pool: &str,
        identity: &IdentityKey,
    ) -> Result<Option<Session>, StoreError> {
        let tag = self.tag(pool);
        let idle = self.pool(pool)?.idle_timeout;
        let value = self
            .run(
                &self.scripts.find,
                &[format!("{tag}:s")],
                &[
                    self.now_arg(),
                    tag,
                    identity.to_base64(),
                    identity.to_hex(),
                    millis(idle).to_string(),
                ],
            )
            .await?;
        Ok(session_of(pool, &value)?.map(|(s, _)| s))
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let tag = self.tag(&pool.name);
            let value = self
                .run(
                    &self.scripts.get,
                    &[format!("{tag}:s"), format!("{tag}:i:{id}")],
                    &[
                        self.now_arg(),
                        tag,
                        id.to_string(),
                        millis(pool.idle_timeout).to_string(),
                    ],
                )
                .await?;
            if let Some((session, _)) = session_of(&pool.name, &value)? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    async fn close(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        let closed = self.close_by_id(id, reason).await?;
        if closed.is_some() {
            self.replicated("close").await;
        }
        Ok(closed)
    }

    async fn close_subject(
        &self,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        let mut closed = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            match self.close_subject_in(pool, subject, reason).await {
                Ok(found) => {
                    for c in found {
                        self.leases.forget(&c.session.pool, &c.session.identity);
                        closed.push(ClosedSession { reason, ..c });
                    }
                }
                Err(error) => return partial(closed, error),
            }
        }
        if !closed.is_empty() {
            self.replicated("close_subject").await;
        }
        Ok(closed)
    }

    async fn list(&self, filter: &SessionFilter) -> Result<Vec<Session>, StoreError> {
        let mut sessions = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            if filter.pool.as_ref().is_some_and(|p| p != &pool.name) {
                continue;
            }
            let value = self.whole_pool(&self.scripts.list, pool).await?;
            for item in array(&value)? {
                if let Some((s, _)) = session_of(&pool.name, item)?
                    && filter.subject.as_ref().is_none_or(|sub| sub == &s.subject)
                {
                    sessions.push(s);
                }
            }
        }
        sessions.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(sessions)
    }

    async fn usage(&self) -> Result<Vec<PoolUsage>, StoreError> {
        let mut usage = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.configured.iter() {
            let value = self.whole_pool(&self.scripts.usage, pool).await?;
            let counts = array(&value)?;
            let count = |i: usize| -> Result<u32, StoreError> {
                let value = counts
                    .get(i)
                    .ok_or_else(|| protocol("usage reply has the wrong shape"))?;
                Ok(u32::try_from(int(value)?).unwrap_or(u32::MAX))
            };
            usage.push(PoolUsage {
                pool: pool.name.clone(),
                limit: pool.limit,
                reserved: pool.reserved_total(),
                in_use: count(0)?,
                waiting: count(1)?,
            });
        }
        Ok(usage)
    }

    async fn sweep(&self) -> Result<Vec<ClosedSession>, StoreError> {
        let mut closed = Vec::new();
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let value = match self.whole_pool(&self.scripts.sweep, pool).await {
                Ok(value) => value,
                Err(error) => return partial(closed, error),
            };
            for c in closed_list(&pool.name, &value)? {
                self.leases.forget(&c.session.pool, &c.session.identity);
                closed.push(c);
            }
        }
        Ok(closed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.version_ok.load(std::sync::atomic::Ordering::Relaxed) {
            let info = text(&self.run(&self.scripts.server_info, &[], &[]).await?)?;
            supported_version(&info).map_err(StoreError::Protocol)?;
            self.version_ok
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let value = self.run(&self.scripts.ping, &[], &[]).await?;
        match value {
            Value::SimpleString(_) | Value::Okay | Value::BulkString(_) => Ok(()),
            _ => Err(protocol("PING reply")),
        }
    }

    fn reconfigure(&self, pools: &Pools) {
        // Limits and reserved seats travel with every admission (script
        // arguments); only the set of pools to report, sweep and search is
        // kept here. A removed pool stays in `every` until restart.
        let current = self.pools.load();
        let mut every: Vec<Arc<Pool>> = pools.iter().cloned().collect();
        every.extend(
            current
                .every
                .iter()
                .filter(|old| pools.get(&old.name).is_none())
                .cloned(),
        );
        self.pools.store(Arc::new(StorePools {
            configured: pools.clone(),
            every,
        }));
    }
}

impl RedisStore {
    /// Runs one of the scripts that read or sweep a whole pool (list,
    /// usage, sweep: same KEYS and ARGV).
    async fn whole_pool(&self, script: &Script, pool: &Pool) -> Result<Value, StoreError> {
        let tag = self.tag(&pool.name);
        self.run(
            script,
            &[format!("{tag}:b:0")],
            &[
                self.now_arg(),
                tag,
                pool.bucket_count().to_string(),
                millis(pool.idle_timeout).to_string(),
                self.history_arg(pool),
                Self::hold_arg(pool),
            ],
        )
        .await
    }

    /// Closes by id in every pool (ids do not name their pool; pools are few
    /// and closing is rare).
    async fn close_by_id(
        &self,
        id: &str,
        reason: CloseReason,
    ) -> Result<Option<ClosedSession>, StoreError> {
        let pools = self.pools.load_full();
        for pool in pools.every.iter() {
            let tag = self.tag(&pool.name);
            let value = self
                .run(
                    &self.scripts.close,
                    &[format!("{tag}:s"), format!("{tag}:i:{id}")],
                    &[
                        self.now_arg(),
                        tag,
                        id.to_string(),
                        reason.as_str().to_string(),
                        millis(pool.idle_timeout).to_string(),
                        self.history_arg(pool),
                        Self::hold_arg(pool),
                    ],
                )
                .await?;
            if let Some((session, _)) = session_of(&pool.name, &value)? {
                self.leases.forget(&session.pool, &session.identity);
                return Ok(Some(ClosedSession { session, reason }));
            }
        }
        Ok(None)
    }
}

impl RedisStore {
    /// Closes a subject's sessions in one pool, a page of the pool's
    /// sessions per script call (`lua/close_subject.lua`). Sessions closed
    /// by earlier pages are reported even when a later page fails.
    async fn close_subject_in(
        &self,
        pool: &Pool,
        subject: &SubjectKey,
        reason: CloseReason,
    ) -> Result<Vec<ClosedSession>, StoreError> {
        let tag = self.tag(&pool.name);
        let keys = [format!("{tag}:s"), format!("{tag}:u:{}", subject.to_hex())];
        let slot = layout::slot(subject);
        let idle = millis(pool.idle_timeout).to_string();
        let history = self.history_arg(pool);
        let hold = Self::hold_arg(pool);
        let mut closed = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            let args = [
                self.now_arg(),
                tag.clone(),
                reason.as_str().to_string(),
                slot.clone(),
                cursor.clone(),
                idle.clone(),
                history.clone(),
                hold.clone(),
            ];
            let value = match self.run(&self.scripts.close_subject, &keys, &args).await {
                Ok(value) => value,
                Err(error) => return partial(closed, error),
            };
            let reply = array(&value)?;
            let (Some(next), Some(found)) = (reply.first(), reply.get(1)) else {
                return Err(protocol("close_subject reply has the wrong shape"));
            };
            closed.extend(closed_list(&pool.name, found)?);
            cursor = text(next)?;
            if cursor == "0" {
                return Ok(closed);
            }
        }
    }
}

/// The oldest Redis the scripts run on (`ZMSCORE` in the touch).
const OLDEST_REDIS: (u32, u32) = (6, 2);

/// Checks the `redis_version` of an `INFO server` reply.
fn supported_version(info: &str) -> Result<(), String> {
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim)
        .ok_or_else(|| "INFO server names no redis_version".to_string())?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < OLDEST_REDIS {
        return Err(format!(
            "Redis {version} is too old: the Redis store needs {}.{} or newer",
            OLDEST_REDIS.0, OLDEST_REDIS.1
        ));
    }
    Ok(())
}

/// Sessions already closed in earlier pools are gone from Redis: they must
/// still be reported (audited) even when a later pool fails.
fn partial(
    closed: Vec<ClosedSession>,
    error: StoreError,
) -> Result<Vec<ClosedSession>, StoreError> {
    if closed.is_empty() {
        Err(error)
    } else {
        tracing::warn!(%error, "store operation failed part-way; reporting what was closed");
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::supported_version;

    #[test]
    fn redis_older_than_6_2_is_refused_with_its_version() {
        assert!(supported_version("# Server\r\nredis_version:7.0.15\r\n").is_ok());
        assert!(supported_version("redis_version:6.2.0\r\n").is_ok());
        assert!(supported_version("redis_version:10.0.0\r\n").is_ok());
        let old = supported_version("redis_version:6.0.16\r\n").unwrap_err();
        assert_eq!(
            old,
            "Redis 6.0.16 is too old: the Redis store needs 6.2 or newer"
        );
        assert!(supported_version("redis_version:5.0.7").is_err());
        assert!(supported_version("# Server").is_err());
    }
}
