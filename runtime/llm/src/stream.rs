//! Incremental UTF-8 decoding and stop-string detection for streamed generation.

/// Accumulates token bytes, finds stop strings, and releases only text that cannot be the start
/// of a stop string.
#[derive(Debug, Default)]
pub struct StopStream {
    stops: Vec<String>,
    pending: Vec<u8>,
    text: String,
    emitted: usize,
    stopped: Option<String>,
}

impl StopStream {
    /// A stream that stops at any of `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds a token's bytes. Returns the text that may be shown now.
    pub fn push(&mut self, bytes: &[u8]) -> &str {
        if self.stopped.is_some() {
            return "";
        }
        self.pending.extend_from_slice(bytes);
        let before = self.text.len();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.text.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.text
                        .push_str(std::str::from_utf8(&self.pending[..valid]).expect("checked"));
                    match e.error_len() {
                        Some(n) => {
                            self.text.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                        None => {
                            self.pending.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        self.cut_at_stop(before);
        let safe = if self.stopped.is_some() {
            self.text.len()
        } else {
            self.text.len() - self.held_back()
        };
        let out = &self.text[self.emitted.min(safe)..safe];
        self.emitted = self.emitted.max(safe);
        out
    }

    /// Looks for the earliest stop string that ends after byte `before` (the text's length
    /// before the latest addition); if found, records it and cuts the text there.
    fn cut_at_stop(&mut self, before: usize) {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = before.saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| (from + i, s)))
            .min_by_key(|(i, _)| *i);
        if let Some((at, s)) = hit {
            self.stopped = Some(s.clone());
            self.text.truncate(at);
            self.pending.clear();
        }
    }

    /// Bytes at the end of the text that could begin a stop string.
    fn held_back(&self) -> usize {
        let mut hold = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k <= hold {
                    break;
                }
                if s.is_char_boundary(k) && self.text.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }

    /// The stop string found, if any.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Ends the stream: returns what was not yet released and the whole text.
    pub fn finish(mut self) -> (String, String) {
        if !self.pending.is_empty() && self.stopped.is_none() {
            // Incomplete UTF-8 at the very end: replace it, and look for stops once more.
            let tail = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            let before = self.text.len();
            self.text.push_str(&tail);
            self.cut_at_stop(before);
        }
        let rest = self.text[self.emitted.min(self.text.len())..].to_string();
        (rest, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopStream::new(&stops);
        let mut shown = String::new();
        for p in pieces {
            shown.push_str(s.push(p));
        }
        let stopped = s.stopped().map(str::to_string);
        let (rest, text) = s.finish();
        shown.push_str(&rest);
        (shown, text, stopped)
    }

    #[test]
    fn a_stop_string_split_across_tokens_is_found_and_never_shown() {
        let (shown, text, stop) = run(
            &["\nObservation"],
            &[b"Search[x]", b"\nObs", b"ervation 1", b"more"],
        );
        assert_eq!(text, "Search[x]");
        assert_eq!(shown, "Search[x]");
        assert_eq!(stop.as_deref(), Some("\nObservation"));
    }

    #[test]
    fn held_back_text_is_released_when_it_turns_out_not_to_be_a_stop() {
        let (shown, text, stop) = run(&["END"], &[b"the EN", b"D", b"ing"]);
        assert_eq!(stop.as_deref(), Some("END"));
        assert_eq!(text, "the ");
        assert_eq!(shown, "the ");
        let (shown, text, stop) = run(&["END"], &[b"the EN", b"ough"]);
        assert_eq!(stop, None);
        assert_eq!(text, "the ENough");
        assert_eq!(shown, "the ENough");
    }

    #[test]
    fn multi_byte_characters_split_across_tokens_are_reassembled() {
        let e = "é".as_bytes();
        let (shown, text, _) = run(&[], &[b"caf", &e[..1], &e[1..], b"!"]);
        assert_eq!(text, "café!");
        assert_eq!(shown, "café!");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (_, text, _) = run(&[], &[b"a", &[0xff], b"b"]);
        assert_eq!(text, "a\u{FFFD}b");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (_, text, stop) = run(&["B", "A"], &[b"xxAyyB"]);
        assert_eq!(text, "xx");
        assert_eq!(stop.as_deref(), Some("A"));
    }
}
