//! A second reading of the YAML, event by event, for the errors serde
//! cannot place: which key's value a position falls in, where a node
//! starts, and which alias first made the aliases outnumber the anchors.
//!
//! serde only knows the key path of what it is deserializing, and the
//! parser scans ahead of it: a broken quote in `workers.user` surfaces
//! while serde still stands at `workers`. The event stream knows exactly
//! which collections are open at any position, so it names the innermost
//! key or index whose value holds it. It runs only once an error is
//! already found, so a valid file pays nothing for it.

use std::borrow::Cow;

use serde_saphyr::granit_parser::{Event, Marker, Parser, Span};

/// A position as the parser counts it: line from 1, column from 0.
type Pos = (usize, usize);

fn pos(marker: &Marker) -> Pos {
    (marker.line(), marker.col())
}

/// A marker as errors print it: line and column, both from 1.
fn printed(marker: &Marker) -> (u32, u32) {
    (marker.line() as u32, marker.col() as u32 + 1)
}

/// The printed line and column just after `before` (the text up to a
/// position): what an error at that position says.
pub(super) fn position_after(before: &str) -> (u32, u32) {
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
        .chars()
        .count()
        + 1;
    (line as u32, column as u32)
}

/// Where the text the parser scanned past its last event (ending at
/// `last_end`) starts, and whether an element of a flow sequence has begun
/// there (right after its '[' or a ',').
fn gap_start(text: &str, last_end: Pos) -> (usize, bool) {
    let start = offset(text, last_end);
    (start, text[..start].trim_end().ends_with(['[', ',']))
}

/// One open collection, and the slot in it being filled.
enum Frame<'a> {
    /// `key` is `Some` once a key is read and until its value is complete.
    Map { key: Option<Cow<'a, str>> },
    /// `index` of the element being read (or next to be read).
    Seq { index: usize },
}

/// The open collections at a point of the event stream.
#[derive(Default)]
struct Cursor<'a> {
    frames: Vec<Frame<'a>>,
    /// The key whose value the last event completed as empty (`key: &a`
    /// then a token the parser refuses: that token was meant as the value).
    empty_value: Option<Cow<'a, str>>,
}

impl<'a> Cursor<'a> {
    /// Whether the next node fills a key (not a value) of a mapping.
    fn at_key(&self) -> bool {
        matches!(self.frames.last(), Some(Frame::Map { key: None }))
    }

    /// A node (scalar, alias or whole collection) was read in the
    /// innermost open collection; `text` is a scalar's value.
    fn complete(&mut self, text: Option<Cow<'a, str>>) {
        match self.frames.last_mut() {
            Some(Frame::Map { key }) => {
                *key = match key {
                    None => Some(text.unwrap_or(Cow::Borrowed("?"))),
                    Some(_) => None,
                }
            }
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }

    /// Moves the cursor over `gap`, text the parser scanned but gave no
    /// events for before it failed: brackets, keys, `,` and `- ` entries,
    /// block collections begun by `key:` or `- ` (a line such as
    /// `- {name: web, address: "x`). Scalars are read roughly, and only as
    /// far as the error. `entered`: whether an element of the innermost
    /// sequence has begun. Returns whether the gap ends inside a slot
    /// (false: between a sequence's elements), or `Err` with the offset in
    /// `gap` of the first collection nested deeper than `max_depth`.
    fn scan_gap(
        &mut self,
        gap: &'a str,
        mut entered: bool,
        max_depth: usize,
    ) -> Result<bool, usize> {
        let mut scalar: Option<Cow<'a, str>> = None;
        // Whether the slot's node was read within the gap (an event for
        // it would have completed it already).
        let mut read = false;
        let mut chars = gap.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let depth = self.frames.len();
            match c {
                '{' => self.frames.push(Frame::Map { key: None }),
                '[' => {
                    self.frames.push(Frame::Seq { index: 0 });
                    entered = true;
                }
                '}' | ']' => {
                    self.frames.pop();
                    (scalar, read) = (None, true);
                }
                ',' => {
                    self.gap_comma(read);
                    (scalar, read, entered) = (None, false, true);
                }
                ':' => {
                    if self.gap_colon(&mut scalar) {
                        read = false;
                    }
                }
                '#' => while chars.next_if(|(_, c)| *c != '\n').is_some() {},
                '"' | '\'' => {
                    let (text, closed) = quoted(&mut chars, c);
                    // Unclosed within the gap: the error is inside it.
                    (scalar, read) = (Some(Cow::Owned(text)), closed);
                }
                // Properties of the next node, not a node.
                '&' | '!' => while chars.next_if(|(_, n)| !n.is_whitespace()).is_some() {},
                '-' if chars.peek().is_none_or(|(_, n)| n.is_whitespace()) => {
                    self.gap_dash(read);
                    (scalar, read, entered) = (None, false, true);
                }
                c if c.is_whitespace() => {}
                _ => {
                    let (text, end, whole) = plain(&gap[i..]);
                    (scalar, read) = (Some(Cow::Borrowed(text)), whole);
                    while chars.next_if(|(j, _)| *j < i + end).is_some() {}
                }
            }
            if self.frames.len() > depth && self.frames.len() > max_depth {
                return Err(i);
            }
        }
        if read {
            // The gap ends after a whole value: past it, not inside it.
            self.complete(None);
            entered = false;
        }
        Ok(entered || !matches!(self.frames.last(), Some(Frame::Seq { .. })))
    }

