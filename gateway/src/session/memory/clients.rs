//! The memory store's [`ClientLedger`](crate::session::ClientLedger): per
//! session, the client addresses and user agents seen within the window,
//! as digests, at most [`CLIENT_SIGHTINGS_CAP`] of each.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::UnixMillis;
use crate::digest::Digest32;
use crate::session::{CLIENT_SIGHTINGS_CAP, ClientBound, ClientCounts, ClientSighting, SessionId};

/// Every session's sightings, by pool and session id.
#[derive(Debug, Default)]
pub(super) struct ClientSightings {
    sessions: BTreeMap<(String, SessionId), Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    addresses: Vec<(Digest32, UnixMillis)>,
    user_agents: Vec<(Digest32, UnixMillis)>,
    /// When the newest sighting leaves the window.
    until: UnixMillis,
}

/// Forgets what left the window; how many there would be with `digest`.
fn count_with(seen: &mut Vec<(Digest32, UnixMillis)>, digest: Digest32, since: UnixMillis) -> u32 {
    seen.retain(|(_, at)| *at > since);
    let known = seen.iter().any(|(d, _)| *d == digest);
    (seen.len() + usize::from(!known)).min(CLIENT_SIGHTINGS_CAP) as u32
}

/// Records one sighting (newest last), dropping the oldest beyond the cap.
fn record(seen: &mut Vec<(Digest32, UnixMillis)>, digest: Digest32, now: UnixMillis) {
    seen.retain(|(d, _)| *d != digest);
    seen.push((digest, now));
    if seen.len() > CLIENT_SIGHTINGS_CAP {
        let excess = seen.len() - CLIENT_SIGHTINGS_CAP;
        seen.drain(..excess);
    }
}

impl ClientSightings {
    /// See [`ClientLedger::note_client`](crate::session::ClientLedger::note_client).
    pub(super) fn note(
        &mut self,
        pool: &str,
        session_id: &str,
        sighting: &ClientSighting,
        window: Duration,
        refuse_beyond: Option<ClientBound>,
        now: UnixMillis,
    ) -> ClientCounts {
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let since = now.saturating_sub(window);
        let seen = self
            .sessions
            .entry((pool.to_string(), session_id.to_string()))
            .or_default();
        let addresses = count_with(&mut seen.addresses, sighting.address, since);
        let user_agents = count_with(&mut seen.user_agents, sighting.user_agent, since);
        let refused =
            refuse_beyond.is_some_and(|b| addresses > b.addresses || user_agents > b.user_agents);
        if !refused {
            record(&mut seen.addresses, sighting.address, now);
            record(&mut seen.user_agents, sighting.user_agent, now);
            seen.until = now.saturating_add(window);
        }
        ClientCounts {
            addresses,
            user_agents,
            recorded: !refused,
        }
    }

    /// Forgets the sessions none of whose sightings is in its window.
    pub(super) fn prune(&mut self, now: UnixMillis) {
        self.sessions.retain(|_, seen| seen.until > now);
    }
}
