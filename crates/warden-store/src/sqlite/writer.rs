//! The writer thread: the only owner of the SQLite write connection.
//!
//! SQLite allows one writer at a time, and a commit costs an fsync, so instead of many
//! connections contending for the write lock, every write is a job sent over a bounded channel
//! to one thread. The thread takes whatever is queued (up to [`MAX_BATCH`] jobs), runs each job in
//! its own savepoint inside one transaction, commits once, and only then answers each job
//! through its oneshot. One failing job rolls back its savepoint and leaves the others of the
//! batch alone; a failed commit fails them all. Under load, thousands of small writes share one
//! fsync; at rest, a lone write commits at once.
//!
//! Shutdown: the thread runs until every sender is gone (the `SqliteStore` is dropped or
//! closed). Jobs still queued at that point are run and committed as usual before it exits,
//! so nothing that was accepted into the channel is dropped.

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};

/// The most jobs committed in one transaction. Bounds the latency a job adds to the others of
/// its batch and the size of the WAL a single commit writes.
pub(crate) const MAX_BATCH: usize = 1000;

/// A write as the writer thread sees it: type-erased so one channel carries every operation.
pub(crate) type Job = Box<dyn WriteJob>;

pub(crate) trait WriteJob: Send {
    /// Runs the job's statements; `true` if they succeeded and should be kept.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Replaces the job's outcome with an error that arose around it (savepoint handling).
    fn fail(&mut self, error: StoreError);
    /// Sends the job's result to its caller once the batch's fate (`committed`) is known.
    fn finish(self: Box<Self>, committed: &Result<()>);
}

/// A write job returning `T` to the caller awaiting `reply`.
pub(crate) struct TypedJob<T, F> {
    work: Option<F>,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    pub(crate) fn boxed(work: F) -> (Job, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(TypedJob { work: Some(work), outcome: None, reply }), answer)
    }
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            // The writer runs each job once; a second run has nothing to do and must not be kept.
            return false;
        };
        let outcome = work(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn finish(self: Box<Self>, committed: &Result<()>) {
        let result = match (self.outcome, committed) {
            // The job's own error says more than the batch's.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) => Err(e.clone()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(StoreError::Database("the write was not run".into())),
        };
        // The caller may have stopped waiting (its future was dropped); the write stands anyway.
        let _ = self.reply.send(result);
    }
}

/// The writer thread's body: batches jobs until the channel is closed and drained.
pub(crate) fn run(mut conn: Connection, mut jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let committed = run_batch(&mut conn, &mut batch);
        for job in batch.drain(..) {
            job.finish(&committed);
        }
    }
}

fn run_batch(conn: &mut Connection, batch: &mut [Job]) -> Result<()> {
    // IMMEDIATE takes the write lock now, so a busy database (another process) shows up as one
    // wait here rather than as a failure in the middle of the batch.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        let mut savepoint = tx.savepoint()?;
        if job.run(&savepoint) {
            if let Err(e) = savepoint.commit() {
                job.fail(e.into());
                return Err(StoreError::Database("a savepoint could not be released".into()));
            }
        } else {
            // Discard the failed job's partial writes. If that fails the batch cannot be trusted.
            savepoint.rollback()?;
            savepoint.commit()?;
        }
        // Some errors (disk full, I/O) make SQLite roll back the whole transaction by itself;
        // carrying on would run the next jobs outside any transaction.
        if tx.is_autocommit() {
            return Err(StoreError::Database("the transaction was rolled back by SQLite".into()));
        }
    }
    tx.commit()?;
    Ok(())
}
