//! Output for people and for scripts: plain aligned tables, JSON, and number formatting.

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
        self.table
            .add_row(cells.into_iter().map(Into::into).collect::<Vec<String>>());
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

/// Writes text to stdout.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

/// Writes a value as pretty JSON to stdout, with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    print(&text)
}

/// `1234567` as `1,234,567`.
pub fn count(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
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
