//! The checkpointer thread: copies committed pages from the WAL into the database file, off the
//! writer's path.
//!
//! By default SQLite checkpoints on the connection that commits, whenever the WAL passes 1000
//! pages: the commit that crosses the line also writes those pages into the database file and
//! fsyncs it. With ingest's large group commits that is nearly every commit, so the writer (and
//! every report waiting for its commit) waited for random writes all over a growing file. Here
//! the writer only appends to the WAL (and fsyncs it: `synchronous = FULL` still holds), and
//! this thread runs passive checkpoints on its own connection, which never block the writer.
//! SQLite starts the WAL over from the beginning once a checkpoint has caught up, so it does not
//! grow without bound while this thread keeps up.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Result, StoreError};

/// How often the WAL is checkpointed. Under full ingest load the WAL grows by a few MB in this
/// time; at rest a checkpoint finds nothing to do.
const INTERVAL: Duration = Duration::from_millis(250);

/// The WAL size (in pages) at which the writer checkpoints by itself after all, should this
/// thread fall behind or stop: a bound on the WAL, not the normal path.
pub(crate) const WRITER_FALLBACK_PAGES: u32 = 65_536;

/// Owns the thread; [`Checkpointer::stop`] ends it with a final, complete checkpoint.
pub(crate) struct Checkpointer {
    /// Set to `true` to stop; the condvar wakes the thread early.
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("warden-store-checkpoint".into())
            .spawn(move || run(&conn, &signal))
            .map_err(|e| StoreError::Database(format!("cannot start the checkpointer thread: {e}")))?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }

    /// Stops the thread after a last checkpoint, and waits for it. Blocking.
    pub(crate) fn stop(&mut self) {
        self.signal();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread would only have stopped checkpoints; the data is safe.
            let _ = thread.join();
        }
    }

    fn signal(&self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

impl Drop for Checkpointer {
    /// Tells the thread to stop without waiting for it (a drop may happen on an async thread):
    /// it finishes its last checkpoint on its own.
    fn drop(&mut self) {
        self.signal();
    }
}

fn run(conn: &Connection, stop: &(Mutex<bool>, Condvar)) {
    let (lock, wake) = stop;
    loop {
        let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = wake
            .wait_timeout_while(stopped, INTERVAL, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            break;
        }
        drop(stopped);
        // A failed checkpoint (the database is busy, an I/O error) is simply tried again at the
        // next tick; the pages stay safe in the WAL meanwhile.
        let _ = checkpoint(conn, "PASSIVE");
    }
    // The writer has committed its last batch (or is finishing it, after a plain drop): leave
    // the database file complete and the WAL empty if nothing else holds it.
    let _ = checkpoint(conn, "TRUNCATE");
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}
