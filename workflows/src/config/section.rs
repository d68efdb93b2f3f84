//! One top-level section of the config text replaced by another rendering of it, the rest
//! of the file (its other sections, their comments and layout) left as it was written.

/// The lines `[start, end)` of the top-level section `key` in `text`: from its `key:` line
/// at column 0 to the next line at column 0 that is not blank (another key, a comment, a
/// document marker). None when no line starts with `key:`.
fn block(lines: &[&str], key: &str) -> Option<(usize, usize)> {
    let opens = |line: &str| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let start = lines.iter().position(|l| opens(l))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with([' ', '\t']))
        .map_or(lines.len(), |i| start + 1 + i);
    // Blank lines before the next section stay with it.
    let mut end = end;
    while end > start + 1 && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    Some((start, end))
}

/// The section `key` of `text`, its lines as written; none when it has none.
pub(super) fn section<'a>(text: &'a str, key: &str) -> Option<Vec<&'a str>> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = block(&lines, key)?;
    Some(lines[start..end].to_vec())
}

/// `text` with its section `key` replaced by `section` (lines that start with `key:`), or
/// with `section` added at its end when it has none; `section` empty removes it.
pub(super) fn replaced(text: &str, key: &str, section: &[&str]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = Vec::with_capacity(lines.len() + section.len());
    match block(&lines, key) {
        Some((start, end)) => {
            out.extend(&lines[..start]);
            out.extend(section);
            out.extend(&lines[end..]);
        }
        None => {
            out.extend(&lines);
            out.extend(section);
        }
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# my stack\nhosts:\n  - {name: a, address: 10.0.0.5}  # the NAS\n\nnetwork:\n  # old\n  gateway: 10.0.0.1\n  subnet: 10.0.0.0/24\n\n# DNS, by hand\ndns:\n  forwarders: [1.1.1.1]\n";

    #[test]
    fn only_the_section_changes() {
        let new = ["network:", "  gateway: 10.0.0.254", "  subnet: 10.0.0.0/24"];
        assert_eq!(
            replaced(TEXT, "network", &new),
            "# my stack\nhosts:\n  - {name: a, address: 10.0.0.5}  # the NAS\n\nnetwork:\n  gateway: 10.0.0.254\n  subnet: 10.0.0.0/24\n\n# DNS, by hand\ndns:\n  forwarders: [1.1.1.1]\n"
        );
        assert_eq!(
            section(TEXT, "network"),
            Some(vec![
                "network:",
                "  # old",
                "  gateway: 10.0.0.1",
                "  subnet: 10.0.0.0/24"
            ])
        );
        assert_eq!(section(TEXT, "net"), None);
        assert_eq!(section("networks:\n  a: 1\n", "network"), None);
    }

    #[test]
    fn a_missing_section_is_added_at_the_end() {
        let text = "hosts: []\n# the end";
        assert_eq!(
            replaced(text, "network", &["network:", "  gateway: 10.0.0.1"]),
            "hosts: []\n# the end\nnetwork:\n  gateway: 10.0.0.1\n"
        );
        assert_eq!(
            replaced(
                "network: {gateway: 10.0.0.1}\nhosts: []\n",
                "network",
                &["network:", "  x: 1"]
            ),
            "network:\n  x: 1\nhosts: []\n"
        );
    }
}
