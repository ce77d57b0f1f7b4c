//! What a checkpoint records of the data it was trained on, beyond the file's hash: the
//! examples as read and tokenised, and the held-out set with its settings.

use crate::data::Tokenized;
use crate::heldout::Heldout;

/// The tokenised examples in order, as a count and a 64-bit FNV-1a hash of every token,
/// length, mask bit, reward and weight.
pub(super) fn fingerprint(data: &[Tokenized]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for t in data {
        eat(t.tokens.len() as u64);
        eat(t.prompt_len as u64);
        t.tokens.iter().for_each(|&x| eat(u64::from(x)));
        eat(t.reward.to_bits());
        eat(t.weight.to_bits());
        if let Some(m) = &t.mask {
            m.iter().for_each(|&b| eat(u64::from(b)));
        }
    }
    format!("{} examples {h:016x}", data.len())
}

/// The held-out set's fingerprint with the settings that decide the exported step.
pub(super) fn heldout_fingerprint(h: Option<&Heldout<'_>>) -> String {
    h.map_or_else(String::new, |h| {
        format!(
            "{}; every {}, patience {}, keep {:?}",
            fingerprint(h.data),
            h.every,
            h.patience,
            h.keep
        )
    })
}

/// A hash's first 12 characters, for messages.
pub(super) fn short(sha: &str) -> &str {
    // A hash from a damaged state.json may not be ASCII: cut only at a character boundary.
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(tokens: &[u32], mask: Option<Vec<bool>>) -> Tokenized {
        Tokenized {
            tokens: tokens.to_vec(),
            prompt_len: 1,
            reward: 1.0,
            weight: 1.0,
            mask,
        }
    }

    #[test]
    fn the_fingerprint_changes_with_any_token_order_mask_or_count_and_only_then() {
        let a = [ex(&[1, 2, 3], None), ex(&[4, 5], None)];
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        for other in [
            vec![ex(&[4, 5], None), ex(&[1, 2, 3], None)],
            vec![ex(&[1, 2], None), ex(&[4, 5], None)],
            vec![ex(&[1, 2, 3], Some(vec![true, false])), ex(&[4, 5], None)],
            vec![ex(&[1, 2, 3], None)],
        ] {
            assert_ne!(fingerprint(&a), fingerprint(&other));
        }
        assert!(fingerprint(&a).starts_with("2 examples "));
    }

    #[test]
    fn a_short_hash_cuts_only_at_a_character_boundary() {
        assert_eq!(short(&"ab".repeat(32)), "abababababab");
        assert_eq!(
            short("a\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"),
            "a\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"
        );
    }
}
