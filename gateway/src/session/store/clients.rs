//! [`ClientLedger`]: where each session was used from, for shared-token
//! detection (`[[pools]] shared_token`). A store keeps, per session, the
//! distinct client addresses and user agents seen within a window, as
//! digests only (no address or user agent is stored in clear), at most
//! [`CLIENT_SIGHTINGS_CAP`] of each: the memory per session is bounded
//! whatever a client sends.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::digest::Digest32;

/// The most sightings of each kind a store keeps per session (the oldest
/// go first). Counts at the cap mean "at least this many".
pub const CLIENT_SIGHTINGS_CAP: usize = 64;

/// One request's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSighting {
    /// The client address the gateway believes (trusted forwarding chain).
    pub address: Digest32,
    /// The `User-Agent` header (empty when absent).
    pub user_agent: Digest32,
}

impl ClientSighting {
    /// The sighting of an address and a user agent.
    pub fn of(address: &str, user_agent: &str) -> Self {
        Self {
            address: Digest32::of_parts("client-address", [address.as_bytes()]),
            user_agent: Digest32::of_parts("client-user-agent", [user_agent.as_bytes()]),
        }
    }
}

/// Distinct clients of one session within the window, this sighting
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCounts {
    /// Distinct client addresses.
    pub addresses: u32,
    /// Distinct user agents.
    pub user_agents: u32,
    /// Whether the sighting was recorded (`false`: it would have taken the
    /// counts past the bound the caller refuses beyond).
    pub recorded: bool,
}

/// The counts past which a sighting is refused rather than recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientBound {
    /// Distinct client addresses allowed.
    pub addresses: u32,
    /// Distinct user agents allowed.
    pub user_agents: u32,
}

/// Where sightings of sessions' clients are kept, fleet-wide with Redis.
#[async_trait]
pub trait ClientLedger: Send + Sync + 'static {
    /// Records that session `session_id` of `pool` was used by `sighting`
    /// now, forgets what is older than `window`, and counts what is left.
    /// With `refuse_beyond`, a sighting that would take either count past
    /// its bound is counted but not recorded (the session's earlier clients
    /// keep their place).
    async fn note_client(
        &self,
        pool: &str,
        session_id: &str,
        sighting: &ClientSighting,
        window: Duration,
        refuse_beyond: Option<ClientBound>,
    ) -> Result<ClientCounts, StoreError>;
}
