//! The Lua scripts (`lua/*.lua`, each with a header listing KEYS and ARGV):
//! compiled once, and called over the connection with a bound on the whole
//! call, connecting included.

use std::sync::Arc;

use redis::{Script, Value};

use super::RedisStore;
use super::connect::Connection;
use super::decode::store_error;
use crate::session::StoreError;

const COMMON: &str = include_str!("lua/common.lua");

/// The scripts, compiled once (their SHA-1 is computed at start).
pub(super) struct Scripts {
    pub(super) admit: Script,
    pub(super) touch: Script,
    pub(super) find: Script,
    pub(super) get: Script,
    pub(super) close: Script,
    pub(super) close_subject: Script,
    pub(super) list: Script,
    pub(super) usage: Script,
    pub(super) sweep: Script,
    pub(super) revoke: Script,
    pub(super) revocations: Script,
    pub(super) delete_revocation: Script,
    pub(super) deleted_revocations: Script,
    pub(super) mark_revoked: Script,
    pub(super) forget_marker: Script,
    pub(super) generation: Script,
    pub(super) abandon: Script,
    pub(super) first_use: Script,
    pub(super) release_use: Script,
    pub(super) members: Script,
    pub(super) audit: Script,
    pub(super) ping: Script,
    pub(super) server_info: Script,
    pub(super) audit_newest: Script,
    pub(super) audit_oldest: Script,
    pub(super) history: Script,
    pub(super) clients: Script,
    pub(super) leave: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            admit: with_common(include_str!("lua/admit.lua")),
            touch: with_common(include_str!("lua/touch.lua")),
            find: with_common(include_str!("lua/find.lua")),
            get: with_common(include_str!("lua/get.lua")),
            close: with_common(include_str!("lua/close.lua")),
            close_subject: with_common(include_str!("lua/close_subject.lua")),
            list: with_common(include_str!("lua/list.lua")),
            usage: with_common(include_str!("lua/usage.lua")),
            sweep: with_common(include_str!("lua/sweep.lua")),
            revoke: with_common(include_str!("lua/revoke.lua")),
            revocations: with_common(include_str!("lua/revocations.lua")),
            delete_revocation: with_common(include_str!("lua/delete_revocation.lua")),
            deleted_revocations: with_common(include_str!("lua/deleted_revocations.lua")),
            mark_revoked: with_common(include_str!("lua/mark_revoked.lua")),
            forget_marker: Script::new("return redis.call('DEL', KEYS[1])"),
            generation: Script::new(include_str!("lua/generation.lua")),
            abandon: with_common(include_str!("lua/abandon.lua")),
            leave: with_common(include_str!("lua/leave.lua")),
            first_use: with_common(include_str!("lua/first_use.lua")),
            release_use: Script::new("return redis.call('DEL', KEYS[1])"),
            members: Script::new("return redis.call('SMEMBERS', KEYS[1])"),
            audit: Script::new(include_str!("lua/audit.lua")),
            ping: Script::new("return redis.call('PING')"),
            server_info: Script::new("return redis.call('INFO', 'server')"),
            // KEYS[1] the audit stream; ARGV 1 the exclusive bound (`(<id>`)
            // or `+` / `-`, 2 how many entries.
            audit_newest: Script::new(
                "return redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', ARGV[2])",
            ),
            audit_oldest: Script::new(
                "return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])",
            ),
            history: with_common(include_str!("lua/history.lua")),
            clients: with_common(include_str!("lua/clients.lua")),
        }
    }
}

impl RedisStore {
    pub(super) async fn run(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        // Connecting is bounded too: a Redis that accepts but never answers
        // must not hold a request forever.
        let call = async {
            match &self.connection {
                Connection::Standalone {
                    client,
                    config,
                    conn,
                } => {
                    let mut conn = conn
                        .get(|| {
                            let (client, config) = (client.clone(), config.clone());
                            self.driver.run(async move {
                                client.get_connection_manager_with_config(config).await
                            })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
                Connection::Sentinel {
                    sentinel,
                    config,
                    conn,
                } => {
                    let mut conn = conn
                        .get(|| {
                            let (sentinel, config) = (Arc::clone(sentinel), config.clone());
                            self.driver.run(async move {
                                let client = sentinel.lock().await.async_get_client().await?;
                                client.get_connection_manager_with_config(config).await
                            })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
                Connection::Cluster { client, conn } => {
                    let mut conn = conn
                        .get(|| {
                            let client = client.clone();
                            self.driver
                                .run(async move { client.get_async_connection().await })
                        })
                        .await?;
                    invocation
                        .invoke_async::<Value>(&mut conn)
                        .await
                        .map_err(|e| store_error(&e))
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => {
                self.connection.record(Some(&result));
                result
            }
            Err(_) => {
                self.connection.record(None);
                Err(StoreError::Unavailable("timed out".into()))
            }
        }
    }
}
