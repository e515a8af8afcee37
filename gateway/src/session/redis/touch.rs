//! The touch batcher: a session served from the lease cache still slides its
//! idle timer in Redis, asynchronously, many sessions per script call.

use std::time::Duration;

use super::decode::{array, int, protocol};
use super::layout;
use super::{RedisStore, millis};
use crate::session::{Session, StoreError};

/// Most touches one script call carries, so one call never holds Redis for
/// long (layout 2 touches cost two commands per call and bucket, plus their
/// members' share of the work).
const TOUCH_BATCH: usize = 256;

/// How long a due touch waits for others: an eighth of `touch_interval`, at
/// most 100 ms. A touch falls due at three quarters of the interval, so it
/// is answered before its lease runs out.
pub(super) fn touch_delay(touch_interval: Duration) -> Duration {
    (touch_interval / 8).min(Duration::from_millis(100))
}

impl RedisStore {
    /// Queues the asynchronous touch of a cached lease. The first touch of a
    /// batch schedules its flush `touch_delay` later; every touch that falls
    /// due meanwhile rides along, so Redis sees a few script calls per
    /// second per instance however many sessions are busy.
    pub(super) fn touch_later(&self, session: Session) {
        let first = {
            let mut pending = self.pending_touches.lock();
            pending.push(session);
            pending.len() == 1
        };
        if !first {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            tokio::time::sleep(me.touch_delay).await;
            me.flush_touches().await;
        });
    }

    /// Sends every queued touch, one script call per pool and chunk.
    pub(super) async fn flush_touches(&self) {
        let mut due = std::mem::take(&mut *self.pending_touches.lock());
        due.sort_by(|a, b| a.pool.cmp(&b.pool));
        for batch in due.chunk_by(|a, b| a.pool == b.pool) {
            for chunk in batch.chunks(TOUCH_BATCH) {
                let epoch = self.leases.epoch();
                let asked_at = self.leases.now();
                match self.touch_many(chunk).await {
                    Ok(answers) => {
                        for (sent, answer) in chunk.iter().zip(answers) {
                            match answer {
                                Some(fresh) => self.leases.confirm(fresh, epoch, asked_at),
                                None => self.leases.forget(&sent.pool, &sent.identity),
                            }
                        }
                    }
                    // Keep the leases: they run out of the cache by themselves.
                    Err(error) => tracing::debug!(%error, "asynchronous touch failed"),
                }
            }
        }
    }

    /// Slides the idle timers of sessions of one pool in one script call (the
    /// lease cache's asynchronous touches); one answer per session, in order,
    /// `None` for those that have closed or were replaced.
    pub async fn touch_many(
        &self,
        sessions: &[Session],
    ) -> Result<Vec<Option<Session>>, StoreError> {
        let Some(first) = sessions.first() else {
            return Ok(Vec::new());
        };
        let pool = self.pool(&first.pool)?;
        if sessions.iter().any(|s| s.pool != pool.name) {
            return Err(StoreError::Protocol(
                "one touch batch must hold one pool's sessions".into(),
            ));
        }
        let tag = self.tag(&pool.name);
        let idle = millis(pool.idle_timeout);
        let mut args = Vec::with_capacity(3 + 4 * sessions.len());
        args.extend([self.now_arg(), tag.clone(), idle.to_string()]);
        for session in sessions {
            args.push(layout::identity_text(session));
            args.push(session.id.clone());
            args.push(session.bucket.to_string());
            args.push(session.absolute_expires_ms.to_string());
        }
        let value = self
            .run(&self.scripts.touch, &[format!("{tag}:s")], &args)
            .await?;
        let reply = array(&value)?;
        let (Some(now), Some(answers)) = (reply.first(), reply.get(1)) else {
            return Err(protocol("touch reply has the wrong shape"));
        };
        let now = u64::try_from(int(now)?).map_err(|_| protocol("touch reply time"))?;
        let answers = array(answers)?;
        if answers.len() != sessions.len() {
            return Err(protocol("touch reply does not match the batch"));
        }
        sessions
            .iter()
            .zip(answers)
            .map(|(sent, answer)| {
                Ok((int(answer)? == 1).then(|| Session {
                    last_seen_ms: now,
                    idle_expires_ms: now.saturating_add(idle),
                    ..sent.clone()
                }))
            })
            .collect()
    }
}
