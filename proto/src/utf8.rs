//! UTF-8 checked across the fragments of a text message: a character may be
//! split between two fragments, so each fragment is checked with the
//! incomplete character the previous one ended with.

/// The state of one fragmented text message being checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utf8Fragments {
    /// The start of a character the last fragment ended in (at most 3 bytes).
    partial: [u8; 4],
    len: usize,
}

/// A fragment broke UTF-8 (or the message ended inside a character).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

impl Utf8Fragments {
    /// Check the next fragment; `fin` when it is the message's last. A
    /// refused fragment leaves the state as it was (it was not sent).
    pub fn feed(&mut self, data: &[u8], fin: bool) -> Result<(), Invalid> {
        let before = *self;
        let checked = self.advance(data, fin);
        if checked.is_err() {
            *self = before;
        }
        checked
    }

    fn advance(&mut self, mut data: &[u8], fin: bool) -> Result<(), Invalid> {
        if self.len > 0 {
            let width = char_width(self.partial[0]).ok_or(Invalid)?;
            let take = (width - self.len).min(data.len());
            self.partial[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
            data = &data[take..];
            if self.len < width {
                return if fin { Err(Invalid) } else { Ok(()) };
            }
            std::str::from_utf8(&self.partial[..width]).map_err(|_| Invalid)?;
            self.len = 0;
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            // Cut inside a character: keep its start for the next fragment.
            Err(e) if e.error_len().is_none() && !fin => {
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.len = rest.len();
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }
}

/// Bytes of the character `lead` starts; `None` if it starts none.
fn char_width(lead: u8) -> Option<usize> {
    match lead {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fragments: &[&[u8]]) -> Result<(), Invalid> {
        let mut state = Utf8Fragments::default();
        for (i, f) in fragments.iter().enumerate() {
            state.feed(f, i + 1 == fragments.len())?;
        }
        Ok(())
    }

    #[test]
    fn a_character_may_span_fragments() {
        let text = "κόσμε🎉".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(check(&[&text[..cut], &text[cut..]]), Ok(()), "cut at {cut}");
        }
        // One byte a fragment.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(check(&bytes), Ok(()));
    }

    #[test]
    fn broken_text_is_caught_in_any_fragment() {
        assert_eq!(check(&[b"ok", b"\xff"]), Err(Invalid));
        assert_eq!(check(&[b"\xce", b"x"]), Err(Invalid));
        // The message ends inside a character.
        assert_eq!(check(&[b"ok", b"\xf0\x9f"]), Err(Invalid));
        assert_eq!(check(&[b"\xf0\x9f", b"\x8e"]), Err(Invalid));
        // Surrogates are not UTF-8, split or not.
        assert_eq!(check(&[b"\xed", b"\xa0\x80"]), Err(Invalid));
    }

    #[test]
    fn a_refused_fragment_changes_nothing() {
        let mut state = Utf8Fragments::default();
        state.feed(b"ok\xce", false).unwrap();
        assert_eq!(state.feed(b"x", true), Err(Invalid));
        assert_eq!(state.feed(b"\xbb", true), Ok(()), "λ completed after all");
    }
}
