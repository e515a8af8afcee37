//! The Redis store's data model (layout 2, `gateway/src/session/redis/lua/
//! common.lua`) against a real `redis-server`: what a session costs in keys,
//! and sessions written by the earlier layout 1 (a fleet mid-upgrade), which
//! keep their seats and ids until they end.

use std::sync::Arc;
use std::time::Duration;

use session_gateway::clock::{Clock, ManualClock};
use session_gateway::licensing::{Pool, Pools, SubjectLimitPolicy};
use session_gateway::session::{
    Admission, AdmitRequest, CloseReason, RedisStore, SessionFilter, SessionStore,
};
use session_gateway_e2e::RedisServer;
use session_gateway_e2e::contract::{
    ABSOLUTE, Caller, IDLE, ISSUER, T0, caller, pool, with_subject_limit, with_timeouts,
};

const TAG: &str = "{layout:p}";

struct Fixture {
    store: Arc<RedisStore>,
    clock: ManualClock,
    pool: Arc<Pool>,
    redis: RedisServer,
}

impl Fixture {
    fn new(pool: Pool) -> anyhow::Result<Self> {
        let redis = RedisServer::start()?;
        let clock = ManualClock::starting_at(T0);
        let pools = Pools::new(vec![pool.clone()]);
        let config = session_gateway_e2e::store_config(redis.url(), "layout");
        let store = RedisStore::new(&config, &pools, Arc::new(clock.clone()))?;
        Ok(Self {
            store,
            clock,
            pool: Arc::new(pool),
            redis,
        })
    }

    async fn admit(&self, who: &Caller) -> anyhow::Result<Admission> {
        let request = AdmitRequest::of(&self.pool, &who.identity);
        Ok(self.store.admit(&request).await?.admission)
    }

    /// Writes a session exactly as layout 1 did (`persist` of the earlier
    /// `common.lua`), opened at `T0`.
    fn write_layout_1(&self, who: &Caller, id: &str) -> anyhow::Result<()> {
        let identity = who.identity.key.to_hex();
        let subject_key = who.identity.subject_key.to_hex();
        let idle_end = (T0 + IDLE.as_millis() as u64).to_string();
        let absolute_end = (T0 + ABSOLUTE.as_millis() as u64).to_string();
        let created = T0.to_string();
        let ttl = (ABSOLUTE.as_millis() as u64 + 600_000).to_string();
        let session = format!("{TAG}:s:{identity}");
        #[rustfmt::skip]
        self.redis.cli(&[
            "HSET", &session, "id", id, "identity", &identity, "bucket", "0",
            "issuer", ISSUER, "subject", &who.identity.subject, "client", "erp-web",
            "subject_key", &subject_key, "created", &created, "last_seen", &created,
            "idle_exp", &idle_end, "abs_exp", &absolute_end,
        ])?;
        self.redis.cli(&["PEXPIRE", &session, &ttl])?;
        self.redis
            .cli(&["SET", &format!("{TAG}:i:{id}"), &identity, "PX", &ttl])?;
        self.redis
            .cli(&["ZADD", &format!("{TAG}:b:0"), &idle_end, &identity])?;
        self.redis.cli(&[
            "ZADD",
            &format!("{TAG}:u:{subject_key}"),
            &created,
            &identity,
        ])?;
        Ok(())
    }

    /// The pool's keys of sessions and seats (the usage history's, under
    /// `{TAG}:h:`, are counted by [`Fixture::history_keys`]).
    fn keys(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .all_keys()?
            .into_iter()
            .filter(|k| !k.starts_with(&format!("{TAG}:h:")))
            .collect())
    }

    fn history_keys(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .all_keys()?
            .into_iter()
            .filter(|k| k.starts_with(&format!("{TAG}:h:")))
            .collect())
    }

    fn all_keys(&self) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .redis
            .cli(&["KEYS", &format!("{TAG}*")])?
            .lines()
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        Ok(keys)
    }
}

const LEGACY_ID: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn an_uncapped_pool_keeps_its_sessions_in_two_keys_whatever_their_number()
-> anyhow::Result<()> {
    let f = Fixture::new(pool("p", 100))?;
    for n in 0..50 {
        let who = caller(&format!("user-{n}"), "erp-web");
        assert!(matches!(f.admit(&who).await?, Admission::Opened { .. }));
    }
    // One hash of packed sessions and one seat set: no key per session, no
    // index per subject (the pool has no per-subject cap).
    assert_eq!(f.keys()?, [format!("{TAG}:b:0"), format!("{TAG}:s")]);
    // The usage history adds keys per interval, not per session: one minute,
    // hour and day record, a day's and a month's subject sets, the month's
    // count and the start mark.
    let history = f.history_keys()?;
    assert_eq!(history.len(), 7, "{history:?}");
    assert_eq!(f.redis.cli(&["HLEN", &format!("{TAG}:s")])?, "50");
    assert_eq!(f.redis.cli(&["ZCARD", &format!("{TAG}:b:0")])?, "50");
    Ok(())
}

