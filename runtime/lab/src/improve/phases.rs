//! The phases after training: installation and the canary.

use std::path::Path;
use std::time::Instant;

use retroformer_envs::Progress;

use super::env::Split;
use super::Ctx;
use crate::LabError;

impl Ctx<'_> {
    /// Installs `adapter` in the actor's store (validated, load-probed in a child process);
    /// its id. The same file again gives the same id.
    pub(super) fn install(&self, adapter: &Path) -> Result<String, LabError> {
        let m = self.store.install(
            adapter,
            &self.base_header,
            &self.plan.settings.model,
            // Our trainer records the base: an adapter that does not is not ours.
            retroformer_gguf::BasePolicy::Recorded,
            &|p| retroformer::backend::active().probe_adapter(&self.base_path, p),
        )?;
        Ok(m.id)
    }

    /// The store's canary: the active adapter (or the base) and candidate `id`, greedy on the
    /// dev problems (`OUT/dev/KEY/`, reused across rounds); the store promotes or keeps.
    pub(super) fn canary(
        &self,
        id: &str,
        progress: &mut dyn Progress,
    ) -> Result<super::CanaryFigures, LabError> {
        let start = Instant::now();
        // The tasks this process evaluated (a resumed canary's earlier part is not timed).
        let mut ran: Option<usize> = None;
        let mut eval = |adapter: Option<&Path>| -> Result<f64, String> {
            let e = self
                .env
                .evaluate(self, Split::Dev, adapter, false, progress)
                .map_err(|e| e.to_string())?;
            if let Some(t) = e.timed {
                ran = Some(ran.unwrap_or(0) + t.tasks);
            }
            Ok(e.score.accuracy)
        };
        let c = self
            .store
            .canary(id, self.plan.settings.margin, &mut eval)?;
        Ok(super::CanaryFigures {
            candidate: c.candidate,
            incumbent: c.incumbent,
            candidate_score: c.candidate_score,
            incumbent_score: c.incumbent_score,
            promoted: c.promoted,
            wall_s: ran.map(|_| start.elapsed().as_secs_f64()),
            wall_tasks: ran,
        })
    }
}
