//! The writer thread: the only owner of the SQLite write connection.
//!
//! SQLite allows one writer at a time, and a commit costs an fsync, so instead of many
//! connections contending for the write lock, every write is a job sent over a bounded channel
//! to one thread. The thread takes whatever is queued (up to [`MAX_BATCH`] jobs), runs each job in
//! its own savepoint inside one transaction, commits once, and only then answers each job
//! through its oneshot. One failing job rolls back its savepoint and leaves the others of the
//! batch alone; a failed commit fails them all. Under load, thousands of small writes share one
//! fsync (group commit); at rest, a lone write commits at once.
//!
//! A commit has a fixed CPU cost (the WAL write and the fsync: ≈ 0.4 ms on a virtual disk),
//! however few jobs it holds. Under a steady stream of reports the thread would commit as soon
//! as the last commit ended, with only the jobs that arrived meanwhile, so that fixed cost
//! would be paid hundreds of times a second for batches of a few jobs. So commits start at
//! least [`COMMIT_INTERVAL`] apart when the last batch had more than one job: a job that
//! arrives sooner after that commit waits out the rest of the interval (one sleep, no polling)
//! with whatever else arrives. A lone write, and a client writing one thing after another,
//! still commit at once.
//!
//! A savepoint is not free: SQLite copies every page a savepoint modifies first into its
//! sub-journal, which for a report of ten rows is several 4 KiB copies, more than the inserts
//! themselves cost. So jobs that can run twice ([`RepeatableJob`]: reports and datapoints) are
//! run in runs of consecutive jobs under one savepoint; only if one of them fails is the run
//! rolled back and each of its jobs run again in its own savepoint, as any other job.
//!
//! The thread also keeps what it learnt about the database in [`WriteCache`] (the day tables
//! that exist, whether the ingest log may hold rows), so that a report's datapoints are inserted
//! without looking anything up. Whatever a failed job or batch may have rolled back is
//! forgotten with the whole cache.
//!
//! Reports append their ingest state to a log rather than update each thing's row, because
//! the updates dirtied a page per report for the WAL (see `telemetry`). The thread folds that
//! log into the table at most every [`FOLD_INTERVAL`], at the end of a batch, in the batch's
//! transaction just before its commit: under its own savepoint, so that a fold that fails is
//! rolled back and logged, and the batch commits without it (the log is kept and folded next
//! time). It also folds at shutdown, so a store closed cleanly reopens with an empty log.
//!
//! Shutdown: the thread runs until every sender is gone (the `SqliteStore` is dropped) or it
//! receives [`Message::Close`] (`SqliteStore::close`). Either way, jobs still queued at that
//! point are run and committed as usual before it exits, so nothing that was accepted into the
//! channel is dropped.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::telemetry::{self, WriteCache};
use crate::error::{Result, StoreError};

/// The most jobs committed in one transaction. Bounds the latency a job adds to the others of
/// its batch and the size of the WAL a single commit writes.
pub(crate) const MAX_BATCH: usize = 1000;

/// The shortest time from one commit's start to the next while writes keep coming: at most
/// 200 commits a second, and at most this much added to a write's latency. 5 ms rather than 2:
/// at 10,000 reports/s with detection on, alert p50 5–8 ms instead of 42–96 ms (less CPU on
/// commits leaves more for the rest), for a reply p50 at 1,000 reports/s of 3.8 ms instead of
/// 2.1 ms (bench/RESULTS.md).
const COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// The longest the ingest log goes unfolded while reports keep coming. A fold dirties each page
/// of `ingest_state` that holds a thing which reported since the last, once, where updating the
/// table per report dirtied up to a page per report in every commit: with 10,000 things
/// reporting once a second, about a hundred pages a second instead of thousands. Folding less
/// often would save little more, and this keeps the log, which reads scan, to about a second
/// of reports.
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// A write as the writer thread sees it: type-erased so one channel carries every operation.
pub(crate) type Job = Box<dyn WriteJob>;

/// What travels on the writer's channel.
pub(crate) enum Message {
    Job(Job),
    /// Commit what is queued and stop (sent by `SqliteStore::close`).
    Close,
}

/// What a job works with: the open transaction (as a connection inside a savepoint) and the
/// thread's cache.
pub(crate) struct WriteContext<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) cache: &'a mut WriteCache,
}

