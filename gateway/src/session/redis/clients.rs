//! [`ClientLedger`] for the Redis store: the sightings of a session's
//! clients live under its pool's tag, one ZSET of address digests and one
//! of user-agent digests per session, so the whole fleet counts them
//! (`lua/clients.lua`).

use std::time::Duration;

use async_trait::async_trait;

use super::decode::{array, int, protocol};
use super::{RedisStore, millis};
use crate::session::{
    CLIENT_SIGHTINGS_CAP, ClientBound, ClientCounts, ClientLedger, ClientSighting, StoreError,
};

#[async_trait]
impl ClientLedger for RedisStore {
    async fn note_client(
        &self,
        pool: &str,
        session_id: &str,
        sighting: &ClientSighting,
        window: Duration,
        refuse_beyond: Option<ClientBound>,
    ) -> Result<ClientCounts, StoreError> {
        let tag = self.tag(pool);
        let slot = |d: &crate::digest::Digest32| d.to_base64()[..22].to_string();
        let value = self
            .run(
                &self.scripts.clients,
                &[
                    format!("{tag}:xa:{session_id}"),
                    format!("{tag}:xu:{session_id}"),
                ],
                &[
                    self.now_arg(),
                    slot(&sighting.address),
                    slot(&sighting.user_agent),
                    millis(window).to_string(),
                    CLIENT_SIGHTINGS_CAP.to_string(),
                    refuse_beyond.map_or(0, |b| b.addresses).to_string(),
                    refuse_beyond.map_or(0, |b| b.user_agents).to_string(),
                ],
            )
            .await?;
        let [addresses, user_agents, recorded] = array(&value)? else {
            return Err(protocol("clients reply has the wrong shape"));
        };
        let count = |v| int(v).map(|n| u32::try_from(n).unwrap_or(0));
        Ok(ClientCounts {
            addresses: count(addresses)?,
            user_agents: count(user_agents)?,
            recorded: int(recorded)? == 1,
        })
    }
}