#[tokio::test]
async fn a_capped_pool_indexes_a_subjects_sessions_and_a_close_clears_the_index()
-> anyhow::Result<()> {
    let f = Fixture::new(with_subject_limit(
        pool("p", 10),
        2,
        SubjectLimitPolicy::Deny,
    ))?;
    let web = caller("alice", "erp-web");
    let Admission::Opened { session, .. } = f.admit(&web).await? else {
        anyhow::bail!("not opened");
    };
    let index = f
        .keys()?
        .into_iter()
        .find(|k| k.starts_with(&format!("{TAG}:u:")))
        .ok_or_else(|| anyhow::anyhow!("no subject index"))?;
    assert_eq!(f.redis.cli(&["SMEMBERS", &index])?, session.id);
    f.store.close(&session.id, CloseReason::Admin).await?;
    assert_eq!(f.redis.cli(&["EXISTS", &index])?, "0");
    Ok(())
}

/// The seat's score carries the idle end until the absolute end caps it;
/// from then on the packed value keeps the last use.
#[tokio::test]
async fn a_touch_in_the_last_idle_period_keeps_the_last_use() -> anyhow::Result<()> {
    let minutes = |m: u64| Duration::from_secs(60 * m);
    let f = Fixture::new(with_timeouts(pool("p", 2), minutes(20), minutes(30)))?;
    let alice = caller("alice", "erp-web");
    let Admission::Opened { session, .. } = f.admit(&alice).await? else {
        anyhow::bail!("not opened");
    };
    f.clock.advance(minutes(5));
    let touched = f.store.touch_many(std::slice::from_ref(&session)).await?;
    assert!(touched[0].is_some());
    let got = f.store.get(&session.id).await?.expect("open");
    assert_eq!(got.last_seen_ms, T0 + 5 * 60_000);
    assert_eq!(got.idle_expires_ms, T0 + 25 * 60_000);

    f.clock.advance(minutes(10));
    let touched = f.store.touch_many(std::slice::from_ref(&session)).await?;
    assert!(touched[0].is_some());
    let got = f.store.get(&session.id).await?.expect("open");
    assert_eq!(got.last_seen_ms, T0 + 15 * 60_000);
    assert_eq!(got.idle_expires_ms, T0 + 35 * 60_000);
    assert_eq!(got.expires_ms(), T0 + 30 * 60_000);

    // An expired seat is not slid back to life.
    f.clock.advance(minutes(15));
    let touched = f.store.touch_many(std::slice::from_ref(&session)).await?;
    assert!(touched[0].is_none());
    assert_eq!(f.store.usage().await?[0].in_use, 0);
    Ok(())
}

/// One touch call reads and slides a batch with one command each; a seat
/// that expired (the sweeper has not closed it yet) stays expired.
#[tokio::test]
async fn a_touch_batch_slides_the_open_and_leaves_the_expired() -> anyhow::Result<()> {
    let f = Fixture::new(pool("p", 5))?;
    let mut opened = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let Admission::Opened { session, .. } = f.admit(&caller(name, "erp-web")).await? else {
            anyhow::bail!("not opened");
        };
        opened.push(session);
        f.clock.advance(Duration::from_secs(60));
    }
    // Alice idled out half a minute ago; Bob and Carol are still open.
    f.clock.advance(IDLE - Duration::from_secs(150));
    let touched = f.store.touch_many(&opened).await?;
    let slid: Vec<bool> = touched.iter().map(Option::is_some).collect();
    assert_eq!(slid, [false, true, true]);
    assert_eq!(f.store.usage().await?[0].in_use, 2);
    let bob = f.store.get(&opened[1].id).await?.expect("open");
    assert_eq!(bob.last_seen_ms, f.clock.now_ms());
    Ok(())
}

