//! Progress reporting hooks for long operations (data generation, import, refresh), so the
//! CLI can draw bars without this crate knowing how.

/// Receives progress from a long operation. Calls come in order: `begin`, any number of
/// `advance`, then `finish`; an operation may run several such phases one after another.
pub trait Progress: Send + Sync {
    /// A phase starts; `total` is the number of units when known.
    fn begin(&self, label: &str, total: Option<u64>);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The phase is over.
    fn finish(&self, message: &str);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self, _message: &str) {}
}
