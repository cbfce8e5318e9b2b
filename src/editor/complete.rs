//! Tab completion: the longest common prefix first, then a cycle through the candidates.
//!
//! The caller's completer is asked for the candidates of the word before the cursor. One
//! candidate replaces the word, with a space after it. Several replace it with their
//! longest common prefix when that is longer than the word; when it is not, the Tab starts
//! a [`Cycle`]: each Tab puts the next candidate in the word's place (Shift-Tab the one
//! before), and after the last comes the word as it was typed, then the first again. Any
//! other key ends the cycle and keeps what is shown.

/// The candidates of one completion, and which is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Where the completed word starts (a byte index into the line).
    start: usize,
    /// The word as it was typed.
    typed: String,
    candidates: Vec<String>,
    /// Which candidate is shown; `candidates.len()` for the typed word.
    shown: usize,
}

impl Cycle {
    /// A cycle over `candidates` (at least one) for `typed`, which starts at `start`;
    /// nothing is chosen yet.
    pub fn new(start: usize, typed: &str, candidates: Vec<String>) -> Cycle {
        let shown = candidates.len();
        Cycle {
            start,
            typed: typed.to_owned(),
            candidates,
            shown,
        }
    }

    /// Where the completed word starts.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Steps to the next candidate (the previous one when `forward` is false) and returns
    /// the text to put in the word's place.
    pub fn step(&mut self, forward: bool) -> &str {
        let stops = self.candidates.len() + 1;
        self.shown = if forward {
            (self.shown + 1) % stops
        } else {
            (self.shown + stops - 1) % stops
        };
        self.shown_text()
    }

    /// The text now in the word's place.
    pub fn shown_text(&self) -> &str {
        self.candidates.get(self.shown).unwrap_or(&self.typed)
    }

    pub fn candidates(&self) -> &[String] {
        &self.candidates
    }

    /// The index of the candidate shown, `None` while the typed word is.
    pub fn shown(&self) -> Option<usize> {
        (self.shown < self.candidates.len()).then_some(self.shown)
    }
}

/// The longest prefix, on a character boundary, that every candidate starts with.
pub fn longest_common_prefix(candidates: &[String]) -> &str {
    let Some((first, rest)) = candidates.split_first() else {
        return "";
    };
    let mut end = first.len();
    for other in rest {
        end = first[..end]
            .char_indices()
            .zip(other.chars())
            .find(|((_, a), b)| a != b)
            .map_or(end.min(other.len()), |((i, _), _)| i);
        while !first.is_char_boundary(end) {
            end -= 1;
        }
    }
    &first[..end]
}

/// `candidates` without empty ones and without repeats, in their order.
pub fn dedup(candidates: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if !candidate.is_empty() && !kept.contains(&candidate) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn common_prefix() {
        assert_eq!(longest_common_prefix(&[]), "");
        assert_eq!(longest_common_prefix(&strings(&["/send"])), "/send");
        assert_eq!(
            longest_common_prefix(&strings(&["/send", "/set", "/s"])),
            "/s"
        );
        assert_eq!(longest_common_prefix(&strings(&["/send", "/sen"])), "/sen");
        assert_eq!(longest_common_prefix(&strings(&["/sen", "/send"])), "/sen");
        assert_eq!(longest_common_prefix(&strings(&["bob", "alice"])), "");
        assert_eq!(longest_common_prefix(&strings(&["é1", "é2"])), "é");
        // "é" (U+00E9) and "è" (U+00E8) share their first UTF-8 byte, not a character.
        assert_eq!(longest_common_prefix(&strings(&["xé", "xè"])), "x");
    }

    #[test]
    fn cycle_goes_round_through_the_typed_word() {
        let mut c = Cycle::new(3, "b", strings(&["bob", "bill"]));
        assert_eq!(c.shown(), None);
        assert_eq!(c.shown_text(), "b");
        assert_eq!(c.step(true), "bob");
        assert_eq!(c.step(true), "bill");
        assert_eq!(c.shown(), Some(1));
        assert_eq!(c.step(true), "b");
        assert_eq!(c.step(true), "bob");
        assert_eq!(c.step(false), "b");
        assert_eq!(c.step(false), "bill");
        assert_eq!(c.start(), 3);
        assert_eq!(c.candidates(), strings(&["bob", "bill"]));
    }

    #[test]
    fn dedup_keeps_order() {
        assert_eq!(
            dedup(strings(&["b", "", "a", "b", "c", "a"])),
            strings(&["b", "a", "c"])
        );
    }
}
