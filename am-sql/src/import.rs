//! CSV import into the data tables (`users`, `user_locations`, `credit_card_transactions`,
//! `upi_transactions`).
//!
//! A header that does not name the table's columns refuses the whole file
//! ([`Error::BadHeader`]). Every row is validated before anything is kept: a file with bad
//! rows imports nothing and reports each bad row with its line number (the header is line 1)
//! and reason, unless the
//! caller asks to skip bad rows, in which case the good rows are imported and the bad ones
//! counted. The whole file goes in one transaction.
//!
//! A quote left open hides the lines after it inside one value (the csv crate reads on to
//! the next quote, or to the end of the file, without complaint). So a quoted value that
//! never closes, or that runs over several lines of a bad row, refuses the whole file even
//! when skipping bad rows, naming the line: skipping that one "row" would drop the good
//! rows it swallowed without a word.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;

use sea_query::{Alias, Expr, ExprTrait, Query, Value, Values};

use crate::conn::{Conn, TxMode, transaction};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// One bad row of a CSV file: its line as the user sees it (the header is line 1) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// The bad rows of a file that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(self))]
pub struct ImportErrors {
    pub table: &'static str,
    /// The first bad rows, in file order (at most [`MAX_REPORTED`]).
    pub errors: Vec<RowError>,
    /// How many rows were bad in all.
    pub total: u64,
    /// The line of the first bad row whose quoted value runs over other lines (or never
    /// closes): it may hide rows, so the file was refused even when skipping bad rows.
    pub quote_line: Option<u64>,
}

/// How many bad rows an import reports one by one.
pub const MAX_REPORTED: usize = 100;

fn describe(e: &ImportErrors) -> String {
    let mut out = format!(
        "{} bad row{} in the {} file, nothing imported",
        e.total,
        if e.total == 1 { "" } else { "s" },
        e.table
    );
    if let Some(line) = e.quote_line {
        out.push_str(&format!(
            " (the quoted value on line {line} may hide rows, so bad rows cannot be skipped)"
        ));
    }
    for row in &e.errors {
        out.push_str(&format!("; line {}: {}", row.line, row.message));
    }
    let shown = e.errors.len() as u64;
    if e.total > shown {
        out.push_str(&format!("; and {} more", e.total - shown));
    }
    out
}

/// Which table a file goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportTable {
    Users,
    Locations,
    CreditCard,
    Upi,
}

impl ImportTable {
    /// The table's name in the database.
    pub fn table_name(self) -> &'static str {
        match self {
            ImportTable::Users => "users",
            ImportTable::Locations => "user_locations",
            ImportTable::CreditCard => "credit_card_transactions",
            ImportTable::Upi => "upi_transactions",
        }
    }

    /// The columns a file must have (in any order), named as in the contract.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ImportTable::Users => &["user_id", "name", "email", "city_tier", "created_at"],
            ImportTable::Locations => &["user_id", "latitude", "longitude", "updated_at"],
            ImportTable::CreditCard => &[
                "transaction_id",
                "user_id",
                "amount",
                "merchant",
                "category",
                "transaction_date",
            ],
            ImportTable::Upi => &[
                "transaction_id",
                "user_id",
                "amount",
                "description",
                "category",
                "transaction_date",
            ],
        }
    }

    /// From a table name (`users`, `user_locations`, `credit_card_transactions`,
    /// `upi_transactions`) or a short name (`locations`, `credit_card`, `upi`).
    pub fn parse(s: &str) -> Option<ImportTable> {
        match s {
            "users" => Some(ImportTable::Users),
            "user_locations" | "locations" => Some(ImportTable::Locations),
            "credit_card_transactions" | "credit_card" => Some(ImportTable::CreditCard),
            "upi_transactions" | "upi" => Some(ImportTable::Upi),
            _ => None,
        }
    }

    /// The column holding the user a row belongs to.
    fn user_column(self) -> usize {
        match self {
            ImportTable::Users | ImportTable::Locations => 0,
            ImportTable::CreditCard | ImportTable::Upi => 1,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// Import the good rows of a file that has bad ones (reporting them) instead of nothing.
    pub skip_bad_rows: bool,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    /// Bad rows left out (only with `skip_bad_rows`).
    pub skipped: u64,
    /// The first bad rows with their reasons (at most [`MAX_REPORTED`]).
    pub errors: Vec<RowError>,
}

/// A validated value ready to bind.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    fn value(&self) -> Value {
        match self {
            Cell::Null => Value::BigInt(None),
            Cell::Integer(i) => Value::BigInt(Some(*i)),
            Cell::Real(f) => Value::Double(Some(*f)),
            Cell::Text(t) => Value::String(Some(t.clone())),
        }
    }
}

