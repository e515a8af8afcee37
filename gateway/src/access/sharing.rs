//! Shared-token detection (`[[pools]] shared_token`): one session used
//! from more client addresses or user agents within a window than one user
//! plausibly has. Each instance reports a client of a session to the store
//! the first time it sees it (and again every quarter window while it
//! keeps seeing it), so the store's count is the fleet's while the Redis
//! load stays at a few calls per session and window. What the count
//! decides is audited (`token_shared`), counted
//! (`session_gateway_tokens_shared_total`) and, with `on_shared = "deny"`,
//! refused: the clients that came first keep working, a client beyond the
//! bound gets 403 `token_shared`.

use std::net::IpAddr;

use super::{Access, Denial, Seated};
use crate::clock::UnixMillis;
use crate::digest::Digest32;
use crate::licensing::OnShared;
use crate::session::{ClientBound, ClientSighting, SessionId};

/// How many (session, client) verdicts an instance remembers.
pub const SIGHTINGS_CACHED: usize = 100_000;

/// An instance's last word on one client of one session.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// When the store was last told (ms).
    reported_ms: UnixMillis,
    /// Whether this client was refused (deny mode).
    refused: bool,
}

/// An instance's memory of its verdicts: per session and client, and per
/// session when it was last audited as shared (once per window).
#[derive(Debug)]
pub struct Sightings {
    verdicts: quick_cache::sync::Cache<(SessionId, Digest32, Digest32), Verdict>,
    audited: quick_cache::sync::Cache<SessionId, UnixMillis>,
}

impl Default for Sightings {
    fn default() -> Self {
        Self {
            verdicts: quick_cache::sync::Cache::new(SIGHTINGS_CACHED),
            audited: quick_cache::sync::Cache::new(SIGHTINGS_CACHED / 4),
        }
    }
}

impl Access {
    /// Notes which client used a seated session; a denial when the pool
    /// refuses shared sessions and this client goes past its bound. A store
    /// that fails is logged and the request passes: detection is a
    /// compliance signal, never a reason to stop a legitimate user.
    pub async fn note_client(
        &self,
        seated: &Seated,
        address: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Result<(), Denial> {
        let Some(policy) = self.pool(&seated.session.pool).and_then(|p| p.shared_token) else {
            return Ok(());
        };
        let address = address.map(|a| a.to_string()).unwrap_or_default();
        let sighting = ClientSighting::of(&address, user_agent.unwrap_or(""));
        let key = (
            seated.session.id.clone(),
            sighting.address,
            sighting.user_agent,
        );
        let now = self.clock.now_ms();
        let fresh = u64::try_from(policy.window.as_millis() / 4).unwrap_or(u64::MAX);
        let before = self.sightings.verdicts.get(&key);
        if let Some(v) = before
            && now.saturating_sub(v.reported_ms) < fresh
        {
            return verdict(v);
        }
        let bound = (policy.on_shared == OnShared::Deny).then_some(ClientBound {
            addresses: policy.max_addresses,
            user_agents: policy.max_user_agents,
        });
        let counts = match self
            .timed(
                "note_client",
                self.store.note_client(
                    &seated.session.pool,
                    &seated.session.id,
                    &sighting,
                    policy.window,
                    bound,
                ),
            )
            .await
        {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "shared-token check skipped: the store failed");
                return Ok(());
            }
        };
        let shared =
            counts.addresses > policy.max_addresses || counts.user_agents > policy.max_user_agents;
        let v = Verdict {
            reported_ms: now,
            refused: !counts.recorded,
        };
        let window_ms = u64::try_from(policy.window.as_millis()).unwrap_or(u64::MAX);
        let audited_lately = self
            .sightings
            .audited
            .get(&seated.session.id)
            .is_some_and(|at| now.saturating_sub(at) < window_ms);
        if shared && !audited_lately {
            self.sightings
                .audited
                .insert(seated.session.id.clone(), now);
            self.record_shared(seated, &policy, counts);
        }
        self.sightings.verdicts.insert(key, v);
        verdict(v)
    }
}

/// A refused client stays refused for as long as its verdict is fresh;
/// only `deny` refuses (`audit` records every client).
fn verdict(v: Verdict) -> Result<(), Denial> {
    if v.refused {
        return Err(Denial::TokenShared);
    }
    Ok(())
}
