//! The registrar's config: simple `key = value` lines (a subset of TOML). The one key is
//! `allowed_prefixes`, a comma-separated string or an array of number prefixes such as
//! `allowed_prefixes = "+1555,+44"`; without it every number may register.

/// The parsed config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// If not empty, only numbers starting with one of these may register.
    pub allowed_prefixes: Vec<String>,
    /// Keys that were present but are not understood (reported, not fatal).
    pub unknown_keys: Vec<String>,
}

/// Parses config text. Blank lines and `#` comments are skipped; anything that is not
/// `key = value` is an error, as is a prefix that is not `+` and 1-15 digits.
pub fn parse(text: &str) -> Result<Config, String> {
    let mut config = Config::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "registrar config line {}: expected `key = value`, found {line:?}",
                i + 1
            ));
        };
        match key.trim() {
            "allowed_prefixes" => {
                config.allowed_prefixes = parse_prefixes(value.trim())
                    .map_err(|e| format!("registrar config line {}: {e}", i + 1))?;
            }
            other => config.unknown_keys.push(other.to_string()),
        }
    }
    Ok(config)
}

/// `"+1555,+44"`, `["+1555", "+44"]` or `+1555, +44` (a trailing `# comment` is ignored).
fn parse_prefixes(value: &str) -> Result<Vec<String>, String> {
    let value = strip_comment(value).trim();
    let inner = if let Some(v) = value.strip_prefix('[') {
        v.strip_suffix(']')
            .ok_or_else(|| format!("unclosed array in allowed_prefixes: {value:?}"))?
    } else {
        value
    };
    inner
        .split(',')
        .map(|p| p.trim().trim_matches('"').trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            if is_prefix(p) {
                Ok(p.to_string())
            } else {
                Err(format!(
                    "allowed_prefixes: {p:?} is not a number prefix (+ and 1-15 digits, the first not 0)"
                ))
            }
        })
        .collect()
}

/// Drops a `# comment` that is outside double quotes.
fn strip_comment(value: &str) -> &str {
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &value[..i],
            _ => {}
        }
    }
    value
}

fn is_prefix(p: &str) -> bool {
    p.strip_prefix('+').is_some_and(|d| {
        (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_allows_everyone() {
        assert_eq!(parse(""), Ok(Config::default()));
        assert_eq!(parse("\n  # just a comment\n"), Ok(Config::default()));
    }

    #[test]
    fn allowed_prefixes_as_string_or_array() {
        let want = vec!["+1555".to_string(), "+44".to_string()];
        for text in [
            r#"allowed_prefixes = "+1555,+44""#,
            r#"allowed_prefixes="+1555, +44"  # UK and test numbers"#,
            r#"allowed_prefixes = ["+1555", "+44"]"#,
            "allowed_prefixes = +1555,+44",
        ] {
            assert_eq!(parse(text).unwrap().allowed_prefixes, want, "{text}");
        }
        assert!(parse(r#"allowed_prefixes = """#)
            .unwrap()
            .allowed_prefixes
            .is_empty());
    }

    #[test]
    fn bad_lines_and_prefixes_are_errors() {
        let e = parse("allowed_prefixes").unwrap_err();
        assert!(e.contains("line 1") && e.contains("key = value"), "{e}");
        let e = parse("\nallowed_prefixes = \"1555\"").unwrap_err();
        assert!(e.contains("line 2") && e.contains("\"1555\""), "{e}");
        assert!(parse(r#"allowed_prefixes = "+0""#).is_err());
        assert!(parse(r#"allowed_prefixes = ["+1""#).is_err());
    }

    #[test]
    fn unknown_keys_are_collected_not_fatal() {
        let c = parse("code_length = 6\nallowed_prefixes = \"+1\"").unwrap();
        assert_eq!(c.unknown_keys, ["code_length"]);
        assert_eq!(c.allowed_prefixes, ["+1"]);
    }
}