/// Imports a CSV file (with a header line) into a data table; see the module docs.
pub fn import_csv(
    conn: &mut dyn Conn,
    table: ImportTable,
    reader: impl Read,
    options: ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    CsvFile::open(table, reader)?.import(conn, options, progress)
}

/// A CSV file whose header line has been read and checked, ready to import: a caller can
/// refuse a wrong file before it opens (or creates) a database.
pub struct CsvFile<R: Read> {
    table: ImportTable,
    csv: csv::Reader<Input<R>>,
    /// For each of the table's columns, its position in the file.
    header: Vec<usize>,
}

impl<R: Read> CsvFile<R> {
    /// Reads the header line; [`Error::BadHeader`] says what is missing, unknown or repeated.
    pub fn open(table: ImportTable, reader: R) -> Result<Self> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::Headers)
            .from_reader(Input::new(reader));
        let header = read_header(&mut csv, table)?;
        Ok(CsvFile { table, csv, header })
    }

    /// Imports the rows; see the module docs.
    pub fn import(
        self,
        conn: &mut dyn Conn,
        options: ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportReport> {
        let CsvFile {
            table,
            mut csv,
            header,
        } = self;
        import_rows(conn, table, &mut csv, &header, options, progress)
    }
}

fn import_rows<R: Read>(
    conn: &mut dyn Conn,
    table: ImportTable,
    csv: &mut csv::Reader<Input<R>>,
    header: &[usize],
    options: ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    // One transaction: all rows or none, and one data-version bump for the file; change
    // tracking is paused inside it only (see `Dialect::bulk_load_begin`).
    transaction(conn, TxMode::Write, |conn| {
        conn.dialect().bulk_load_begin(conn)?;
        let (report, touched) = import_in(conn, table, csv, header, options, progress)?;
        conn.dialect().bulk_load_end(conn)?;
        if report.imported > 0 {
            crate::tracking::bump_data_version(conn)?;
            crate::tracking::log_changed_users(conn, &touched)?;
        }
        Ok(report)
    })
    .inspect(|report| progress.finish(&format!("{} rows imported", report.imported)))
}

