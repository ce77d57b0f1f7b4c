//! Progress as plain lines, for logs: a run left in the background (`nohup ... > log`) has no
//! terminal, so its progress bar is hidden; these lines say how far it is and when it should
//! end, once a minute rather than on every step.

use std::time::{Duration, Instant};

/// How often a run without a terminal prints its progress line.
pub const EVERY: Duration = Duration::from_secs(60);

/// Units reported within this time of the rate's origin belong to the same burst.
const BURST: Duration = Duration::from_millis(100);

/// Throttled progress lines: position, share done, elapsed time and an estimate of the rest.
#[derive(Debug, Clone)]
pub struct LineProgress {
    every: Duration,
    start: Instant,
    last: Option<Instant>,
    /// Where the rate is measured from: the first line printed. Work counted before it (what
    /// a resumed run found already done, counted at once) would make the estimate too short.
    since: Option<(Instant, u64)>,
}

impl LineProgress {
    /// Lines at most once every `every`, the first `every` after `start`.
    pub fn new(every: Duration, start: Instant) -> Self {
        Self {
            every,
            start,
            last: None,
            since: None,
        }
    }

    /// The line to print for `pos` of `len` at `now`, if one is due: a line once `every` has
    /// passed since the last one (or since the start), and one when the work is complete.
    pub fn update(&mut self, pos: u64, len: u64, now: Instant, message: &str) -> Option<String> {
        // A burst that began with the first line (what a resumed run found done, reported at
        // once after a slow start) is not work done: the origin moves to the burst's end.
        if let Some((t0, _)) = self.since {
            if now.saturating_duration_since(t0) < BURST {
                self.since = Some((now, pos));
            }
        }
        let done = len > 0 && pos >= len;
        let due = now.saturating_duration_since(self.last.unwrap_or(self.start)) >= self.every;
        if !(due || done) {
            return None;
        }
        self.last = Some(now);
        let eta = match self.since {
            Some((t0, p0)) if pos > p0 && !done => {
                let per = now.saturating_duration_since(t0).as_secs_f64() / (pos - p0) as f64;
                format!(", eta {}", duration(per * len.saturating_sub(pos) as f64))
            }
            _ => String::new(),
        };
        self.since.get_or_insert((now, pos));
        // Rounded down: 599 of 600 is not 100 %.
        let share = (100 * pos)
            .checked_div(len)
            .map_or(String::new(), |p| format!(" ({p} %)"));
        let elapsed = duration(now.saturating_duration_since(self.start).as_secs_f64());
        let tail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        Some(format!("{pos}/{len}{share}, {elapsed}{eta}{tail}"))
    }
}

/// `2h 05m`, `12m 03s`, `45s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn lines_come_once_a_minute_and_when_the_work_is_complete() {
        let t = Instant::now();
        let mut p = LineProgress::new(Duration::from_secs(60), t);
        assert_eq!(p.update(1, 10, at(t, 10), ""), None);
        assert!(p.update(2, 10, at(t, 61), "").is_some());
        assert_eq!(p.update(3, 10, at(t, 100), ""), None);
        assert!(p.update(4, 10, at(t, 121), "").is_some());
        assert!(p.update(10, 10, at(t, 130), "").is_some());
    }

    #[test]
    fn the_estimate_ignores_work_counted_before_the_first_line() {
        let t = Instant::now();
        let mut p = LineProgress::new(Duration::from_secs(60), t);
        // A resumed run counts 100 saved tasks at once; they say nothing of the rate.
        assert_eq!(p.update(100, 400, at(t, 1), ""), None);
        let first = p.update(101, 400, at(t, 60), "train-7: 1 0").unwrap();
        assert_eq!(first, "101/400 (25 %), 1m 00s: train-7: 1 0");
        // 10 tasks in the next 60 s, 6 s each: the 289 left take 1 734 s.
        let second = p.update(111, 400, at(t, 120), "").unwrap();
        assert_eq!(second, "111/400 (27 %), 2m 00s, eta 28m 54s");
        let last = p.update(400, 400, at(t, 125), "").unwrap();
        assert_eq!(last, "400/400 (100 %), 2m 05s");
    }

    #[test]
    fn saved_work_reported_after_a_slow_start_does_not_shorten_the_estimate() {
        let t = Instant::now();
        let mut p = LineProgress::new(Duration::from_secs(60), t);
        // The model takes 70 s to load, then 100 saved tasks are reported within 2 ms.
        let burst = at(t, 70);
        assert!(p.update(1, 400, burst, "").is_some());
        for pos in 2..=100 {
            let now = burst + Duration::from_micros(20 * pos);
            assert_eq!(p.update(pos, 400, now, ""), None);
        }
        // Then 10 tasks in 60 s: 6 s each for the 290 left.
        let line = p.update(110, 400, at(t, 130), "").unwrap();
        assert!(line.ends_with("eta 29m 00s"), "{line}");
        // 30 tasks since the burst's end in 120 s: 4 s each for the 270 left.
        let line = p.update(130, 400, at(t, 190), "").unwrap();
        assert_eq!(line, "130/400 (32 %), 3m 10s, eta 18m 00s");
    }

    #[test]
    fn durations_read_in_the_largest_units_that_matter() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(723.0), "12m 03s");
        assert_eq!(duration(7_500.0), "2h 05m");
        assert_eq!(duration(-3.0), "0s");
    }
}