pub(crate) trait WriteJob: Send {
    /// Runs the job's statements; `true` if they succeeded and should be kept.
    fn run(&mut self, cx: &mut WriteContext<'_>) -> bool;
    /// Whether `run` may be called again after its writes were rolled back, which lets the
    /// writer run it together with others under one savepoint.
    fn repeatable(&self) -> bool {
        false
    }
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
    F: FnOnce(&mut WriteContext<'_>) -> Result<T> + Send + 'static,
{
    pub(crate) fn boxed(work: F) -> (Job, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(TypedJob { work: Some(work), outcome: None, reply }), answer)
    }
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&mut WriteContext<'_>) -> Result<T> + Send,
{
    fn run(&mut self, cx: &mut WriteContext<'_>) -> bool {
        let Some(work) = self.work.take() else {
            // The writer runs each job once; a second run has nothing to do and must not be kept.
            return false;
        };
        let outcome = work(cx);
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

/// A write job that can run again after a rollback: its work borrows what it writes instead of
/// consuming it.
pub(crate) struct RepeatableJob<T, F> {
    work: F,
    outcome: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> RepeatableJob<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut WriteContext<'_>) -> Result<T> + Send + 'static,
{
    pub(crate) fn boxed(work: F) -> (Job, oneshot::Receiver<Result<T>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(RepeatableJob { work, outcome: None, reply }), answer)
    }
}

impl<T, F> WriteJob for RepeatableJob<T, F>
where
    T: Send,
    F: FnMut(&mut WriteContext<'_>) -> Result<T> + Send,
{
    fn run(&mut self, cx: &mut WriteContext<'_>) -> bool {
        let outcome = (self.work)(cx);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn repeatable(&self) -> bool {
        true
    }

    fn fail(&mut self, error: StoreError) {
        self.outcome = Some(Err(error));
    }

    fn finish(self: Box<Self>, committed: &Result<()>) {
        let result = match (self.outcome, committed) {
            // The job's own error says more than the batch's.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)) | None, Err(e)) => Err(e.clone()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::Database("the write was not run".into())),
        };
        // The caller may have stopped waiting (its future was dropped); the write stands anyway.
        let _ = self.reply.send(result);
    }
}

/// How long a batch whose first job has just arrived waits for company: the rest of
/// [`COMMIT_INTERVAL`] since the last commit of more than one job, if that was so recent.
fn wait_before_commit(last_shared_commit: Option<Instant>, now: Instant) -> Option<Duration> {
    let since = now.checked_duration_since(last_shared_commit?)?;
    COMMIT_INTERVAL.checked_sub(since).filter(|wait| !wait.is_zero())
}

/// Whether a batch should fold the ingest log before it commits: when the log may hold rows
/// and the last fold (or attempt) was [`FOLD_INTERVAL`] ago or more.
fn fold_due(log_empty: bool, last_fold: Instant, now: Instant) -> bool {
    !log_empty && now.saturating_duration_since(last_fold) >= FOLD_INTERVAL
}

/// The writer thread's body: batches jobs until the channel is closed (or `Close` arrives) and
/// drained.
pub(crate) fn run(mut conn: Connection, mut queue: mpsc::Receiver<Message>) {
    let mut cache = WriteCache::default();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    // When the last batch started committing, if it had company.
    let mut last_shared_commit: Option<Instant> = None;
    // When the ingest log was last folded, or a fold was tried. Not at once at start: a log
    // left by a crash is read correctly meanwhile.
    let mut last_fold = Instant::now();
    while !closing {
        match queue.blocking_recv() {
            Some(Message::Job(job)) => batch.push(job),
            Some(Message::Close) | None => closing = true,
        }
        if let Some(wait) = wait_before_commit(last_shared_commit, Instant::now())
            && !closing
        {
            std::thread::sleep(wait);
        }
        while !closing && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Message::Job(job)) => batch.push(job),
                Ok(Message::Close) => closing = true,
                Err(_) => break,
            }
        }
        if closing {
            // Refuse new jobs, then run the ones that made it into the channel before that.
            queue.close();
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(Message::Job(job)) => batch.push(job),
                    Ok(Message::Close) => {}
                    Err(_) => break,
                }
            }
            // Usually nothing is left over after a batch this size; if there is, run it too.
            if batch.len() == MAX_BATCH {
                closing = false;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let now = Instant::now();
        last_shared_commit = (batch.len() > 1).then_some(now);
        let fold = fold_due(cache.ingest_log_empty, last_fold, now);
        if fold {
            last_fold = now;
        }
        let committed = run_batch(&mut conn, &mut cache, &mut batch, fold);
        if committed.is_err() {
            cache.clear();
        }
        for job in batch.drain(..) {
            job.finish(&committed);
        }
    }
    if !cache.ingest_log_empty
        && let Err(e) = run_batch(&mut conn, &mut cache, &mut [], true)
    {
        tracing::warn!(error = %e, "cannot fold the ingest log at shutdown; it is folded after the next start");
    }
}

/// Runs `batch` in one transaction, and if `fold`, folds the ingest log at the end of it.
fn run_batch(conn: &mut Connection, cache: &mut WriteCache, batch: &mut [Job], fold: bool) -> Result<()> {
    // IMMEDIATE takes the write lock now, so a busy database (another process) shows up as one
    // wait here rather than as a failure in the middle of the batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rest = &mut batch[..];
    while !rest.is_empty() {
        let together = rest.iter().take_while(|job| job.repeatable()).count().max(1);
        let (now, later) = rest.split_at_mut(together);
        if now.len() == 1 || !run_together(&tx, cache, now)? {
            for job in now.iter_mut() {
                run_alone(&tx, cache, job.as_mut())?;
            }
        }
        rest = later;
    }
    if fold {
        fold_ingest_log(&tx, cache)?;
    }
    tx.commit()?;
    Ok(())
}

/// Folds the ingest log under a savepoint. A failed fold is rolled back and logged, and does
/// not fail the batch; only a rollback that fails, or SQLite rolling back the whole
/// transaction by itself (I/O error, disk full), does, since the batch's writes are gone then.
fn fold_ingest_log(tx: &Connection, cache: &mut WriteCache) -> Result<()> {
    let mut savepoint = Savepoint::new(tx)?;
    match telemetry::fold_ingest_log(&mut WriteContext { conn: &savepoint, cache }) {
        Ok(()) => savepoint.release()?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot fold the ingest log; it is kept and folded later");
            savepoint.undo()?;
        }
    }
    check_open(tx)
}

/// Runs repeatable `jobs` under one savepoint. `false` if one failed: then none of their writes
/// are kept (and the cache is cleared), and the caller runs them again one by one.
fn run_together(tx: &Connection, cache: &mut WriteCache, jobs: &mut [Job]) -> Result<bool> {
    let mut savepoint = Savepoint::new(tx)?;
    let ok = jobs.iter_mut().all(|job| job.run(&mut WriteContext { conn: &savepoint, cache }));
    if ok {
        savepoint.release()?;
    } else {
        cache.clear();
        savepoint.undo()?;
    }
    check_open(tx)?;
    Ok(ok)
}

/// Runs `job` in its own savepoint, which is rolled back if the job fails.
fn run_alone(tx: &Connection, cache: &mut WriteCache, job: &mut dyn WriteJob) -> Result<()> {
    let mut savepoint = Savepoint::new(tx)?;
    if job.run(&mut WriteContext { conn: &savepoint, cache }) {
        if let Err(e) = savepoint.release() {
            job.fail(e.clone());
            return Err(StoreError::Database(format!("a savepoint could not be released: {e}")));
        }
    } else {
        // Discard the failed job's partial writes, and what the cache learnt from them. If
        // the rollback fails the batch cannot be trusted.
        cache.clear();
        savepoint.undo()?;
    }
    check_open(tx)
}

/// Some errors (disk full, I/O) make SQLite roll back the whole transaction by itself; carrying
/// on would run the next jobs outside any transaction.
fn check_open(tx: &Connection) -> Result<()> {
    if tx.is_autocommit() {
        return Err(StoreError::Database("the transaction was rolled back by SQLite".into()));
    }
    Ok(())
}

/// A savepoint driven by cached statements (rusqlite's own parses its SQL on every use, twice
/// per job here).
struct Savepoint<'a> {
    conn: &'a Connection,
    open: bool,
}

impl<'a> Savepoint<'a> {
    fn new(conn: &'a Connection) -> Result<Savepoint<'a>> {
        conn.prepare_cached("SAVEPOINT warden_job")?.execute([])?;
        Ok(Savepoint { conn, open: true })
    }

    /// Keeps the savepoint's writes, in the enclosing transaction.
    fn release(&mut self) -> Result<()> {
        self.open = false;
        self.conn.prepare_cached("RELEASE warden_job")?.execute([])?;
        Ok(())
    }

    /// Discards the savepoint's writes.
    fn undo(&mut self) -> Result<()> {
        self.open = false;
        self.conn.prepare_cached("ROLLBACK TO warden_job")?.execute([])?;
        self.conn.prepare_cached("RELEASE warden_job")?.execute([])?;
        Ok(())
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        // Reached only when an error cut the savepoint short; the batch fails then anyway, and
        // rolling back here is best effort before the whole transaction is rolled back.
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK TO warden_job; RELEASE warden_job");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_batch_soon_after_a_shared_commit_waits_and_only_for_the_rest_of_the_interval() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // At rest, or after a lone write: commit at once.
        assert_eq!(wait_before_commit(None, now), None);
        // Under load: commits start COMMIT_INTERVAL apart.
        assert_eq!(wait_before_commit(Some(now), now), Some(COMMIT_INTERVAL));
        assert_eq!(wait_before_commit(Some(now - ms(1)), now), Some(COMMIT_INTERVAL - ms(1)));
        assert_eq!(wait_before_commit(Some(now - COMMIT_INTERVAL), now), None);
        assert_eq!(wait_before_commit(Some(now - ms(50)), now), None);
    }

    #[test]
    fn the_ingest_log_is_folded_at_most_every_interval_and_only_if_it_may_hold_rows() {
        let last_fold = Instant::now();
        let after = |d: Duration| last_fold + d;
        let ms = Duration::from_millis;
        assert!(!fold_due(false, last_fold, after(Duration::ZERO)));
        assert!(!fold_due(false, last_fold, after(FOLD_INTERVAL - ms(1))));
        assert!(fold_due(false, last_fold, after(FOLD_INTERVAL)));
        assert!(fold_due(false, last_fold, after(ms(60_000))));
        // Known to be empty: nothing to fold, however long ago the last fold was.
        assert!(!fold_due(true, last_fold, after(FOLD_INTERVAL)));
        assert!(!fold_due(true, last_fold, after(ms(60_000))));
        // A last fold after `now` (which a monotonic clock never shows) is simply not due.
        assert!(!fold_due(false, after(ms(1)), last_fold));
    }
}
