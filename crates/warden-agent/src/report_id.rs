//! Report ids that strictly increase, even across restarts and clock steps.
//!
//! AWS recommends epoch seconds and drops a report whose id is not greater than the last one, so
//! a clock stepped backwards (NTP after boot on a device without RTC) or a quick restart would
//! silently lose reports. The id is `max(now, last + 1)` and `last` is kept in a small state
//! file, replaced atomically, so a crash cannot leave a truncated file behind.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ReportIds {
    last: u64,
    /// `None` in dry-run mode, which must leave no trace on the device.
    path: Option<PathBuf>,
}

impl ReportIds {
    /// Loads the last id from `state_dir/report-id`; a missing or unreadable file starts at 0.
    pub fn load(state_dir: &Path) -> ReportIds {
        let path = state_dir.join("report-id");
        let last = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        ReportIds { last, path: Some(path) }
    }

    /// Ids kept in memory only.
    pub fn ephemeral() -> ReportIds {
        ReportIds { last: 0, path: None }
    }

    /// The next id for a report made at `now_epoch_secs`, saved before it is used.
    pub fn next(&mut self, now_epoch_secs: u64) -> u64 {
        self.last = now_epoch_secs.max(self.last + 1);
        if let Some(path) = &self.path
            && let Err(e) = save(path, self.last)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the report id; ids may repeat after a restart with a clock step");
        }
        self.last
    }
}

fn save(path: &Path, id: u64) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_across_clock_steps_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = ReportIds::load(dir.path());
        assert_eq!(ids.next(1000), 1000);
        assert_eq!(ids.next(1000), 1001, "same second");
        assert_eq!(ids.next(500), 1002, "clock stepped back");
        assert_eq!(ids.next(2000), 2000);
        let mut restarted = ReportIds::load(dir.path());
        assert_eq!(restarted.next(10), 2001, "restart with a clock that is behind");
    }

    #[test]
    fn ephemeral_ids_leave_no_file() {
        let mut ids = ReportIds::ephemeral();
        assert_eq!(ids.next(7), 7);
        assert_eq!(ids.next(7), 8);
    }
}
