//! Texts in answers: a client's field quoted back, a plugin's text cut, and their limits.

use hotline_protocol::{ErrorCode, ServerFrame};

/// A non-fatal `Error` frame.
pub fn error(error: ErrorCode, reason: impl Into<String>) -> ServerFrame {
    ServerFrame::Error { error, reason: reason.into() }
}

/// Longest prefix of a client's field quoted back in an error reason, in characters. A
/// field may be as long as a frame (256 KiB); an answer quoting it whole could exceed the
/// frame limit that `docs/protocol.md` promises the broker never exceeds.
const QUOTE_CHARS: usize = 40;

/// Longest reason a plugin may give (a refusal or a failed command), in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Longest output of a plugin command, in bytes; longer output is cut.
pub const MAX_COMMAND_OUTPUT_BYTES: usize = 64 * 1024;

/// A client's field for an error reason: Debug-quoted, at most [`QUOTE_CHARS`] characters,
/// with the length said when it was cut.
pub fn quote(field: &str) -> String {
    if field.chars().count() <= QUOTE_CHARS {
        return format!("{field:?}");
    }
    let prefix: String = field.chars().take(QUOTE_CHARS).collect();
    format!("{prefix:?}… ({} bytes)", field.len())
}

/// `text` cut to at most `max` bytes at a character boundary, saying so when cut. For
/// texts a plugin produced, which may echo a client's field in full.
pub fn clamp(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!("… ({} bytes cut)", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&note);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_quoted_as_a_short_prefix_with_their_length() {
        assert_eq!(quote("+1555"), "\"+1555\"");
        let long = "x".repeat(200_000);
        let quoted = quote(&long);
        assert!(quoted.len() < 80, "{quoted}");
        assert!(quoted.ends_with("… (200000 bytes)"), "{quoted}");
    }

    #[test]
    fn plugin_texts_are_cut_at_a_character_boundary() {
        assert_eq!(clamp("short".into(), 100), "short");
        let cut = clamp("é".repeat(10_000), 100);
        assert!(cut.len() <= 100, "{} bytes", cut.len());
        assert!(cut.ends_with("(20000 bytes cut)"), "{cut}");
    }
}
