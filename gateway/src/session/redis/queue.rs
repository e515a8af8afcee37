//! The seat queue in Redis: leaving the line (`lua/leave.lua`) and the
//! news that a seat may have freed, heard on the revocation channel (a
//! close's lease drop, or `seat|<pool>` from an admission or a leave).

use async_trait::async_trait;

use super::RedisStore;
use super::decode::int;
use crate::licensing::Pool;
use crate::session::{QueueExit, SeatListener, SeatQueue, StoreError, Ticket};

#[async_trait]
impl SeatQueue for RedisStore {
    async fn leave_queue(
        &self,
        pool: &Pool,
        ticket: &Ticket,
        exit: QueueExit,
    ) -> Result<bool, StoreError> {
        let tag = self.tag(&pool.name);
        let mut args = vec![
            self.now_arg(),
            tag.clone(),
            ticket.id.clone(),
            match exit {
                QueueExit::TimedOut => "timeout",
                QueueExit::Left => "left",
            }
            .to_string(),
            self.history_arg(pool),
            pool.overdraft_bucket().unwrap_or(0).to_string(),
        ];
        args.extend(Self::bucket_args(pool));
        let value = self
            .run(&self.scripts.leave, &[format!("{tag}:s")], &args)
            .await?;
        Ok(int(&value)? == 1)
    }

    fn on_seat_freed(&self, listener: SeatListener) {
        self.seats.listen(listener);
    }
}
