//! `edge-gw manpage`: the manual as a man page (roff, the `man(7)`
//! macros), converted from the very text `--help` prints, so the two
//! cannot disagree.
//!
//! The plain text's layout carries the structure: a heading at column 0
//! is `.SH`; a line at four spaces followed by lines at eight is an item
//! (`.TP`: an option, a command, a file); other lines at four spaces are
//! paragraphs; lines at twelve or more are examples, kept as they are
//! (`.nf`). SYNOPSIS, COMMANDS, EXAMPLES and EXIT STATUS are kept as they
//! are throughout: their columns are the point.

use super::manual::{help_text, sections};

/// Sections printed line for line.
const LITERAL: &[&str] = &["SYNOPSIS", "COMMANDS", "EXAMPLES", "EXIT STATUS"];

/// The man page.
pub fn roff() -> String {
    let mut out = format!(
        ".\\\" The edge-gw manual, made by `edge-gw manpage` from `edge-gw --help`.\n\
         .TH EDGE-GW 1 \"\" \"edge-gw {}\" \"User Commands\"\n",
        env!("CARGO_PKG_VERSION")
    );
    let text = help_text();
    for (heading, body) in sections(&text) {
        out.push_str(&format!(".SH \"{}\"\n", escape(heading)));
        if LITERAL.iter().any(|l| heading.starts_with(l)) {
            literal_section(&mut out, &body);
        } else {
            section(&mut out, &body);
        }
    }
    out
}

/// How far `line` is indented.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn literal_section(out: &mut String, body: &[&str]) {
    out.push_str(".nf\n");
    for line in trimmed(body) {
        out.push_str(&escape(line.strip_prefix("    ").unwrap_or(line)));
        out.push('\n');
    }
    out.push_str(".fi\n");
}

/// `body` without its leading and trailing blank lines.
fn trimmed<'a>(body: &'a [&'a str]) -> &'a [&'a str] {
    let start = body
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(start, |i| i + 1);
    &body[start..end]
}

fn section(out: &mut String, body: &[&str]) {
    let body = trimmed(body);
    // Where the text stands: a fresh paragraph is due, inside an item, or
    // inside an example kept as it is.
    let mut para_due = true;
    let mut in_example = false;
    for (i, line) in body.iter().enumerate() {
        let depth = indent(line);
        if in_example && (depth < 12 || line.trim().is_empty()) {
            out.push_str(".fi\n.RE\n");
            in_example = false;
            // `.RE` leaves the item's indent: text of the same item goes
            // on in an untagged item paragraph.
            if depth == 8 {
                out.push_str(".IP\n");
            }
        }
        if line.trim().is_empty() {
            para_due = true;
            continue;
        }
        let next_depth = body.get(i + 1).map_or(0, |n| indent(n));
        if depth >= 12 {
            if !in_example {
                out.push_str(".RS\n.nf\n");
                in_example = true;
            }
            out.push_str(&escape(line.get(8..).unwrap_or(line)));
            out.push('\n');
            continue;
        }
        if depth <= 4 && next_depth == 8 {
            out.push_str(".TP\n");
            out.push_str(&format!("\\fB{}\\fR\n", escape(line.trim())));
            para_due = false;
            continue;
        }
        if depth <= 4 && para_due {
            out.push_str(".PP\n");
        }
        para_due = false;
        out.push_str(&escape(line.trim()));
        out.push('\n');
    }
    if in_example {
        out.push_str(".fi\n.RE\n");
    }
}

/// Text made safe for roff: backslashes written `\e`, hyphens `\-` (so
/// options can be searched and pasted), and a line that would start with
/// a control character guarded with `\&`.
fn escape(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_and_option_is_in_the_page() {
        let page = roff();
        assert!(page.starts_with(".\\\""));
        assert!(page.contains(".TH EDGE-GW 1"));
        for (heading, _) in sections(&help_text()) {
            assert!(
                page.contains(&format!(".SH \"{}\"", escape(heading))),
                "{heading}"
            );
        }
        assert!(page.contains(".TP\n\\fB\\-\\-listen ADDR\\fR\n"));
        assert!(page.contains("\\-\\-key\\-file /etc/edge\\-gw/agent.key"));
        // The examples keep their continuation backslashes.
        assert!(page.contains("\\e\n"));
        assert_eq!(page.matches(".nf\n").count(), page.matches(".fi\n").count());
        assert_eq!(page.matches(".RS\n").count(), page.matches(".RE\n").count());
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a-b\\c"), "a\\-b\\ec");
        assert_eq!(escape(".hidden"), "\\&.hidden");
        assert_eq!(escape("'quote"), "\\&'quote");
    }
}