fn import_in<R: Read>(
    conn: &mut dyn Conn,
    table: ImportTable,
    csv: &mut csv::Reader<Input<R>>,
    header: &[usize],
    options: ImportOptions,
    progress: &dyn Progress,
) -> Result<(ImportReport, BTreeSet<i64>)> {
    let mut bad = BadRows::default();
    // The users the imported rows belong to, for the change log.
    let mut touched = BTreeSet::new();
    // The first line whose quoted value may hide rows (see the module docs).
    let mut quote_line = None;
    let mut imported = 0u64;
    {
        let columns = table.columns();
        let dialect = conn.dialect();
        // Built once, run with each row's values.
        let (insert, _) = dialect.build(
            Query::insert()
                .into_table(Alias::new(table.table_name()))
                .columns(columns.iter().map(|c| Alias::new(*c)))
                .values_panic(columns.iter().map(|_| Expr::val(0i64))),
        );
        let key = columns[0];
        // The key is the only value bound: `exists` binds it alone.
        let probe = |table: &str, column: &str| {
            dialect
                .build(
                    Query::select()
                        .expr(Expr::cust("1"))
                        .from(Alias::new(table))
                        .and_where(Expr::col(Alias::new(column)).eq(0i64)),
                )
                .0
        };
        let key_exists = probe(table.table_name(), key);
        let user_exists = probe("users", "user_id");
        let mut seen_keys: HashSet<i64> = HashSet::new();

        progress.begin(&format!("importing {}", table.table_name()), None);
        let mut bytes = csv::ByteRecord::new();
        loop {
            let before = csv.position().line();
            if !csv.read_byte_record(&mut bytes)? {
                break;
            }
            // csv reports where reading began, before any blank lines it skipped, so the
            // first line is found back from the end: every record ends with a newline
            // (`Input`), and quoted fields may hold more.
            let inner: u64 = bytes
                .iter()
                .map(|f| f.iter().filter(|b| **b == b'\n').count() as u64)
                .sum();
            let end = csv.position().line().saturating_sub(1);
            let line = std::cmp::max(end.saturating_sub(inner), before);
            if let Some(opened) = csv.get_ref().quote_open_at_end()
                && csv.position().byte() == csv.get_ref().bytes
            {
                // This record runs to the end of the file inside that quote.
                let hidden = end.saturating_sub(opened);
                let after = if hidden == 0 {
                    String::new()
                } else {
                    format!(
                        ": the {hidden} line{} after it were read as part of this row",
                        if hidden == 1 { "" } else { "s" }
                    )
                };
                bad.push(
                    opened,
                    format!("a quoted value opens on this line and is never closed{after}"),
                );
                quote_line.get_or_insert(opened);
                break;
            }
            let record = match csv::StringRecord::from_byte_record(std::mem::take(&mut bytes)) {
                Ok(record) => record,
                Err(e) => {
                    bytes = e.into_byte_record();
                    let problem = "the row is not valid UTF-8 text".to_string();
                    bad.push(line, spans_lines(problem, line, end, &mut quote_line));
                    continue;
                }
            };
            if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
                bytes = record.into_byte_record();
                continue; // a line of spaces
            }
            let (cells, mut problems) = check_row(table, header, &record);
            if let Some(Cell::Integer(id)) = cells.first() {
                let id = *id;
                if !seen_keys.insert(id) {
                    problems.push(format!(
                        "duplicate {key} {id} (already earlier in the file)"
                    ));
                } else if exists(conn, &key_exists, id)? {
                    problems.push(format!(
                        "{key} {id} already exists in {}",
                        table.table_name()
                    ));
                }
            }
            if table != ImportTable::Users
                && let Some(Cell::Integer(user)) = cells.get(table.user_column())
                && !exists(conn, &user_exists, *user)?
            {
                problems.push(format!("user_id {user} does not exist in users"));
            }
            let checked = if problems.is_empty() {
                Ok(cells)
            } else {
                Err(problems)
            };
            bytes = record.into_byte_record();
            match checked {
                Ok(cells) => {
                    // After the first bad row of an all-or-nothing import (or a quote that
                    // may hide rows) nothing will be kept, so only validation goes on.
                    if bad.total == 0 || (options.skip_bad_rows && quote_line.is_none()) {
                        conn.execute_sql(&insert, Values(cells.iter().map(Cell::value).collect()))?;
                        if let Some(Cell::Integer(user)) = cells.get(table.user_column()) {
                            touched.insert(*user);
                        }
                        imported += 1;
                        if imported.is_multiple_of(10_000) {
                            progress.advance(10_000);
                        }
                    }
                }
                Err(problems) => {
                    let problems = problems.join("; ");
                    bad.push(line, spans_lines(problems, line, end, &mut quote_line));
                }
            }
        }
        progress.advance(imported % 10_000);
    }

    if bad.total > 0 && (!options.skip_bad_rows || quote_line.is_some()) {
        progress.finish("nothing imported");
        // The error rolls back every insert and the pause of change tracking.
        return Err(Error::Import(ImportErrors {
            table: table.table_name(),
            errors: bad.rows,
            total: bad.total,
            quote_line,
        }));
    }
    Ok((
        ImportReport {
            imported,
            skipped: bad.total,
            errors: bad.rows,
        },
        touched,
    ))
}

