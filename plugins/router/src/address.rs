//! Address syntax the default router understands: E.164 phone numbers and `#name` groups.

/// Longest group name, in characters.
pub const MAX_GROUP_NAME: usize = 32;

/// Whether `s` is an E.164 number: `+`, then 7 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Whether `name` (without `#`) is a valid group name: 1–32 of `a-z`, `0-9`, `_`, `-`.
pub fn is_group_name(name: &str) -> bool {
    (1..=MAX_GROUP_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What an address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address<'a> {
    /// A person, by E.164 number.
    Phone(&'a str),
    /// A group, by name (without `#`).
    Group(&'a str),
    /// Starts with `#` but the name is not valid.
    BadGroup(&'a str),
    /// Neither.
    Unknown(&'a str),
}

/// Classifies a message's `to`.
pub fn parse(to: &str) -> Address<'_> {
    if is_e164(to) {
        Address::Phone(to)
    } else if let Some(name) = to.strip_prefix('#') {
        if is_group_name(name) {
            Address::Group(name)
        } else {
            Address::BadGroup(to)
        }
    } else {
        Address::Unknown(to)
    }
}

/// The reason given for a `#…` address whose name is not valid.
pub fn bad_group_reason(to: &str) -> String {
    format!(
        "{to:?} is not a valid group name: use # and 1-{MAX_GROUP_NAME} characters of a-z, 0-9, _ or -"
    )
}

/// The reason given for an address that is neither a number nor a group.
pub fn unknown_address_reason(to: &str) -> String {
    format!(
        "cannot deliver to {to:?}: address a person by E.164 number (+ and 7-15 digits, \
         like +15551234567) or a group as #name"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_plus_and_7_to_15_digits_not_starting_with_zero() {
        for ok in [
            "+1555123",
            "+15551234567",
            "+123456789012345",
            "+447700900123",
        ] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "15551234567",
            "+155512",           // 6 digits
            "+1234567890123456", // 16 digits
            "+05551234567",
            "+1555 123 4567",
            "+1555-1234567",
            "++15551234567",
            "+1555123456a",
            "+１５５５１２３４５６７", // full-width digits
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn group_names_are_1_to_32_lowercase_digits_underscore_dash() {
        for ok in ["a", "team", "team-2_b", "0", &"x".repeat(32)] {
            assert!(is_group_name(ok), "{ok}");
        }
        for bad in ["", "Team", "te am", "té", "a.b", "#a", &"x".repeat(33)] {
            assert!(!is_group_name(bad), "{bad}");
        }
    }

    #[test]
    fn parse_classifies_addresses() {
        assert_eq!(parse("+15551234567"), Address::Phone("+15551234567"));
        assert_eq!(parse("#team"), Address::Group("team"));
        assert_eq!(parse("#"), Address::BadGroup("#"));
        assert_eq!(parse("#Team"), Address::BadGroup("#Team"));
        assert_eq!(parse("bob"), Address::Unknown("bob"));
        assert_eq!(parse("+0123456789"), Address::Unknown("+0123456789"));
    }
}
