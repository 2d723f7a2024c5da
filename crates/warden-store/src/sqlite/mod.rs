//! The SQLite implementation of [`Store`]: the embedded default (DESIGN.md, "Storage").
//!
//! One database file in WAL mode. Writes go to the single writer thread (see `writer`), which
//! batches them into transactions; reads run on a small pool of reader connections inside
//! `spawn_blocking`, each in one read transaction, so a read sees one consistent snapshot and
//! never waits for the writer. `synchronous = FULL`: an acknowledged write survives a power
//! loss, and batching hides the fsync (notes/rust-stack.md §4.1 measured no loss of rate).
//!
//! Durability, concretely: a write's future resolves `Ok` only after the transaction holding it
//! has committed and its WAL frames were fsynced. For ingest that means: when the server answers
//! a report on `/accepted`, the thing's ingest state and every datapoint of the report are on
//! disk ([`Store::record_report`] writes them in one job, so it is both or neither). The state
//! is appended to a log that the writer folds into the per-thing table about once a second, and
//! reads see through the log: updating the table for every report cost a WAL page per report
//! (see `telemetry`). A write that was queued but not yet committed when the process dies is
//! lost, and its caller was never told otherwise; [`SqliteStore::close`] commits everything
//! queued before the file is closed.

mod alerts;
mod checkpoint;
mod migrations;
mod mitigation;
mod profiles;
mod registry;
mod sql;
mod telemetry;
mod violations;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::mpsc;

use self::checkpoint::Checkpointer;
pub use self::migrations::{MIGRATIONS, Migration};
use self::telemetry::EncodedDatapoints;
use self::writer::{MAX_BATCH, Message, RepeatableJob, TypedJob, WriteContext};
use crate::day::UtcDay;
use crate::defender::{
    ActiveViolation, ActiveViolationFilter, AlertSubscription, AlertTopic, CustomMetric,
    DetectMitigationTask, Dimension, MitigationAction, MitigationActionUpdate, MitigationExecution,
    MitigationExecutionFilter, MitigationExecutionUpdate, MitigationTaskUpdate, NewDetectMitigationTask,
    NewMitigationAction, NewSecurityProfile, NewViolationEvent, SecurityProfile, SecurityProfileUpdate,
    SubscriptionProtocol, TaskStart, VerificationState, ViolationChange, ViolationEvent,
    ViolationEventFilter,
};
use crate::error::{Result, StoreError};
use crate::model::{
    AttributeUpdate, Certificate, CertificateStatus, Datapoint, DatapointQuery, IngestState, MetricDatum,
    NewCertificate, NewThingGroup, Policy, Thing, ThingFilter, ThingGroup, ThingGroupFilter,
    ThingGroupUpdate,
};
use crate::names;
use crate::page::{Page, PageRequest};
use crate::store::Store;

/// Jobs that may wait for the writer. Bounded so that a writer that falls behind slows its
/// callers down (they wait in `send`) instead of growing memory.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Reader connections kept open between reads; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 4;

/// How long a connection waits for a lock held by another process (e.g. `sqlite3` on the same
/// file, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Statements each connection keeps prepared: the registry and Detect have about a hundred, the
/// filtered lists one per combination of filters in use, plus one insert and one query per
/// recently used day table. A statement that falls out is prepared again when next used.
const STATEMENT_CACHE: usize = 256;