    /// A `,` in a gap: it ends a mapping's value, or a sequence element
    /// that was `read`.
    fn gap_comma(&mut self, read: bool) {
        match self.frames.last() {
            Some(Frame::Map { key: Some(_) }) => self.complete(None),
            Some(Frame::Seq { .. }) if read => self.complete(None),
            _ => {}
        }
    }

    /// A `:` in a gap, after `scalar` if one was read: it ends a key, or
    /// (`key:` where a value goes) begins a block mapping. Returns whether
    /// it did either; after a key the parser already gave, it does nothing.
    fn gap_colon(&mut self, scalar: &mut Option<Cow<'a, str>>) -> bool {
        if matches!(self.frames.last(), Some(Frame::Map { key: None })) {
            self.complete(scalar.take());
            true
        } else if scalar.is_some() {
            self.frames.push(Frame::Map { key: scalar.take() });
            true
        } else {
            false
        }
    }

    /// A `- ` in a gap: the next element of a block sequence, or (where a
    /// value goes) the first of a new one.
    fn gap_dash(&mut self, read: bool) {
        match self.frames.last() {
            Some(Frame::Seq { .. }) if read => self.complete(None),
            Some(Frame::Seq { .. }) => {}
            _ => self.frames.push(Frame::Seq { index: 0 }),
        }
    }