/// A bad row's problems, and when the row runs from `line` on to `end` (a quoted value
/// holding line breaks) a note that a closing quote may be missing; the first such row is
/// kept in `quote_line`, as it may hide good rows.
fn spans_lines(problems: String, line: u64, end: u64, quote_line: &mut Option<u64>) -> String {
    if end <= line {
        return problems;
    }
    quote_line.get_or_insert(line);
    format!(
        "{problems}; a quoted value in this row runs on to line {end}: is a closing quote missing?"
    )
}

/// The file as the csv reader sees it: a final newline is added to input that lacks one,
/// so every record ends with a terminator (which line numbering relies on), and quotes are
/// followed the way the csv reader follows them, to tell whether the file ends inside a
/// quoted value (which the csv reader does not report).
struct Input<R> {
    inner: R,
    last: u8,
    done: bool,
    /// Bytes handed to the csv reader so far.
    bytes: u64,
    /// The line being read (the header is line 1).
    line: u64,
    quote: QuoteState,
    /// The line where the last quoted value opened.
    opened: u64,
}

/// Where a byte falls, as in csv-core's reader (double quotes escape a quote).
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    /// At the start of a field, where a quote opens a quoted value.
    FieldStart,
    /// In an unquoted value, where a quote is an ordinary character.
    Unquoted,
    Quoted,
    /// Just after a quote inside a quoted value: another quote escapes it, anything else
    /// closes the value.
    QuoteInQuoted,
}

