//! Where an unclosed flow collection (`{ … }`, `[ … ]`) opened.
//!
//! The YAML parser notices an unclosed `{` only where the text stops
//! making sense, often lines later (`workers: {count: 2` then `app:
//! builtin` on the next line is reported on line 2), and names neither
//! the bracket nor where it was. [`unclosed_before`] reads the text up to
//! the place the parser stopped and finds the innermost collection still
//! open there, so the error can name both places.
//!
//! It is a scanner of YAML's indicators, not a parser: it skips quoted
//! scalars and comments, and takes `[` or `{` as an opening bracket only
//! where a value or an entry starts, or anywhere inside a flow collection
//! (where plain scalars may not contain them). Block scalars (`|`, `>`)
//! holding brackets could mislead it; the parser has usually failed
//! before it gets that far wrong, and its only use is to add a hint.

/// An opening bracket: line and column (1-based, in characters, as the
/// parser counts them) and the bracket itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Opened {
    pub(super) line: u32,
    pub(super) column: u32,
    pub(super) bracket: char,
}

/// The innermost flow collection still open just before `line:column`.
pub(super) fn unclosed_before(text: &str, line: u32, column: u32) -> Option<Opened> {
    let mut open: Vec<Opened> = Vec::new();
    let mut quote: Option<char> = None;
    // The last character that was not a blank, on this line, and whether
    // a blank followed it: decides whether a bracket or quote starts a node.
    for (n, text_line) in text.split('\n').enumerate() {
        let n = n as u32 + 1;
        if n > line {
            break;
        }
        let mut previous: Option<char> = None;
        let mut blank_after = false;
        let mut chars = text_line.chars().enumerate().peekable();
        while let Some((c, ch)) = chars.next() {
            let c = c as u32 + 1;
            if n == line && c >= column {
                return open.last().copied();
            }
            if let Some(q) = quote {
                match ch {
                    '\\' if q == '"' => {
                        chars.next();
                    }
                    '\'' if q == '\'' && chars.peek().map(|p| p.1) == Some('\'') => {
                        chars.next();
                    }
                    _ if ch == q => quote = None,
                    _ => {}
                }
                continue;
            }
            let starts_node = match previous {
                None => true,
                Some('[' | '{' | ',') => true,
                Some(':' | '-' | '?') => blank_after || !open.is_empty(),
                Some(_) => false,
            };
            match ch {
                ' ' | '\t' | '\r' => {
                    blank_after = true;
                    continue;
                }
                '#' if previous.is_none() || blank_after => break,
                '"' | '\'' if starts_node => quote = Some(ch),
                '[' | '{' if starts_node || !open.is_empty() => open.push(Opened {
                    line: n,
                    column: c,
                    bracket: ch,
                }),
                ']' | '}' if !open.is_empty() => {
                    open.pop();
                }
                _ => {}
            }
            previous = Some(ch);
            blank_after = false;
        }
    }
    open.last().copied()
}

/// The parser's words for a broken flow collection, reworded to name
/// where it opened, when that is on an earlier line than the error.
pub(super) fn reword(text: &str, line: u32, column: u32, message: &str) -> Option<String> {
    if message.contains("unclosed") {
        return None;
    }
    let opened = unclosed_before(text, line, column)?;
    if opened.line >= line {
        return None;
    }
    let detail = message
        .trim_start_matches("while parsing a flow mapping, ")
        .trim_start_matches("while parsing a flow sequence, ");
    Some(format!(
        "unclosed '{}' from line {}, column {}: {detail}",
        opened.bracket, opened.line, opened.column
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32, bracket: char) -> Option<Opened> {
        Some(Opened {
            line,
            column,
            bracket,
        })
    }

    #[test]
    fn finds_the_brace_left_open_on_an_earlier_line() {
        let text = "workers: {count: 2\napp: builtin\n";
        assert_eq!(unclosed_before(text, 2, 4), at(1, 10, '{'));
        assert_eq!(
            reword(
                text,
                2,
                4,
                "while parsing a flow mapping, did not find expected ',' or '}'"
            )
            .unwrap(),
            "unclosed '{' from line 1, column 10: did not find expected ',' or '}'"
        );
    }

    #[test]
    fn names_the_innermost_open_collection() {
        let text = "listen: [{name: a, address: \"x\"}\nworkers:\n  count: 2\n";
        assert_eq!(unclosed_before(text, 2, 8), at(1, 9, '['));
        let text = "a: [1, {b: [2, 3]\nc: 1\n";
        assert_eq!(unclosed_before(text, 2, 2), at(1, 8, '{'));
    }

    #[test]
    fn closed_collections_quotes_comments_and_plain_brackets_are_not_openers() {
        for text in [
            "a: [1, 2]\nb: c\n",
            "a: \"[{\"\nb: c\n",
            "a: '['' ['\nb: c\n",
            "a: x # [ {\nb: c\n",
            "a: x[y\nb: c\n",
            "a: \"q\\\"[\"\nb: c\n",
        ] {
            assert_eq!(unclosed_before(text, 2, 2), None, "{text:?}");
        }
    }

    #[test]
    fn an_error_on_the_opening_line_keeps_the_parsers_words() {
        let text = "a: [1, 2: 3]\n";
        assert_eq!(
            reword(text, 1, 9, "illegal placement of ':' indicator"),
            None
        );
        assert_eq!(reword("a: {b\n", 1, 4, "unclosed bracket '{'"), None);
    }
}
