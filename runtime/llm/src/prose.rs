//! A fixed text of a given token length, for measurements that must see the same prompt on
//! every model and machine (the benchmarks and the trainer's `bench`).

use crate::{LanguageModel, LlmError};

/// Prose of about `n` tokens with the BOS token (no special tokens), so that every model and
/// machine sees the same text: the first `n - 1` tokens of a long text, detokenised (the
/// round trip may merge a token at the cut).
pub fn prose(model: &dyn LanguageModel, n: u32) -> Result<String, LlmError> {
    const UNIT: &str =
        "The quick brown fox jumps over the lazy dog while the river runs past the old mill. ";
    if n <= 1 {
        return Ok(String::new());
    }
    let per_unit = model.tokenize(UNIT, false, false)?.len().max(1);
    let mut s = UNIT.repeat((n as usize).div_ceil(per_unit) + 1);
    let mut tokens = model.tokenize(&s, false, false)?;
    while tokens.len() < n as usize {
        s.push_str(UNIT);
        tokens = model.tokenize(&s, false, false)?;
    }
    model.detokenize(&tokens[..n as usize - 1])
}