impl<R> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            last: b'\n',
            done: false,
            bytes: 0,
            line: 1,
            quote: QuoteState::FieldStart,
            opened: 0,
        }
    }

    /// The line where a quoted value opened that is still open at the end of the file.
    fn quote_open_at_end(&self) -> Option<u64> {
        (self.done && self.quote == QuoteState::Quoted).then_some(self.opened)
    }

    fn follow_quotes(&mut self, bytes: &[u8]) {
        use QuoteState::*;
        for &b in bytes {
            let ends_field = matches!(b, b',' | b'\n' | b'\r');
            self.quote = match (self.quote, b) {
                (FieldStart, b'"') => {
                    self.opened = self.line;
                    Quoted
                }
                (Quoted, b'"') => QuoteInQuoted,
                (Quoted, _) => Quoted,
                (QuoteInQuoted, b'"') => Quoted,
                (_, _) if ends_field => FieldStart,
                (_, _) => Unquoted,
            };
            if b == b'\n' {
                self.line += 1;
            }
        }
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let mut n = self.inner.read(buf)?;
        if n > 0 {
            self.last = buf[n - 1];
        } else {
            self.done = true;
            if self.last != b'\n' {
                buf[0] = b'\n';
                n = 1;
            }
        }
        self.follow_quotes(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct BadRows {
    rows: Vec<RowError>,
    total: u64,
}

impl BadRows {
    fn push(&mut self, line: u64, message: String) {
        self.total += 1;
        if self.rows.len() < MAX_REPORTED {
            self.rows.push(RowError { line, message });
        }
    }
}

/// Whether the probe `SELECT 1 FROM <table> WHERE <key> = $1` finds `id`.
fn exists(conn: &mut dyn Conn, probe: &str, id: i64) -> Result<bool> {
    let mut found = false;
    conn.query_sql(probe, Values(vec![id.into()]), &mut |_| {
        found = true;
        Ok(())
    })?;
    Ok(found)
}

/// Maps each of the table's columns to its position in the file, or refuses the file
/// ([`Error::BadHeader`]) saying what is missing, unknown or repeated and what is expected.
fn read_header<R: Read>(csv: &mut csv::Reader<R>, table: ImportTable) -> Result<Vec<usize>> {
    let header_error = |problem: String| Error::BadHeader {
        table: table.table_name(),
        message: format!("{problem}; expected {}", table.columns().join(",")),
    };
    let list = |what: &str, names: &[&str]| {
        format!(
            "{what} column{} {}",
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    };
    let names = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => match e.kind() {
            csv::ErrorKind::Utf8 { .. } => {
                return Err(header_error("not valid UTF-8 text".into()));
            }
            _ => return Err(Error::from(e)),
        },
    };
    let expected = table.columns();
    if names.is_empty() || (names.len() == 1 && names.get(0) == Some("")) {
        return Err(header_error("the file is empty".into()));
    }
    if names.iter().any(|n| n.contains('\n')) {
        // Else the message would quote the swallowed lines as one unknown column.
        return Err(header_error(
            "a quoted column name runs over several lines: is a closing quote missing on line 1?"
                .into(),
        ));
    }
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let unknown: Vec<&str> = names.iter().filter(|n| !expected.contains(n)).collect();
    let repeated: Vec<&str> = names.iter().filter(|n| !seen.insert(*n)).collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|c| !names.iter().any(|n| n == *c))
        .collect();
    if !missing.is_empty() {
        problems.push(list("missing", &missing));
    }
    if !unknown.is_empty() {
        problems.push(list("unknown", &unknown));
    }
    if !repeated.is_empty() {
        problems.push(list("repeated", &repeated));
    }
    if !problems.is_empty() {
        return Err(header_error(problems.join("; ")));
    }
    Ok(expected
        .iter()
        .map(|c| names.iter().position(|n| n == *c).unwrap_or_default())
        .collect())
}

/// Validates one row: its values in the table's column order (null where a value is bad)
/// and every problem found.
fn check_row(
    table: ImportTable,
    header: &[usize],
    record: &csv::StringRecord,
) -> (Vec<Cell>, Vec<String>) {
    if record.len() != header.len() {
        let found = format!("expected {} fields, found {}", header.len(), record.len());
        return (Vec::new(), vec![found]);
    }
    let mut problems = Vec::new();
    let mut cells = Vec::with_capacity(header.len());
    for (column, &at) in table.columns().iter().zip(header) {
        let raw = record.get(at).unwrap_or_default().trim();
        let cell = match (*column, raw.is_empty()) {
            ("user_id" | "transaction_id", true) => Err(format!("{column} is required")),
            ("amount" | "latitude" | "longitude", true) => Err(format!("{column} is required")),
            ("transaction_date", true) => Err("transaction_date is required".to_string()),
            (_, true) => Ok(Cell::Null),
            ("user_id" | "transaction_id" | "city_tier", false) => raw
                .parse::<i64>()
                .map(Cell::Integer)
                .map_err(|_| format!("{column} {raw:?} is not an integer")),
            ("amount", false) => parse_amount(raw)
                .map(|cents| Cell::Real(cents as f64 / 100.0))
                .ok_or_else(|| {
                    format!("amount {raw:?} is not a number with at most 2 decimal places")
                }),
            ("latitude", false) => degrees(raw, 90.0)
                .map(Cell::Real)
                .ok_or_else(|| format!("latitude {raw:?} is not a number from -90 to 90")),
            ("longitude", false) => degrees(raw, 180.0)
                .map(Cell::Real)
                .ok_or_else(|| format!("longitude {raw:?} is not a number from -180 to 180")),
            ("created_at" | "transaction_date" | "updated_at", false) => {
                normalise_time(raw).map(Cell::Text).ok_or_else(|| {
                    format!(
                        "{column} {raw:?} is not a valid time like 2025-01-31 13:45:00 or a date \
                         like 2025-01-31 (a real day, hours 00-23, minutes and seconds 00-59)"
                    )
                })
            }
            ("email", false) if !raw.contains('@') => {
                Err(format!("email {raw:?} is not an email address"))
            }
            (_, false) => Ok(Cell::Text(raw.to_owned())),
        };
        match cell {
            Ok(c) => cells.push(c),
            Err(p) => {
                problems.push(p);
                cells.push(Cell::Null);
            }
        }
    }
    (cells, problems)
}

/// A decimal number of degrees from `-limit` to `limit` (no `NaN`, `inf` or exponent).
fn degrees(raw: &str, limit: f64) -> Option<f64> {
    let plain = raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    let value: f64 = raw.parse().ok().filter(|_| plain)?;
    (-limit..=limit).contains(&value).then_some(value + 0.0)
}

/// Parses a decimal amount with at most two decimal places into cents.
fn parse_amount(raw: &str) -> Option<i64> {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (whole.is_empty() && digits.ends_with('.'))
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().ok()? * 10,
        _ => fraction.parse().ok()?,
    };
    let cents = whole.checked_mul(100)?.checked_add(fraction)?;
    Some(if negative { -cents } else { cents })
}