/// A store in one SQLite file.
///
/// Owns the writer thread through `jobs`: dropping the store closes the channel, and the thread
/// then runs and commits whatever is still queued and exits on its own. Every write that was
/// acknowledged is already committed, so a plain drop loses nothing acknowledged, but the
/// process may exit before the thread has committed what was still queued.
/// [`SqliteStore::close`] commits the queue and waits until the thread is gone (and the file is
/// closed), which is what a shutdown or a test that reopens the file wants.
pub struct SqliteStore {
    path: PathBuf,
    /// The writer thread's queue; the only sender, so dropping it stops the thread. `close`
    /// sends `Message::Close` through it instead, because a shared store cannot be dropped on
    /// demand.
    jobs: mpsc::Sender<Message>,
    /// Taken and joined by `close`; detached (but still finishing its queue) on a plain drop. A
    /// std mutex: held only to take the handle.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Checkpoints the WAL in the background (see `checkpoint`); stopped by `close` after the
    /// writer, and told to stop on a plain drop.
    checkpointer: Mutex<Option<Checkpointer>>,
    readers: Arc<Readers>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies the migrations it lacks and
    /// starts the writer thread. Blocking: call it at startup, not on a busy runtime thread.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_owned();
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!("{} cannot use WAL mode (got {mode})", path.display())));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Checkpoints are the checkpointer thread's; the writer only steps in if it falls behind.
        conn.pragma_update(None, "wal_autocheckpoint", checkpoint::WRITER_FALLBACK_PAGES)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // The writer runs each batch's jobs under savepoints, whose subjournal (the pages as
        // they were before) spills to a temporary file beyond 64 KiB: a file opened, written
        // and thrown away per batch. In memory it costs a few MB at most for a full batch.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrations::migrate(&mut conn, MIGRATIONS)?;

        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let writer = std::thread::Builder::new()
            .name("warden-store-writer".into())
            .spawn(move || writer::run(conn, queue))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = Checkpointer::start(&path)?;
        let readers = Arc::new(Readers { path: path.clone(), idle: Mutex::new(Vec::new()) });
        Ok(SqliteStore {
            path,
            jobs,
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some(checkpointer)),
            readers,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many of [`MIGRATIONS`] the database has had.
    pub async fn schema_version(&self) -> Result<usize> {
        self.read(|tx| migrations::schema_version(tx)).await
    }

    /// Stops the writer after it has committed everything queued, and waits for it; the idle
    /// reader connections are closed too. Takes `&self` so that a store shared as
    /// `Arc<dyn Store>` can be closed at shutdown: afterwards, writes fail with "the store's
    /// writer thread has stopped" (reads still work, on fresh connections). Closing again
    /// returns at once.
    pub async fn close(&self) -> Result<()> {
        let Some(writer) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return Ok(());
        };
        // A send error means the thread is already gone (it panicked); the join says so.
        let _ = self.jobs.send(Message::Close).await;
        let checkpointer = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner).take();
        let joined = tokio::task::spawn_blocking(move || {
            let joined = writer.join();
            // After the writer, so that the last checkpoint includes its last batch.
            if let Some(mut checkpointer) = checkpointer {
                checkpointer.stop();
            }
            joined
        })
        .await
        .map_err(|e| StoreError::Database(format!("cannot wait for the writer: {e}")))?;
        self.readers.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        joined.map_err(|_| StoreError::Database("the writer thread panicked".into()))
    }

    /// Folds the ingest log into the ingest state table now, as the writer otherwise does about
    /// once a second under ingest: for tests that check reads are the same on either side of a
    /// fold.
    #[doc(hidden)]
    pub async fn fold_ingest_log(&self) -> Result<()> {
        self.write_with(telemetry::fold_ingest_log).await
    }

    /// Runs `work` in a read transaction on a reader connection, off the async threads.
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        match tokio::task::spawn_blocking(move || readers.read(work)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Database(format!("read cancelled: {e}"))),
        }
    }

    /// Queues `work` for the writer thread and waits until its batch is committed.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_with(move |cx| work(cx.conn)).await
    }

    /// [`SqliteStore::write`] for work that also uses the writer's cache.
    async fn write_with<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteContext<'_>) -> Result<T> + Send + 'static,
    {
        let (job, answer) = TypedJob::boxed(work);
        self.jobs.send(Message::Job(job)).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// [`SqliteStore::write_with`] for work that can run again after a rollback, which lets the
    /// writer run many such jobs under one savepoint (see `writer`).
    async fn write_repeatable<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut WriteContext<'_>) -> Result<T> + Send + 'static,
    {
        let (job, answer) = RepeatableJob::boxed(work);
        self.jobs.send(Message::Job(job)).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Database("the store's writer thread has stopped".into())
}

/// A random (version 4) UUID for the public ids of things, groups, mitigation actions and alert
/// subscriptions.
fn new_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| StoreError::Database(format!("no randomness for a new id: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
}

/// Reader connections. A `std` mutex because it is held only to push or pop a connection,
/// never across an await or a query.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Read-write flags are needed to use the WAL index; query_only guarantees reads.
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn read<T>(&self, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        // A poisoned lock only means another reader panicked while pushing or popping; the
        // Vec itself is intact.
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = conn.transaction().map_err(StoreError::from).and_then(|tx| work(&tx));
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

fn check_expected_version(expected: Option<u64>) -> Result<()> {
    match expected {
        Some(v) if i64::try_from(v).is_err() => {
            Err(StoreError::invalid(format!("version {v} is out of range")))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_thing(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Thing> {
        names::check_thing_name(name)?;
        names::check_attribute_names(attributes.keys())?;
        let (name, id) = (name.to_owned(), new_id()?);
        self.write(move |c| registry::create_thing(c, &name, &id, &attributes, now_ms)).await
    }

    async fn describe_thing(&self, name: &str) -> Result<Thing> {
        names::check_thing_name(name)?;
        let name = name.to_owned();
        self.read(move |tx| registry::describe_thing(tx, &name)).await
    }

    async fn update_thing(
        &self,
        name: &str,
        attributes: AttributeUpdate,
        expected_version: Option<u64>,
    ) -> Result<Thing> {
        names::check_thing_name(name)?;
        names::check_attribute_names(attributes.attributes.keys())?;
        check_expected_version(expected_version)?;
        let name = name.to_owned();
        self.write(move |c| registry::update_thing(c, &name, attributes, expected_version)).await
    }

    async fn delete_thing(&self, name: &str, expected_version: Option<u64>) -> Result<()> {
        names::check_thing_name(name)?;
        check_expected_version(expected_version)?;
        let name = name.to_owned();
        self.write(move |c| registry::delete_thing(c, &name, expected_version)).await
    }

    async fn list_things(&self, filter: &ThingFilter, page: &PageRequest) -> Result<Page<Thing>> {
        if filter.attribute_value.is_some() && filter.attribute_name.is_none() {
            return Err(StoreError::invalid("an attribute value filter needs an attribute name"));
        }
        let (limit, cursor, filter) = (page.limit()?, page.cursor()?, filter.clone());
        self.read(move |tx| registry::list_things(tx, &filter, cursor, limit)).await
    }

    async fn create_thing_group(&self, group: NewThingGroup, now_ms: i64) -> Result<ThingGroup> {
        names::check_group_name(&group.name)?;
        if let Some(parent) = &group.parent {
            names::check_group_name(parent)?;
            if *parent == group.name {
                return Err(StoreError::invalid(format!(
                    "thing group {} cannot be its own parent",
                    group.name
                )));
            }
        }
        names::check_attribute_names(group.attributes.keys())?;
        let id = new_id()?;
        self.write(move |c| registry::create_thing_group(c, &group, &id, now_ms)).await
    }

    async fn describe_thing_group(&self, name: &str) -> Result<ThingGroup> {
        names::check_group_name(name)?;
        let name = name.to_owned();
        self.read(move |tx| registry::describe_thing_group(tx, &name)).await
    }

    async fn update_thing_group(
        &self,
        name: &str,
        update: ThingGroupUpdate,
        expected_version: Option<u64>,
    ) -> Result<ThingGroup> {
        names::check_group_name(name)?;
        if let Some(change) = &update.attributes {
            names::check_attribute_names(change.attributes.keys())?;
        }
        check_expected_version(expected_version)?;
        let name = name.to_owned();
        self.write(move |c| registry::update_thing_group(c, &name, update, expected_version)).await
    }

    async fn delete_thing_group(&self, name: &str, expected_version: Option<u64>) -> Result<()> {
        names::check_group_name(name)?;
        check_expected_version(expected_version)?;
        let name = name.to_owned();
        self.write(move |c| registry::delete_thing_group(c, &name, expected_version)).await
    }

    async fn list_thing_groups(
        &self,
        filter: &ThingGroupFilter,
        page: &PageRequest,
    ) -> Result<Page<ThingGroup>> {
        if let Some(parent) = &filter.parent {
            names::check_group_name(parent)?;
        }
        let (limit, cursor, filter) = (page.limit()?, page.cursor()?, filter.clone());
        self.read(move |tx| registry::list_thing_groups(tx, &filter, cursor, limit)).await
    }

    async fn add_thing_to_group(&self, group: &str, thing: &str) -> Result<()> {
        names::check_group_name(group)?;
        names::check_thing_name(thing)?;
        let (group, thing) = (group.to_owned(), thing.to_owned());
        self.write(move |c| registry::add_thing_to_group(c, &group, &thing)).await
    }

    async fn remove_thing_from_group(&self, group: &str, thing: &str) -> Result<()> {
        names::check_group_name(group)?;
        names::check_thing_name(thing)?;
        let (group, thing) = (group.to_owned(), thing.to_owned());
        self.write(move |c| registry::remove_thing_from_group(c, &group, &thing)).await
    }

    async fn list_things_in_group(
        &self,
        group: &str,
        recursive: bool,
        page: &PageRequest,
    ) -> Result<Page<String>> {
        names::check_group_name(group)?;
        let (limit, cursor, group) = (page.limit()?, page.cursor()?, group.to_owned());
        self.read(move |tx| registry::list_things_in_group(tx, &group, recursive, cursor, limit)).await
    }

    async fn list_groups_for_thing(&self, thing: &str, page: &PageRequest) -> Result<Page<String>> {
        names::check_thing_name(thing)?;
        let (limit, cursor, thing) = (page.limit()?, page.cursor()?, thing.to_owned());
        self.read(move |tx| registry::list_groups_for_thing(tx, &thing, cursor, limit)).await
    }

    async fn effective_groups_for_thing(&self, thing: &str) -> Result<Vec<String>> {
        names::check_thing_name(thing)?;
        let thing = thing.to_owned();
        self.read(move |tx| registry::effective_groups_for_thing(tx, &thing)).await
    }

    async fn create_certificate(&self, mut certificate: NewCertificate) -> Result<Certificate> {
        certificate.certificate_id = names::normalize_certificate_id(&certificate.certificate_id)?;
        if let Some(ca) = &certificate.ca_certificate_id {
            certificate.ca_certificate_id = Some(names::normalize_certificate_id(ca)?);
        }
        self.write(move |c| registry::create_certificate(c, &certificate)).await
    }

    async fn describe_certificate(&self, certificate_id: &str) -> Result<Certificate> {
        let id = names::normalize_certificate_id(certificate_id)?;
        self.read(move |tx| registry::describe_certificate(tx, &id)).await
    }

    async fn update_certificate_status(
        &self,
        certificate_id: &str,
        status: CertificateStatus,
        now_ms: i64,
    ) -> Result<Certificate> {
        let id = names::normalize_certificate_id(certificate_id)?;
        self.write(move |c| registry::update_certificate_status(c, &id, status, now_ms)).await
    }

    async fn delete_certificate(&self, certificate_id: &str, policy_target: &str) -> Result<()> {
        let id = names::normalize_certificate_id(certificate_id)?;
        let target = policy_target.to_owned();
        self.write(move |c| registry::delete_certificate(c, &id, &target)).await
    }

    async fn list_certificates(&self, page: &PageRequest) -> Result<Page<Certificate>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| registry::list_certificates(tx, cursor, limit)).await
    }

    async fn attach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<()> {
        names::check_thing_name(thing)?;
        let (thing, id) = (thing.to_owned(), names::normalize_certificate_id(certificate_id)?);
        self.write(move |c| registry::attach_thing_principal(c, &thing, &id)).await
    }

    async fn detach_thing_principal(&self, thing: &str, certificate_id: &str) -> Result<()> {
        names::check_thing_name(thing)?;
        let (thing, id) = (thing.to_owned(), names::normalize_certificate_id(certificate_id)?);
        self.write(move |c| registry::detach_thing_principal(c, &thing, &id)).await
    }

    async fn list_thing_principals(&self, thing: &str, page: &PageRequest) -> Result<Page<String>> {
        names::check_thing_name(thing)?;
        let (limit, cursor, thing) = (page.limit()?, page.cursor()?, thing.to_owned());
        self.read(move |tx| registry::list_thing_principals(tx, &thing, cursor, limit)).await
    }

    async fn list_principal_things(&self, certificate_id: &str, page: &PageRequest) -> Result<Page<String>> {
        let id = names::normalize_certificate_id(certificate_id)?;
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| registry::list_principal_things(tx, &id, cursor, limit)).await
    }

    async fn create_policy(&self, name: &str, document: &str, now_ms: i64) -> Result<Policy> {
        names::check_policy_name(name)?;
        serde_json::from_str::<serde_json::Value>(document)
            .map_err(|e| StoreError::invalid(format!("policy document is not JSON: {e}")))?;
        let (name, document) = (name.to_owned(), document.to_owned());
        self.write(move |c| registry::create_policy(c, &name, &document, now_ms)).await
    }

    async fn get_policy(&self, name: &str) -> Result<Policy> {
        names::check_policy_name(name)?;
        let name = name.to_owned();
        self.read(move |tx| registry::get_policy(tx, &name)).await
    }

    async fn delete_policy(&self, name: &str) -> Result<()> {
        names::check_policy_name(name)?;
        let name = name.to_owned();
        self.write(move |c| registry::delete_policy(c, &name)).await
    }

    async fn list_policies(&self, page: &PageRequest) -> Result<Page<Policy>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| registry::list_policies(tx, cursor, limit)).await
    }

    async fn attach_policy(&self, policy: &str, target: &str) -> Result<()> {
        names::check_policy_name(policy)?;
        check_target(target)?;
        let (policy, target) = (policy.to_owned(), target.to_owned());
        self.write(move |c| registry::attach_policy(c, &policy, &target)).await
    }

    async fn detach_policy(&self, policy: &str, target: &str) -> Result<()> {
        names::check_policy_name(policy)?;
        check_target(target)?;
        let (policy, target) = (policy.to_owned(), target.to_owned());
        self.write(move |c| registry::detach_policy(c, &policy, &target)).await
    }

    async fn list_attached_policies(&self, target: &str, page: &PageRequest) -> Result<Page<String>> {
        check_target(target)?;
        let (limit, cursor, target) = (page.limit()?, page.cursor()?, target.to_owned());
        self.read(move |tx| registry::list_attached_policies(tx, &target, cursor, limit)).await
    }

    async fn list_targets_for_policy(&self, policy: &str, page: &PageRequest) -> Result<Page<String>> {
        names::check_policy_name(policy)?;
        let (limit, cursor, policy) = (page.limit()?, page.cursor()?, policy.to_owned());
        self.read(move |tx| registry::list_targets_for_policy(tx, &policy, cursor, limit)).await
    }

    async fn policies_for_targets(&self, targets: &[String]) -> Result<Vec<Policy>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let targets = targets.to_vec();
        self.read(move |tx| registry::policies_for_targets(tx, &targets)).await
    }

    async fn ingest_state(&self, thing: &str) -> Result<Option<IngestState>> {
        names::check_thing_name(thing)?;
        let thing = thing.to_owned();
        self.read(move |tx| telemetry::ingest_state(tx, &thing)).await
    }

    async fn all_ingest_states(&self) -> Result<Vec<(String, IngestState)>> {
        self.read(|tx| telemetry::all_ingest_states(tx)).await
    }

    async fn ingest_states(&self, things: &[String]) -> Result<Vec<Option<IngestState>>> {
        for thing in things {
            names::check_thing_name(thing)?;
        }
        let things = things.to_vec();
        self.read(move |tx| telemetry::ingest_states(tx, &things)).await
    }

    async fn set_ingest_state(&self, thing: &str, state: IngestState) -> Result<()> {
        names::check_thing_name(thing)?;
        check_ingest_state(state)?;
        let thing = thing.to_owned();
        self.write(move |c| telemetry::set_ingest_state(c, &thing, state)).await
    }

    async fn append_datapoints(&self, datapoints: Vec<Datapoint>) -> Result<()> {
        if datapoints.is_empty() {
            return Ok(());
        }
        let encoded = EncodedDatapoints::encode(datapoints)?;
        self.write_repeatable(move |cx| telemetry::append_datapoints(cx, &encoded)).await
    }

    async fn record_report(&self, thing: &str, state: IngestState, datapoints: Vec<Datapoint>) -> Result<()> {
        names::check_thing_name(thing)?;
        check_ingest_state(state)?;
        let encoded = EncodedDatapoints::encode(datapoints)?;
        let thing = thing.to_owned();
        self.write_repeatable(move |cx| telemetry::record_report(cx, &thing, state, &encoded)).await
    }

    async fn query_datapoints(
        &self,
        query: &DatapointQuery,
        page: &PageRequest,
    ) -> Result<Page<MetricDatum>> {
        names::check_thing_name(&query.thing)?;
        names::check_metric_name("metric", &query.metric)?;
        if query.start_ms > query.end_ms {
            return Err(StoreError::invalid(format!(
                "the query starts ({} ms) after it ends ({} ms)",
                query.start_ms, query.end_ms
            )));
        }
        let (limit, cursor, query) = (page.limit()?, page.cursor()?, query.clone());
        self.read(move |tx| telemetry::query_datapoints(tx, &query, cursor, limit)).await
    }

    async fn drop_datapoints_before(&self, day: UtcDay) -> Result<Vec<UtcDay>> {
        self.write_with(move |cx| telemetry::drop_datapoints_before(cx, day)).await
    }

    async fn create_security_profile(
        &self,
        mut profile: NewSecurityProfile,
        now_ms: i64,
    ) -> Result<SecurityProfile> {
        names::check_detect_name("security profile", &profile.name)?;
        check_profile_document(&profile.document)?;
        profile.description = non_empty(profile.description.as_deref());
        self.write(move |c| profiles::create_security_profile(c, &profile, now_ms)).await
    }

    async fn describe_security_profile(&self, name: &str) -> Result<SecurityProfile> {
        names::check_detect_name("security profile", name)?;
        let name = name.to_owned();
        self.read(move |tx| profiles::describe_security_profile(tx, &name)).await
    }

    async fn update_security_profile(
        &self,
        name: &str,
        mut update: SecurityProfileUpdate,
        expected_version: Option<u64>,
        now_ms: i64,
    ) -> Result<SecurityProfile> {
        names::check_detect_name("security profile", name)?;
        check_profile_document(&update.document)?;
        check_expected_version(expected_version)?;
        update.description = non_empty(update.description.as_deref());
        let name = name.to_owned();
        self.write(move |c| profiles::update_security_profile(c, &name, &update, expected_version, now_ms))
            .await
    }

    async fn delete_security_profile(&self, name: &str, expected_version: Option<u64>) -> Result<()> {
        names::check_detect_name("security profile", name)?;
        check_expected_version(expected_version)?;
        let name = name.to_owned();
        self.write(move |c| profiles::delete_security_profile(c, &name, expected_version)).await
    }

    async fn list_security_profiles(&self, page: &PageRequest) -> Result<Page<SecurityProfile>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| profiles::list_security_profiles(tx, cursor, limit)).await
    }

    async fn attach_security_profile(&self, profile: &str, target: &str) -> Result<()> {
        names::check_detect_name("security profile", profile)?;
        names::check_not_empty("a security profile target", target)?;
        let (profile, target) = (profile.to_owned(), target.to_owned());
        self.write(move |c| profiles::attach_security_profile(c, &profile, &target)).await
    }

    async fn detach_security_profile(&self, profile: &str, target: &str) -> Result<()> {
        names::check_detect_name("security profile", profile)?;
        names::check_not_empty("a security profile target", target)?;
        let (profile, target) = (profile.to_owned(), target.to_owned());
        self.write(move |c| profiles::detach_security_profile(c, &profile, &target)).await
    }

    async fn list_targets_for_security_profile(
        &self,
        profile: &str,
        page: &PageRequest,
    ) -> Result<Page<String>> {
        names::check_detect_name("security profile", profile)?;
        let (limit, cursor, profile) = (page.limit()?, page.cursor()?, profile.to_owned());
        self.read(move |tx| profiles::list_targets_for_security_profile(tx, &profile, cursor, limit)).await
    }

    async fn list_security_profiles_for_target(
        &self,
        target: &str,
        page: &PageRequest,
    ) -> Result<Page<String>> {
        names::check_not_empty("a security profile target", target)?;
        let (limit, cursor, target) = (page.limit()?, page.cursor()?, target.to_owned());
        self.read(move |tx| profiles::list_security_profiles_for_target(tx, &target, cursor, limit)).await
    }

    async fn security_profiles_for_targets(&self, targets: &[String]) -> Result<Vec<String>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let targets = targets.to_vec();
        self.read(move |tx| profiles::security_profiles_for_targets(tx, &targets)).await
    }

    async fn create_custom_metric(
        &self,
        name: &str,
        metric_type: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<CustomMetric> {
        names::check_detect_name("custom metric", name)?;
        names::check_not_empty("a custom metric type", metric_type)?;
        let (name, metric_type, display_name) =
            (name.to_owned(), metric_type.to_owned(), non_empty(display_name));
        self.write(move |c| {
            profiles::create_custom_metric(c, &name, &metric_type, display_name.as_deref(), now_ms)
        })
        .await
    }

    async fn describe_custom_metric(&self, name: &str) -> Result<CustomMetric> {
        names::check_detect_name("custom metric", name)?;
        let name = name.to_owned();
        self.read(move |tx| profiles::describe_custom_metric(tx, &name)).await
    }

    async fn update_custom_metric(
        &self,
        name: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<CustomMetric> {
        names::check_detect_name("custom metric", name)?;
        let (name, display_name) = (name.to_owned(), non_empty(display_name));
        self.write(move |c| profiles::update_custom_metric(c, &name, display_name.as_deref(), now_ms)).await
    }

    async fn delete_custom_metric(&self, name: &str) -> Result<()> {
        names::check_detect_name("custom metric", name)?;
        let name = name.to_owned();
        self.write(move |c| profiles::delete_custom_metric(c, &name)).await
    }

    async fn list_custom_metrics(&self, page: &PageRequest) -> Result<Page<CustomMetric>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| profiles::list_custom_metrics(tx, cursor, limit)).await
    }

    async fn create_dimension(
        &self,
        name: &str,
        dimension_type: &str,
        string_values: Vec<String>,
        now_ms: i64,
    ) -> Result<Dimension> {
        names::check_detect_name("dimension", name)?;
        names::check_not_empty("a dimension type", dimension_type)?;
        check_dimension_values(&string_values)?;
        let (name, dimension_type) = (name.to_owned(), dimension_type.to_owned());
        self.write(move |c| profiles::create_dimension(c, &name, &dimension_type, &string_values, now_ms))
            .await
    }

    async fn describe_dimension(&self, name: &str) -> Result<Dimension> {
        names::check_detect_name("dimension", name)?;
        let name = name.to_owned();
        self.read(move |tx| profiles::describe_dimension(tx, &name)).await
    }

    async fn update_dimension(
        &self,
        name: &str,
        string_values: Vec<String>,
        now_ms: i64,
    ) -> Result<Dimension> {
        names::check_detect_name("dimension", name)?;
        check_dimension_values(&string_values)?;
        let name = name.to_owned();
        self.write(move |c| profiles::update_dimension(c, &name, &string_values, now_ms)).await
    }

    async fn delete_dimension(&self, name: &str) -> Result<()> {
        names::check_detect_name("dimension", name)?;
        let name = name.to_owned();
        self.write(move |c| profiles::delete_dimension(c, &name)).await
    }

    async fn list_dimensions(&self, page: &PageRequest) -> Result<Page<Dimension>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| profiles::list_dimensions(tx, cursor, limit)).await
    }

    async fn record_violation_events(&self, changes: Vec<ViolationChange>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        changes.iter().try_for_each(check_violation_change)?;
        // One job, so one savepoint: the whole evaluation is recorded or none of it.
        self.write(move |c| violations::record(c, &changes)).await
    }

    async fn describe_active_violation(&self, violation_id: &str) -> Result<ActiveViolation> {
        names::check_violation_id(violation_id)?;
        let id = violation_id.to_owned();
        self.read(move |tx| violations::describe_active(tx, &id)).await
    }

    async fn list_active_violations(
        &self,
        filter: &ActiveViolationFilter,
        page: &PageRequest,
    ) -> Result<Page<ActiveViolation>> {
        if let Some(thing) = &filter.thing {
            names::check_thing_name(thing)?;
        }
        check_behavior_filter(&filter.security_profile, &filter.behavior)?;
        let (limit, cursor, filter) = (page.limit()?, page.cursor()?, filter.clone());
        self.read(move |tx| violations::list_active(tx, &filter, cursor, limit)).await
    }

    async fn list_violation_events(
        &self,
        filter: &ViolationEventFilter,
        page: &PageRequest,
    ) -> Result<Page<ViolationEvent>> {
        check_time_range(filter.start_ms, filter.end_ms)?;
        if let Some(thing) = &filter.thing {
            names::check_thing_name(thing)?;
        }
        if let Some(id) = &filter.violation_id {
            names::check_violation_id(id)?;
        }
        check_behavior_filter(&filter.security_profile, &filter.behavior)?;
        let (limit, cursor, filter) = (page.limit()?, page.cursor()?, filter.clone());
        self.read(move |tx| violations::list_events(tx, &filter, cursor, limit)).await
    }

    async fn put_verification_state(
        &self,
        violation_id: &str,
        state: VerificationState,
        description: Option<&str>,
    ) -> Result<()> {
        names::check_violation_id(violation_id)?;
        let (id, description) = (violation_id.to_owned(), non_empty(description));
        self.write(move |c| violations::put_verification_state(c, &id, state, description.as_deref())).await
    }

    async fn drop_violation_events_before(&self, before_ms: i64) -> Result<u64> {
        self.write(move |c| violations::drop_events_before(c, before_ms)).await
    }

    async fn create_mitigation_action(
        &self,
        action: NewMitigationAction,
        now_ms: i64,
    ) -> Result<MitigationAction> {
        names::check_action_name("mitigation action name", &action.name)?;
        names::check_not_empty("a mitigation action type", &action.action_type)?;
        names::check_json("mitigation action parameters", &action.params)?;
        names::check_not_empty("a role ARN", &action.role_arn)?;
        let id = new_id()?;
        self.write(move |c| mitigation::create_action(c, &action, &id, now_ms)).await
    }

    async fn describe_mitigation_action(&self, name: &str) -> Result<MitigationAction> {
        names::check_action_name("mitigation action name", name)?;
        let name = name.to_owned();
        self.read(move |tx| mitigation::describe_action(tx, &name)).await
    }

    async fn update_mitigation_action(
        &self,
        name: &str,
        update: MitigationActionUpdate,
        now_ms: i64,
    ) -> Result<MitigationAction> {
        names::check_action_name("mitigation action name", name)?;
        if let Some(action_type) = &update.action_type {
            names::check_not_empty("a mitigation action type", action_type)?;
        }
        if let Some(params) = &update.params {
            names::check_json("mitigation action parameters", params)?;
        }
        if let Some(role_arn) = &update.role_arn {
            names::check_not_empty("a role ARN", role_arn)?;
        }
        let name = name.to_owned();
        self.write(move |c| mitigation::update_action(c, &name, &update, now_ms)).await
    }

    async fn delete_mitigation_action(&self, name: &str) -> Result<()> {
        names::check_action_name("mitigation action name", name)?;
        let name = name.to_owned();
        self.write(move |c| mitigation::delete_action(c, &name)).await
    }

    async fn list_mitigation_actions(
        &self,
        action_type: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<MitigationAction>> {
        let (limit, cursor, action_type) = (page.limit()?, page.cursor()?, action_type.map(str::to_owned));
        self.read(move |tx| mitigation::list_actions(tx, action_type.as_deref(), cursor, limit)).await
    }

    async fn start_detect_mitigation_task(
        &self,
        task: NewDetectMitigationTask,
        now_ms: i64,
    ) -> Result<TaskStart> {
        check_task(&task)?;
        let actions = serde_json::to_string(&task.actions)
            .map_err(|e| StoreError::Database(format!("cannot encode the task's actions: {e}")))?;
        self.write(move |c| mitigation::start_task(c, &task, &actions, now_ms)).await
    }

    async fn describe_detect_mitigation_task(&self, task_id: &str) -> Result<DetectMitigationTask> {
        names::check_action_name("task id", task_id)?;
        let task_id = task_id.to_owned();
        self.read(move |tx| mitigation::describe_task(tx, &task_id)).await
    }

    async fn update_detect_mitigation_task(
        &self,
        task_id: &str,
        update: MitigationTaskUpdate,
    ) -> Result<DetectMitigationTask> {
        names::check_action_name("task id", task_id)?;
        let task_id = task_id.to_owned();
        self.write(move |c| mitigation::update_task(c, &task_id, &update)).await
    }

    async fn list_detect_mitigation_tasks(
        &self,
        start_ms: i64,
        end_ms: i64,
        page: &PageRequest,
    ) -> Result<Page<DetectMitigationTask>> {
        check_time_range(start_ms, end_ms)?;
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| mitigation::list_tasks(tx, start_ms, end_ms, cursor, limit)).await
    }

    async fn append_mitigation_execution(&self, execution: MitigationExecution) -> Result<()> {
        check_execution_key(&execution.task_id, &execution.violation_id, &execution.action_name)?;
        names::check_thing_name(&execution.thing)?;
        self.write(move |c| mitigation::append_execution(c, &execution)).await
    }

    async fn update_mitigation_execution(
        &self,
        task_id: &str,
        violation_id: &str,
        action_name: &str,
        update: MitigationExecutionUpdate,
    ) -> Result<MitigationExecution> {
        check_execution_key(task_id, violation_id, action_name)?;
        let key = (task_id.to_owned(), violation_id.to_owned(), action_name.to_owned());
        self.write(move |c| mitigation::update_execution(c, &key.0, &key.1, &key.2, &update)).await
    }

    async fn list_mitigation_executions(
        &self,
        filter: &MitigationExecutionFilter,
        page: &PageRequest,
    ) -> Result<Page<MitigationExecution>> {
        if let Some(task_id) = &filter.task_id {
            names::check_action_name("task id", task_id)?;
        }
        if let Some(id) = &filter.violation_id {
            names::check_violation_id(id)?;
        }
        if let Some(thing) = &filter.thing {
            names::check_thing_name(thing)?;
        }
        if let (Some(start), Some(end)) = (filter.start_ms, filter.end_ms) {
            check_time_range(start, end)?;
        }
        let (limit, cursor, filter) = (page.limit()?, page.cursor()?, filter.clone());
        self.read(move |tx| mitigation::list_executions(tx, &filter, cursor, limit)).await
    }

    async fn create_alert_topic(&self, name: &str, now_ms: i64) -> Result<AlertTopic> {
        names::check_topic_name(name)?;
        let name = name.to_owned();
        self.write(move |c| alerts::create_topic(c, &name, now_ms)).await
    }

    async fn describe_alert_topic(&self, name: &str) -> Result<AlertTopic> {
        names::check_topic_name(name)?;
        let name = name.to_owned();
        self.read(move |tx| alerts::describe_topic(tx, &name)).await
    }

    async fn delete_alert_topic(&self, name: &str) -> Result<()> {
        names::check_topic_name(name)?;
        let name = name.to_owned();
        self.write(move |c| alerts::delete_topic(c, &name)).await
    }

    async fn list_alert_topics(&self, page: &PageRequest) -> Result<Page<AlertTopic>> {
        let (limit, cursor) = (page.limit()?, page.cursor()?);
        self.read(move |tx| alerts::list_topics(tx, cursor, limit)).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        protocol: SubscriptionProtocol,
        endpoint: &str,
        now_ms: i64,
    ) -> Result<AlertSubscription> {
        names::check_topic_name(topic)?;
        names::check_not_empty("a subscription endpoint", endpoint)?;
        let (topic, endpoint, id) = (topic.to_owned(), endpoint.to_owned(), new_id()?);
        self.write(move |c| alerts::subscribe(c, &topic, protocol, &endpoint, &id, now_ms)).await
    }

    async fn unsubscribe(&self, subscription_id: &str) -> Result<()> {
        names::check_not_empty("a subscription id", subscription_id)?;
        let id = subscription_id.to_owned();
        self.write(move |c| alerts::unsubscribe(c, &id)).await
    }

    async fn list_subscriptions(&self, topic: &str, page: &PageRequest) -> Result<Page<AlertSubscription>> {
        names::check_topic_name(topic)?;
        let (limit, cursor, topic) = (page.limit()?, page.cursor()?, topic.to_owned());
        self.read(move |tx| alerts::list_subscriptions(tx, &topic, cursor, limit)).await
    }

    async fn record_delivery(
        &self,
        subscription_id: &str,
        ok: bool,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        names::check_not_empty("a subscription id", subscription_id)?;
        // A failure always leaves an error behind, so `last_error` tells a failing subscription.
        let error = (!ok).then(|| non_empty(error).unwrap_or_else(|| "delivery failed".to_owned()));
        let id = subscription_id.to_owned();
        self.write(move |c| alerts::record_delivery(c, &id, ok, error.as_deref(), now_ms)).await
    }
}

