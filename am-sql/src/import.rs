//! CSV import into the data tables.

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
    for row in &e.errors {
        out.push_str(&format!("; line {}: {}", row.line, row.message));
    }
    let shown = e.errors.len() as u64;
    if e.total > shown {
        out.push_str(&format!("; and {} more", e.total - shown));
    }
    out
}
