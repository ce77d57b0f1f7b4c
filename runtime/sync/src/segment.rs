//! A record file cut into segments: whole lines, each line a JSON object, at most
//! [`MAX_SEGMENT_BYTES`](crate::names::MAX_SEGMENT_BYTES) each, so that no message outgrows
//! the server's payload limit and a re-sent segment is byte-identical (the same sha256).

use crate::SyncError;

/// Cuts `bytes` (the JSONL file at `path`) into segments of whole lines of at most `max`
/// bytes. Blank lines are dropped; a line that is not a JSON object, or longer than `max`,
/// is an error naming the file and line.
pub fn cut(path: &str, bytes: &[u8], max: usize) -> Result<Vec<Vec<u8>>, SyncError> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |reason: String| SyncError::Record {
            path: path.to_string(),
            line: i + 1,
            reason,
        };
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => {}
            Ok(_) => return Err(bad("a record must be a JSON object".into())),
            Err(e) => return Err(bad(format!("not JSON: {e}"))),
        }
        if line.len() + 1 > max {
            return Err(bad(format!(
                "a record of {} bytes is longer than a segment ({max} bytes)",
                line.len()
            )));
        }
        if current.len() + line.len() + 1 > max {
            out.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(line);
        current.push(b'\n');
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_hold_whole_lines_within_the_limit_and_rejoin_to_the_records() {
        let lines: Vec<String> = (0..50).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
        let text = lines.join("\n") + "\n\n";
        let segs = cut("f", text.as_bytes(), 64).unwrap();
        assert!(segs.len() > 5);
        assert!(segs.iter().all(|s| s.len() <= 64 && s.ends_with(b"\n")));
        let joined: Vec<u8> = segs.concat();
        assert_eq!(String::from_utf8(joined).unwrap(), lines.join("\n") + "\n");
        assert_eq!(
            cut("f", text.as_bytes(), 64).unwrap(),
            segs,
            "deterministic"
        );
    }

    #[test]
    fn a_line_that_is_not_a_json_object_or_too_long_names_its_file_and_line() {
        for (text, line) in [
            ("{}\n[1]\n", 2),
            ("{}\n\n{\n", 3),
            (&*format!("{{\"a\":\"{}\"}}", "x".repeat(99)), 1),
        ] {
            match cut("runs/a.jsonl", text.as_bytes(), 64) {
                Err(SyncError::Record { path, line: l, .. }) => {
                    assert_eq!((path.as_str(), l), ("runs/a.jsonl", line))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
