//! Output for people and for scripts: plain aligned tables, JSON, and number formatting.
//!
//! Names and other text that users (or API clients) wrote may carry control characters and
//! Unicode bidirectional controls: raw on a terminal they could clear the screen, set the
//! window title, recolour or reverse the text after them. Everything printed goes through
//! [`print`], which shows them as visible escapes (`\u{1b}`); a single value (a table cell,
//! a name in a line) goes through [`terminal_safe`], which escapes line breaks too.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::Context;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;

/// A table in the style of `ps` or `kubectl get`: a header, aligned columns, no borders,
/// easy to read and to cut with `awk`.
pub struct Plain {
    table: Table,
    right: Vec<usize>,
}

impl Plain {
    pub fn new(header: &[&str]) -> Plain {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header.iter().map(|h| h.to_uppercase()));
        Plain {
            table,
            right: Vec::new(),
        }
    }

    /// Right-aligns the given columns (numbers).
    pub fn right(mut self, columns: &[usize]) -> Plain {
        self.right = columns.to_vec();
        self
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.table.add_row(
            cells
                .into_iter()
                .map(|c| terminal_safe(&c.into()).into_owned())
                .collect::<Vec<String>>(),
        );
    }

    /// The table as text, each line without trailing spaces, ending in a newline.
    pub fn render(mut self) -> String {
        for &i in &self.right {
            if let Some(col) = self.table.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = String::new();
        for line in self.table.to_string().lines() {
            // The NOTHING preset pads each cell by one space on the left.
            let line = line.strip_prefix(' ').unwrap_or(line);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Whether a character must not reach a terminal as it is: the control characters (C0 with
/// NUL, BEL, ESC and line breaks; DEL; C1), the Unicode bidirectional controls and the
/// Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{61c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every character that `escape` selects written as `\u{..}`.
fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One value (a name, a description, a message) safe to print on a terminal and on one
/// line: control and bidirectional characters, line breaks and tabs included, become
/// visible escapes like `\u{1b}`. Borrowed when nothing changes.
pub fn terminal_safe(value: &str) -> Cow<'_, str> {
    escape_where(value, is_unsafe)
}

/// JSON text with the characters serde_json leaves raw inside strings (DEL, C1,
/// bidirectional controls) written as JSON escapes (`\u202e`): the same JSON value, safe
/// on a terminal. serde_json already escapes C0 inside strings, so any C0 left is the
/// layout's own whitespace.
pub fn json_safe(text: &str) -> Cow<'_, str> {
    let escape = |c: char| u32::from(c) >= 0x20 && is_unsafe(c);
    if !text.chars().any(escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            // All of them are in the Basic Multilingual Plane: one `\uXXXX` each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes text to stdout, lines kept and everything else unsafe escapes
/// ([`terminal_safe`]).
pub fn print(text: &str) -> anyhow::Result<()> {
    let text = escape_where(text, |c| c != '\n' && is_unsafe(c));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Writes a value as pretty JSON to stdout, with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    print(&json_safe(&text))
}

/// `1234567` as `1,234,567`.
pub fn count(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A duration for people: `850ms`, `1.24s`, `2m05s`.
pub fn duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Singular or plural: `plural(1, "rule")` is `1 rule`, `plural(3, "rule")` is `3 rules`.
pub fn plural(n: impl Into<i128>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", count(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-4_500), "-4,500");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(1_240)), "1.24s");
        assert_eq!(duration(Duration::from_millis(125_000)), "2m05s");
        assert_eq!(plural(1, "rule"), "1 rule");
        assert_eq!(plural(1200, "user"), "1,200 users");
    }

    /// Every character the terminal must not see raw, and its escape.
    const NASTY: [(char, &str); 17] = [
        ('\0', "\\u{0}"),
        ('\u{7}', "\\u{7}"),
        ('\u{1b}', "\\u{1b}"),
        ('\t', "\\u{9}"),
        ('\r', "\\u{d}"),
        ('\u{7f}', "\\u{7f}"),
        ('\u{85}', "\\u{85}"),
        ('\u{9b}', "\\u{9b}"),
        ('\u{61c}', "\\u{61c}"),
        ('\u{200e}', "\\u{200e}"),
        ('\u{200f}', "\\u{200f}"),
        ('\u{202a}', "\\u{202a}"),
        ('\u{202e}', "\\u{202e}"),
        ('\u{2066}', "\\u{2066}"),
        ('\u{2069}', "\\u{2069}"),
        ('\u{2028}', "\\u{2028}"),
        ('\u{2029}', "\\u{2029}"),
    ];

    #[test]
    fn control_and_bidi_characters_become_visible_escapes() {
        assert!(matches!(
            terminal_safe("Tier 1 — São Paulo ✓"),
            Cow::Borrowed(_)
        ));
        for (c, escaped) in NASTY {
            assert_eq!(terminal_safe(&format!("a{c}b")), format!("a{escaped}b"));
        }
        assert_eq!(terminal_safe("a\nb"), "a\\u{a}b");
        assert_eq!(
            terminal_safe("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
    }

    #[test]
    fn json_stays_the_same_valid_json_without_raw_bidi_or_c1() {
        let name: String = NASTY.iter().map(|(c, _)| *c).chain(['\n', 'x']).collect();
        let text =
            serde_json::to_string_pretty(&serde_json::json!({"rule_name": name})).expect("json");
        let safe = json_safe(&text);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe}");
        assert!(safe.contains("\\u202e"), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back["rule_name"], name);
        assert!(matches!(
            json_safe("{\n  \"a\": \"é\"\n}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut t = Plain::new(&["id", "name"]);
        t.row(["1", "Evil\u{1b}[2J\nfake row\u{202e}"]);
        assert_eq!(
            t.render(),
            "ID  NAME\n1   Evil\\u{1b}[2J\\u{a}fake row\\u{202e}\n"
        );
    }

    #[test]
    fn tables_align_without_borders_or_trailing_space() {
        let mut t = Plain::new(&["id", "name", "members"]).right(&[0, 2]);
        t.row(["1", "Travellers", "1,200"]);
        t.row(["12", "UPI only", "7"]);
        assert_eq!(
            t.render(),
            "ID  NAME        MEMBERS\n 1  Travellers    1,200\n12  UPI only          7\n"
        );
    }
}
