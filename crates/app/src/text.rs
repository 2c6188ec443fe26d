//! What a message may contain: everything people type (any script, accents,
//! emoji and their joiners, right-to-left text), and nothing that is not
//! text. Control characters other than newline and tab (NUL, BEL, ESC, DEL,
//! C1), Unicode noncharacters (U+FDD0-U+FDEF and every U+xxFFFE/U+xxFFFF),
//! and the bidirectional overrides and isolates that let stored text display
//! in an order other than the one it is read in (U+202A-U+202E,
//! U+2066-U+2069: "Trojan Source") are refused. A browser's form sends line
//! breaks as CRLF: they are stored as LF.

/// Why a field was refused: the first offending character, named.
#[derive(Debug, PartialEq, Eq)]
pub struct Unprintable {
    /// The character, in `U+` notation (`U+0000`).
    pub code: String,
    /// Its 1-based position in the field, in characters.
    pub position: usize,
}

/// The field with CRLF and lone CR made LF, or the first character it may not hold.
/// `multiline`: newline and tab are allowed (a message's text, not an author's name).
pub fn clean(field: &str, multiline: bool) -> Result<String, Unprintable> {
    let normalised = if field.contains('\r') {
        field.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        field.to_string()
    };
    for (i, c) in normalised.chars().enumerate() {
        if !allowed(c, multiline) {
            return Err(Unprintable {
                code: format!("U+{:04X}", c as u32),
                position: i + 1,
            });
        }
    }
    Ok(normalised)
}

fn allowed(c: char, multiline: bool) -> bool {
    let n = c as u32;
    if c == '\n' || c == '\t' {
        return multiline;
    }
    let noncharacter = (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE;
    let bidi_override = (0x202A..=0x202E).contains(&n) || (0x2066..=0x2069).contains(&n);
    !c.is_control() && !noncharacter && !bidi_override
}

/// `s` with every character [`clean`] would refuse replaced by U+FFFD, for
/// showing text that was stored before these rules.
pub fn displayable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().all(|c| allowed(c, true)) {
        return s.into();
    }
    s.chars()
        .map(|c| if allowed(c, true) { c } else { '\u{FFFD}' })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_noncharacters_are_refused() {
        for bad in [
            "a\u{0}b",
            "\u{7}",
            "\u{1b}[31m",
            "\u{7f}",
            "\u{85}",
            "\u{202e}evil",
            "\u{2066}",
            "\u{ffff}",
            "\u{fffe}",
            "\u{fdd0}",
            "\u{10ffff}",
            "\u{1fffe}",
        ] {
            assert!(clean(bad, true).is_err(), "{bad:?}");
        }
        assert_eq!(
            clean("ok\u{0}", true),
            Err(Unprintable {
                code: "U+0000".into(),
                position: 3
            })
        );
    }

    #[test]
    fn what_people_type_is_kept() {
        for good in [
            "héllo wörld",
            "emoji 👍🏽 family 👩‍👩‍👧",
            "שלום עולם",
            "مرحبا بالعالم",
            "日本語のテキスト",
            "line one\nline two\ttabbed",
            "mark\u{200f}s and zero\u{200d}width joiners",
        ] {
            assert_eq!(clean(good, true).as_deref(), Ok(good), "{good:?}");
        }
        assert_eq!(clean("a\r\nb\rc", true).as_deref(), Ok("a\nb\nc"));
        assert!(clean("two\nlines", false).is_err(), "a name is one line");
        assert!(clean("tab\t", false).is_err());
    }

    #[test]
    fn stored_control_characters_are_shown_as_replacement_characters() {
        assert_eq!(displayable("a\u{0}b"), "a\u{FFFD}b");
        assert_eq!(displayable("fine\n"), "fine\n");
    }
}
