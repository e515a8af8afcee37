//! The runtime the Redis calls run on: a dedicated one-thread Tokio runtime
//! that owns the redis crate's connection driver tasks, so they live as
//! long as the store and never depend on whichever Pingora service called
//! first.

use super::decode::store_error;
use crate::session::StoreError;

/// A dedicated one-thread runtime for the Redis connection's driver task:
/// alive as long as the store, never starved by proxy work, and not stopped
/// before in-flight requests during a graceful shutdown.
pub(super) struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    pub(super) fn new() -> Result<Self, StoreError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis-driver")
            .enable_all()
            .build()
            .map(|rt| Driver(Some(rt)))
            .map_err(|e| StoreError::Protocol(format!("redis runtime: {e}")))
    }

    /// Runs a future on the driver runtime and waits for it from any runtime.
    pub(super) async fn run<F, T>(&self, future: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, redis::RedisError>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .0
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store is shutting down".into()))?;
        match runtime.spawn(future).await {
            Ok(result) => result.map_err(|e| store_error(&e)),
            Err(e) => Err(StoreError::Unavailable(format!("redis driver: {e}"))),
        }
    }
}

impl Driver {
    /// Starts a background task on the driver runtime; false once the store
    /// is shutting down.
    pub(super) fn spawn<F>(&self, future: F) -> bool
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.as_ref().map(|rt| rt.spawn(future)).is_some()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; this never blocks.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