    /// The key path of the slot being filled, written as serde_path_to_error
    /// writes it (`listen[0].name`, `workers.env.A`): every open value, and
    /// the pending element of a sequence. A mapping waiting for a key adds
    /// nothing: a token there belongs to the mapping, not to a value.
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.frames {
            match frame {
                Frame::Map { key: Some(key) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }
}

/// A quoted scalar in a gap, after its opening `quote`: its text (escapes
/// left as written) and whether it closes within the gap.
fn quoted(chars: &mut impl Iterator<Item = (usize, char)>, quote: char) -> (String, bool) {
    let mut text = String::new();
    for (_, q) in chars {
        if q == quote {
            return (text, true);
        }
        text.push(q);
    }
    (text, false)
}

/// A plain scalar at the start of `rest`: up to a flow indicator, `: ` or
/// a line end. Its text, its length in `rest`, and whether it ends before
/// `rest` does (running to the end of the gap: the error is inside it).
fn plain(rest: &str) -> (&str, usize, bool) {
    let end = rest
        .char_indices()
        .find(|&(j, c)| {
            matches!(c, ',' | '[' | ']' | '{' | '}' | '\n')
                || (c == ':'
                    && rest[j + 1..]
                        .chars()
                        .next()
                        .is_none_or(|n| n.is_whitespace() || n == ','))
        })
        .map_or(rest.len(), |(j, _)| j);
    (rest[..end].trim_end(), end, end < rest.len())
}

/// What a visitor tells the walk after seeing a node or an error.
enum Step {
    Go,
    Stop,
}

/// Reads `text` event by event, keeping the [`Cursor`]. `on_node` sees
/// every node (scalar, alias, collection start) before it is entered, with
/// the cursor at the slot it fills, and can stop the walk. On a parse error
/// the walk ends with the cursor where the parser gave up and the end of
/// the last event it gave.
fn walk<'a>(
    text: &'a str,
    mut on_node: impl FnMut(&Event<'a>, &Span, &Cursor<'a>) -> Step,
) -> Option<(Cursor<'a>, Pos)> {
    let mut cursor = Cursor::default();
    let mut parser = Parser::new_from_str(text);
    let mut last_end = (1, 0);
    while let Some(next) = parser.next_event() {
        let Ok((event, span)) = next else {
            return Some((cursor, last_end));
        };
        last_end = last_end.max(pos(&span.end));
        let empty_value = match (&event, cursor.frames.last()) {
            (Event::Scalar(..), Some(Frame::Map { key: Some(key) })) if span.start == span.end => {
                Some(key.clone())
            }
            _ => None,
        };
        match &event {
            Event::Scalar(..) | Event::Alias(_) | Event::UnresolvedAlias(_) => {
                if let Step::Stop = on_node(&event, &span, &cursor) {
                    return None;
                }
                cursor.complete(match event {
                    Event::Scalar(value, ..) => Some(value),
                    _ => None,
                });
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if let Step::Stop = on_node(&event, &span, &cursor) {
                    return None;
                }
                cursor.frames.push(match event {
                    Event::MappingStart(..) => Frame::Map { key: None },
                    _ => Frame::Seq { index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                cursor.frames.pop();
                cursor.complete(None);
            }
            _ => {}
        }
        cursor.empty_value = empty_value;
    }
    None
}

/// The key path at `line`:`column` (1-based, as errors print it): the
/// innermost key or sequence index whose value holds that position, or
/// whose value starts there; "" at the top level.
pub(super) fn path_at(text: &str, line: u32, column: u32) -> String {
    let at: Pos = (line as usize, (column as usize).saturating_sub(1));
    let mut found = None;
    let failed = walk(text, |_, span, cursor| {
        // A node that starts at or after the position, or holds it: the
        // position is in the slot this node fills.
        if pos(&span.start) >= at || pos(&span.end) > at {
            found = Some(cursor.path());
            Step::Stop
        } else {
            Step::Go
        }
    });
    if let Some(path) = found {
        return path;
    }
    match failed {
        // The parser scans ahead of the events it gives: the collections
        // and keys written between its last event and the error are read
        // here from the text.
        Some((mut cursor, last_end)) => {
            let (start, entered) = gap_start(text, last_end);
            let gap = text.get(start..offset(text, at)).unwrap_or("");
            if let (Some(key), Some(Frame::Map { key: slot })) =
                (cursor.empty_value.take(), cursor.frames.last_mut())
            {
                // An empty value, then the refused token on its line.
                if !gap.contains('\n') && gap.trim().is_empty() {
                    *slot = Some(key);
                }
            }
            if cursor.scan_gap(gap, entered, usize::MAX) == Ok(false) {
                // Between the elements of a sequence: the error is the
                // sequence's, not an element's.
                cursor.frames.pop();
            }
            cursor.path()
        }
        // Past the last event: the top level.
        None => String::new(),
    }
}

/// The byte offset of a parser position in `text`.
fn offset(text: &str, (line, col): Pos) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i)
}

/// The first collection nested deeper than `max` (the root mapping is
/// depth 1), found even where the parser gave up first (its own flow
/// nesting limit): its 1-based line and column, and its key path.
pub(super) fn too_deep(text: &str, max: usize) -> Option<(u32, u32, String)> {
    let mut found = None;
    let failed = walk(text, |event, span, cursor| match event {
        Event::MappingStart(..) | Event::SequenceStart(..) if cursor.frames.len() >= max => {
            let (line, column) = printed(&span.start);
            found = Some((line, column, cursor.path()));
            Step::Stop
        }
        _ => Step::Go,
    });
    if found.is_some() {
        return found;
    }
    let (mut cursor, last_end) = failed?;
    let (start, entered) = gap_start(text, last_end);
    let i = start + cursor.scan_gap(&text[start..], entered, max).err()?;
    // The cursor now stands inside the offending collection: its slot is
    // the path without that last frame.
    cursor.frames.pop();
    let (line, column) = position_after(&text[..i]);
    Some((line, column, cursor.path()))
}

/// Where the value at key path `path` starts (1-based line and column),
/// if the document has one.
pub(super) fn value_start(text: &str, path: &str) -> Option<(u32, u32)> {
    let mut found = None;
    walk(text, |_, span, cursor| {
        if !cursor.at_key() && cursor.path() == path {
            found = Some(printed(&span.start));
            Step::Stop
        } else {
            Step::Go
        }
    });
    found
}

/// The first alias at which the aliases so far number at least `min` and
/// more than `per_anchor` times the anchors defined before it: where an
/// alias storm shows. Its 1-based line and column, key path, and counts.
pub(super) fn alias_storm(
    text: &str,
    min: usize,
    per_anchor: usize,
) -> Option<(u32, u32, String, usize, usize)> {
    let (mut aliases, mut anchors) = (0usize, 0usize);
    let mut found = None;
    walk(text, |event, span, cursor| {
        match event {
            Event::Alias(_) => {
                aliases += 1;
                if aliases >= min && aliases > per_anchor.saturating_mul(anchors) {
                    let (line, column) = printed(&span.start);
                    found = Some((line, column, cursor.path(), aliases, anchors));
                    return Step::Stop;
                }
            }
            Event::Scalar(_, _, anchor, _)
            | Event::MappingStart(_, anchor, _)
            | Event::SequenceStart(_, anchor, _)
                if *anchor != 0 =>
            {
                anchors += 1
            }
            _ => {}
        }
        Step::Go
    });
    found
}

/// Whether key path `inner` lies within `outer` (or is it).
pub(super) fn within(inner: &str, outer: &str) -> bool {
    outer.is_empty()
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_named_by_the_innermost_value_holding_it() {
        let text = "workers:\n  user: 'broken\n";
        assert_eq!(path_at(text, 2, 9), "workers.user");
        let text = "listen:\n  - {name: web, address: \"x\n";
        assert_eq!(path_at(text, 2, 5), "listen[0]");
        assert_eq!(path_at(text, 2, 26), "listen[0].address");
        let text = "workers:\n  command: [\"a\", \"b\n";
        assert_eq!(path_at(text, 2, 17), "workers.command[1]");
    }

    #[test]
    fn a_position_where_a_key_belongs_names_the_mapping() {
        let text = "workers:\n  count: 1\n  bogus: [\n";
        assert_eq!(path_at(text, 3, 3), "workers");
        assert_eq!(path_at("a: 1\n---\nb: 2\n", 2, 1), "");
    }

    #[test]
    fn values_are_found_by_path() {
        let text = "listen:\n  - name: a\n    backlog: 3\n";
        assert_eq!(value_start(text, "listen[0]"), Some((2, 5)));
        assert_eq!(value_start(text, "listen[0].backlog"), Some((3, 14)));
        assert_eq!(value_start(text, "workers.nothing"), None);
    }

    #[test]
    fn an_alias_storm_shows_at_the_alias_that_breaks_the_ratio() {
        let mut text = String::from("l:\n  - &a x\n");
        for _ in 0..30 {
            text.push_str("  - *a\n");
        }
        assert_eq!(
            alias_storm(&text, 11, 10),
            Some((13, 5, "l[11]".to_string(), 11, 1))
        );
        assert_eq!(alias_storm(&text, 100, 10), None);
    }

    #[test]
    fn paths_nest_at_their_separators() {
        assert!(within("workers.env", "workers"));
        assert!(within("listen[0]", "listen"));
        assert!(within("anything", ""));
        assert!(!within("workersx", "workers"));
        assert!(!within("workers", "workers.env"));
    }
}