fn check_ingest_state(state: IngestState) -> Result<()> {
    if i64::try_from(state.last_report_id).is_err() {
        return Err(StoreError::invalid(format!(
            "report id {} is larger than the store keeps (2^63 - 1)",
            state.last_report_id
        )));
    }
    Ok(())
}

fn check_target(target: &str) -> Result<()> {
    if target.is_empty() { Err(StoreError::invalid("a policy target must not be empty")) } else { Ok(()) }
}

/// `Some("")` means "no description" or "no display name", as `None` does.
fn non_empty(text: Option<&str>) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(str::to_owned)
}

fn check_time_range(start_ms: i64, end_ms: i64) -> Result<()> {
    if start_ms > end_ms {
        return Err(StoreError::invalid(format!(
            "the time range starts ({start_ms} ms) after it ends ({end_ms} ms)"
        )));
    }
    Ok(())
}

fn check_profile_document(document: &str) -> Result<()> {
    names::check_json("security profile document", document)
}

fn check_dimension_values(values: &[String]) -> Result<()> {
    if values.is_empty() {
        return Err(StoreError::invalid("a dimension needs at least one value"));
    }
    Ok(())
}

/// A behavior filter names a behavior of one profile: behavior names are unique only there.
fn check_behavior_filter(profile: &Option<String>, behavior: &Option<String>) -> Result<()> {
    if let Some(profile) = profile {
        names::check_detect_name("security profile", profile)?;
    }
    if let Some(behavior) = behavior {
        if profile.is_none() {
            return Err(StoreError::invalid("a behavior filter needs a security profile filter"));
        }
        names::check_detect_name("behavior", behavior)?;
    }
    Ok(())
}