#[tokio::test]
async fn a_layout_1_session_keeps_its_seat_and_id_and_closes_in_place() -> anyhow::Result<()> {
    let f = Fixture::new(pool("p", 2))?;
    let alice = caller("alice", "erp-web");
    f.write_layout_1(&alice, LEGACY_ID)?;
    assert_eq!(f.store.usage().await?[0].in_use, 1, "its seat counts");

    f.clock.advance(Duration::from_secs(60));
    let Admission::Reused(reused) = f.admit(&alice).await? else {
        anyhow::bail!("the old session was not reused");
    };
    assert_eq!(reused.id, LEGACY_ID);
    assert_eq!(reused.identity, alice.identity.key);
    assert_eq!(reused.subject_key, alice.identity.subject_key);
    assert_eq!(reused.last_seen_ms, T0 + 60_000);
    let idle_end = (T0 + 60_000 + IDLE.as_millis() as u64).to_string();
    assert_eq!(
        f.redis.cli(&[
            "HGET",
            &format!("{TAG}:s:{}", alice.identity.key.to_hex()),
            "idle_exp"
        ])?,
        idle_end,
        "slid where it lives"
    );

    // The lease cache's touch slides it too.
    f.clock.advance(Duration::from_secs(60));
    let touched = f.store.touch_many(std::slice::from_ref(&reused)).await?;
    assert_eq!(
        touched[0].as_ref().map(|s| s.last_seen_ms),
        Some(T0 + 120_000)
    );
    assert_eq!(
        f.store.get(LEGACY_ID).await?.map(|s| s.idle_expires_ms),
        Some(T0 + 120_000 + IDLE.as_millis() as u64)
    );

    // Seats of both layouts count together: a new session takes the last.
    let bob = caller("bob", "erp-web");
    assert!(matches!(f.admit(&bob).await?, Admission::Opened { .. }));
    let carol = caller("carol", "erp-web");
    assert!(matches!(f.admit(&carol).await?, Admission::Refused(_)));
    let listed: Vec<String> = f
        .store
        .list(&SessionFilter::default())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&LEGACY_ID.to_string()));
    assert_eq!(
        f.store.get(LEGACY_ID).await?.map(|s| s.subject),
        Some("alice".to_string())
    );

    let closed = f.store.close(LEGACY_ID, CloseReason::Admin).await?;
    assert_eq!(closed.map(|c| c.session.id), Some(LEGACY_ID.to_string()));
    assert_eq!(f.store.usage().await?[0].in_use, 1);
    // Nothing of layout 1 is left.
    assert!(
        f.keys()?
            .iter()
            .all(|k| k == &format!("{TAG}:s") || k == &format!("{TAG}:b:0")),
        "{:?}",
        f.keys()?
    );
    // Alice comes back in the new layout.
    let Admission::Opened { session, .. } = f.admit(&alice).await? else {
        anyhow::bail!("not opened");
    };
    assert_eq!(session.id.len(), 38);
    Ok(())
}

#[tokio::test]
async fn a_layout_1_session_idles_out_with_its_reason_and_closes_with_its_subject()
-> anyhow::Result<()> {
    let f = Fixture::new(pool("p", 5))?;
    let alice = caller("alice", "erp-web");
    let bob = caller("bob", "erp-web");
    f.write_layout_1(&alice, LEGACY_ID)?;
    f.write_layout_1(&bob, "fedcba9876543210fedcba9876543210")?;
    let closed = f
        .store
        .close_subject(&bob.identity.subject_key, CloseReason::Backchannel)
        .await?;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].session.subject, "bob");

    f.clock.advance(IDLE);
    let swept = f.store.sweep().await?;
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].session.id, LEGACY_ID);
    assert_eq!(swept[0].reason, CloseReason::Idle);
    assert_eq!(f.store.usage().await?[0].in_use, 0);
    Ok(())
}

#[tokio::test]
async fn close_subject_walks_a_pool_larger_than_one_page() -> anyhow::Result<()> {
    let f = Fixture::new(pool("p", 2000))?;
    // Every tenth of 1,200 sessions (two and a half script pages) is one
    // subject's, each from its own client.
    for n in 0..1200 {
        let who = if n % 10 == 0 {
            caller("alice", &format!("client-{n}"))
        } else {
            caller(&format!("user-{n}"), "erp-web")
        };
        assert!(matches!(f.admit(&who).await?, Admission::Opened { .. }));
    }
    let alice = caller("alice", "erp-web");
    let closed = f
        .store
        .close_subject(&alice.identity.subject_key, CloseReason::Admin)
        .await?;
    assert_eq!(closed.len(), 120);
    assert!(closed.iter().all(|c| c.session.subject == "alice"));
    assert_eq!(f.store.usage().await?[0].in_use, 1080);
    Ok(())
}
