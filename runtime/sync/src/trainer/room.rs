//! Making room in a full store ([`WhenFull::DropTrained`](super::WhenFull::DropTrained)):
//! which stored segments may go, and removing them, the longest stored first.

use std::path::PathBuf;

use super::{Consumed, FleetTrainer};
use crate::SyncError;

impl FleetTrainer {
    /// Removes the segments trained on or set aside, the longest stored first, until fewer
    /// than `cap` bytes are used; none when removing all of them would not get there (the
    /// untrained ones fill the store: removing the rest would lose them for nothing). Returns
    /// the bytes used then and what was removed.
    pub(super) fn make_room(&self, used: u64, cap: u64) -> Result<(u64, Consumed), SyncError> {
        let mut removed = Consumed::default();
        let candidates = self.removable()?;
        let removable: u64 = candidates.iter().map(|c| c.len).sum();
        if used.saturating_sub(removable) >= cap {
            tracing::warn!(
                used,
                removable,
                cap,
                "the store is full of segments not yet trained on: nothing removed"
            );
            return Ok((used, removed));
        }
        let mut left = used;
        for c in candidates {
            if left < cap {
                break;
            }
            // One that cannot go (a permission, a folder by that name) is passed over: the
            // trainer goes on, and the next round says the store is still full.
            if let Err(e) = std::fs::remove_file(&c.path) {
                tracing::warn!(path = %c.path.display(), "cannot remove: {e}");
                continue;
            }
            left = left.saturating_sub(c.len);
            match c.set_aside {
                false => removed.dropped += 1,
                true => removed.dropped_set_aside += 1,
            }
        }
        tracing::info!(
            removed.dropped,
            removed.dropped_set_aside,
            left,
            cap,
            "removed the segments stored longest ago (trained on or set aside) to make room"
        );
        Ok((left, removed))
    }

    /// The stored segments already trained on and the set-aside ones, the longest stored
    /// first (a file's modification time: it is written once, and setting aside moves it).
    fn removable(&self) -> Result<Vec<Removable>, SyncError> {
        let state = self.state()?;
        let trained = state.trained_set();
        let mut all = Vec::new();
        for (dir, set_aside) in [("records", false), ("quarantine", true)] {
            let d = self.cfg.dir.join(dir);
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SyncError::io(&d, e)),
            };
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                // Only segments: `<sha256>.jsonl`, trained on unless set aside.
                let Some(sha) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jsonl"))
                else {
                    continue;
                };
                if !set_aside && !trained.contains(sha) {
                    continue;
                }
                let Some(m) = std::fs::metadata(&path).ok().filter(|m| m.is_file()) else {
                    continue;
                };
                let stored = m.modified().unwrap_or(std::time::UNIX_EPOCH);
                all.push(Removable {
                    stored,
                    len: m.len(),
                    set_aside,
                    path,
                });
            }
        }
        all.sort_by(|a, b| (a.stored, &a.path).cmp(&(b.stored, &b.path)));
        Ok(all)
    }
}

/// A segment [`FleetTrainer::make_room`] may remove.
struct Removable {
    stored: std::time::SystemTime,
    len: u64,
    set_aside: bool,
    path: PathBuf,
}