/// `YYYY-MM-DD HH:MM:SS`, ISO 8601 `YYYY-MM-DDTHH:MM:SS` with an optional `Z`, or a date
/// `YYYY-MM-DD` (midnight, as rules read a date), as `YYYY-MM-DD HH:MM:SS`. `None` for
/// anything else and for times that do not exist, which SQLite's date functions would read
/// as null: second 60, February 30th, years outside 0000-9999.
fn normalise_time(raw: &str) -> Option<String> {
    use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
    let fmt = am_core::expr::TIMESTAMP_FORMAT;
    let iso = raw.strip_suffix('Z').unwrap_or(raw);
    let t = NaiveDateTime::parse_from_str(raw, fmt)
        .or_else(|_| NaiveDateTime::parse_from_str(iso, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(raw, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN)))
        .ok()?;
    // chrono reads second 60 as a leap second, kept in the nanoseconds (`%S` takes no
    // fractions, so any nanoseconds mean one).
    let real = t.nanosecond() == 0 && (0..=9999).contains(&t.year());
    real.then(|| t.format(fmt).to_string())
}

impl crate::Store {
    /// Imports a CSV file whose header was checked (see [`CsvFile::import`]).
    pub fn import<R: Read>(
        &self,
        file: CsvFile<R>,
        options: ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportReport> {
        file.import(self.connection()?.as_mut(), options, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_have_at_most_two_decimals() {
        assert_eq!(parse_amount("12.5"), Some(1250));
        assert_eq!(parse_amount("999.70"), Some(99_970));
        assert_eq!(parse_amount("7"), Some(700));
        assert_eq!(parse_amount("0.05"), Some(5));
        assert_eq!(parse_amount(".5"), Some(50));
        assert_eq!(parse_amount("-3.10"), Some(-310));
        for bad in [
            "1.234",
            "abc",
            "1e3",
            "",
            ".",
            "1.2.3",
            "--1",
            "12,5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }

    #[test]
    fn degrees_are_plain_numbers_in_range() {
        assert_eq!(degrees("12.9716", 90.0), Some(12.9716));
        assert_eq!(degrees("-90", 90.0), Some(-90.0));
        assert_eq!(degrees("+180", 180.0), Some(180.0));
        assert_eq!(
            degrees("-0", 90.0).map(f64::to_bits),
            Some(0.0f64.to_bits())
        );
        for bad in ["90.0001", "NaN", "inf", "1e1", "", "12,5", "north"] {
            assert_eq!(degrees(bad, 90.0), None, "{bad}");
        }
    }

    #[test]
    fn times_are_normalised() {
        assert_eq!(
            normalise_time("2025-01-31 13:45:00").as_deref(),
            Some("2025-01-31 13:45:00")
        );
        assert_eq!(
            normalise_time("2025-01-31T13:45:00Z").as_deref(),
            Some("2025-01-31 13:45:00")
        );
        assert_eq!(
            normalise_time("2025-01-31T13:45:00").as_deref(),
            Some("2025-01-31 13:45:00")
        );
        assert_eq!(
            normalise_time("2026-11-30").as_deref(),
            Some("2026-11-30 00:00:00")
        );
        assert_eq!(
            normalise_time("2024-02-29 23:59:59").as_deref(),
            Some("2024-02-29 23:59:59")
        );
        for impossible in [
            "2025-02-01 00:00:60",
            "2025-02-01T23:59:60Z",
            "2025-02-30 00:00:00",
            "2025-02-29",
            "2025-13-01 00:00:00",
            "2025-01-01 24:00:00",
            "2025-01-01 00:60:00",
            "+12025-01-01 00:00:00",
            "-0001-01-01 00:00:00",
            "31/01/2025",
            "2025-01-31 13:45",
            "2025-01-31 13:45:00.5",
        ] {
            assert_eq!(normalise_time(impossible), None, "{impossible}");
        }
    }
}
