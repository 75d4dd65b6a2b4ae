//! The man pages, rendered from the tables they document so they cannot
//! drift from the code (`hawkey generate man`, `hawkey generate man5`,
//! installed by the package).
//!
//! # Parts
//!
//! - [`hawkey`]: hawkey(1), from the clap definition, the signal table
//!   (`master::signals::TABLE`), the exit statuses (`exit::Status::ALL`)
//!   and the environment tables (`env::READ`, `env::WORKER_VARS`);
//! - [`hawkey_yaml`]: hawkey.yaml(5), from `config::keys::KEYS`;
//! - this file: what both pages share, over the `roff` crate, which
//!   escapes text (`-`, `\`, a leading `.` or `'`) so that no value of a
//!   table can turn into a roff request.
//!
//! Text in the tables marks commands and values with backticks, as the
//! rest of hawkey's documentation does: here they become bold. Whatever is
//! not ASCII becomes a groff escape (`\(em`, `\[u00E9]`; an ellipsis three
//! dots, which an ASCII terminal has too), so the pages need no input
//! encoding and format without warnings (lintian's groff check).

pub(super) mod hawkey;
pub(super) mod hawkey_yaml;

use roff::{Inline, Roff, bold, italic, roman};

/// A page: its title line, hyphenation off (dotted key paths and file
/// names must stay whole, and searchable, in the formatted text).
fn page(title: &str, section: &str, manual: &str) -> Roff {
    let source = format!("hawkey {}", env!("CARGO_PKG_VERSION"));
    let mut page = Roff::new();
    page.control("TH", [title, section, "\"\"", &source, manual])
        .control("nh", [])
        .control("ad", ["l"]);
    page
}

/// The page as roff source, ASCII only.
fn finish(page: &Roff) -> String {
    let mut out = String::new();
    for c in page.render().chars() {
        match c {
            c if c.is_ascii() => out.push(c),
            // Spelt so that every output device has them (an ASCII
            // terminal has no U+2026); `\&` keeps a leading dot no request.
            '\u{2026}' => out.push_str("\\&..."),
            '\u{2014}' => out.push_str("\\(em"),
            '\u{2013}' => out.push_str("\\(en"),
            c => out.push_str(&format!("\\[u{:04X}]", c as u32)),
        }
    }
    out
}

/// `text` with each `code` span bold.
fn marked(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// A section heading.
fn section(page: &mut Roff, name: &str) {
    page.control("SH", [name]);
}

/// A paragraph of `text` (backticks marked; paragraphs split on blank
/// lines, lines joined).
fn paragraphs(page: &mut Roff, text: &str) {
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            page.control("PP", []);
        }
        let joined: Vec<&str> = para.split_whitespace().collect();
        page.text(marked(&joined.join(" ")));
    }
}

/// A tagged paragraph: `tag` on its own line, `body` indented under it.
fn item(page: &mut Roff, tag: Vec<Inline>, body: &str) {
    page.control("TP", []);
    page.text(tag);
    paragraphs(page, body);
}

/// Lines shown as they are, indented (commands, files).
fn literal(page: &mut Roff, lines: &str) {
    page.control("PP", []);
    page.control("RS", ["4"]);
    page.control("nf", []);
    for line in lines.lines() {
        page.text([roman(line)]);
    }
    page.control("fi", []);
    page.control("RE", []);
    page.control("PP", []);
}

/// SEE ALSO: `name(section)` each, bold names, comma-separated.
fn see_also(page: &mut Roff, pages: &[(&str, &str)]) {
    section(page, "SEE ALSO");
    let mut line = Vec::new();
    for (i, (name, number)) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman(format!("({number})")));
    }
    page.text(line);
}

/// An italic word, for values to be replaced (`FILE`, `NAME`).
fn placeholder(word: &str) -> Inline {
    italic(word)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The page's lines that formatted text shows: no requests, escapes
    /// of dashes undone, fonts dropped.
    pub(crate) fn plain(page: &str) -> String {
        page.lines()
            .filter(|l| !l.starts_with('.') || l.starts_with(".SH") || l.starts_with(".SS"))
            .map(|l| {
                l.trim_start_matches(".SH ")
                    .trim_start_matches(".SS ")
                    .replace("\\-", "-")
                    .replace("\\fB", "")
                    .replace("\\fI", "")
                    .replace("\\fR", "")
                    .replace("\\&...", "\u{2026}")
                    .replace("\\&", "")
                    .replace("\\*(Aq", "'")
                    .replace('"', "")
            })
            .map(|l| unescape_unicode(&l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `\[u2026]` back to the character.
    fn unescape_unicode(line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("\\[u") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find(']').unwrap() + at;
            let code = u32::from_str_radix(&rest[at + 3..end], 16).unwrap();
            out.push(char::from_u32(code).unwrap());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn what_is_not_ascii_becomes_a_groff_escape() {
        let mut page = Roff::new();
        page.text([roman("cannot fork, \u{2026} \u{2014} caf\u{e9}")]);
        let out = finish(&page);
        assert!(out.is_ascii());
        assert!(
            out.contains("cannot fork, \\&... \\(em caf\\[u00E9]"),
            "{out}"
        );
    }

    #[test]
    fn backticks_mark_bold_and_a_leading_dot_is_no_request() {
        let mut page = Roff::new();
        page.text(marked("run `hawkey check` first"));
        page.text(marked(".hidden"));
        let out = page.to_roff();
        assert!(out.contains("run \\fBhawkey check\\fR first"), "{out}");
        assert!(out.contains("\\&.hidden"), "{out}");
    }
}