fn check_violation_event(event: &NewViolationEvent) -> Result<()> {
    names::check_violation_id(&event.violation_id)?;
    names::check_thing_name(&event.thing)?;
    names::check_detect_name("security profile", &event.security_profile)?;
    names::check_detect_name("behavior", &event.behavior)?;
    names::check_json("behavior", &event.behavior_json)?;
    names::check_json("metric value", &event.metric_value)
}

fn check_violation_change(change: &ViolationChange) -> Result<()> {
    match change {
        ViolationChange::Event(event) => check_violation_event(event),
        ViolationChange::Update(update) => {
            names::check_violation_id(&update.violation_id)?;
            names::check_json("behavior", &update.behavior_json)?;
            names::check_json("metric value", &update.last_violation_value)
        }
    }
}

fn check_task(task: &NewDetectMitigationTask) -> Result<()> {
    names::check_action_name("task id", &task.task_id)?;
    names::check_client_request_token(&task.client_request_token)?;
    names::check_json("task target", &task.target)?;
    if task.actions.is_empty() {
        return Err(StoreError::invalid("a mitigation task needs at least one action"));
    }
    for action in &task.actions {
        names::check_action_name("mitigation action name", action)?;
    }
    if let (Some(start), Some(end)) = (task.violation_start_ms, task.violation_end_ms) {
        check_time_range(start, end)?;
    }
    Ok(())
}

fn check_execution_key(task_id: &str, violation_id: &str, action_name: &str) -> Result<()> {
    names::check_action_name("task id", task_id)?;
    names::check_violation_id(violation_id)?;
    names::check_action_name("mitigation action name", action_name)
}
