//! [`UsageLedger`]: reading back a pool's usage history. Stores write it
//! themselves, inside the same atomic step as every seat change (admission,
//! close, purge), so there is no write method here.

use async_trait::async_trait;

use super::StoreError;
use crate::licensing::Bucket;
use crate::usage::{LedgerSnapshot, Step};

/// Where a store's usage history is read.
#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// One pool's history at `step` (or, with `bucket`, the history of
    /// one of its reserved buckets: its sessions only), from interval `from`
    /// through the one holding the store's now, with the seats held now and
    /// the expiries not purged yet ([`crate::usage::rebuild`] turns it into
    /// intervals). Refusals and distinct subjects are the pool's only.
    /// `None` when the store knows no pool of that name.
    async fn usage_ledger(
        &self,
        pool: &str,
        bucket: Option<Bucket>,
        step: Step,
        from: u64,
    ) -> Result<Option<LedgerSnapshot>, StoreError>;
}
