//! Progress bars for long work (generation, import, refresh): an `am_sql::Progress` drawn
//! with indicatif on stderr. When stderr is not a terminal nothing is drawn, so scripts and
//! logs see only the summary each command prints at the end.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar at a time; each `begin` starts a new phase with its own bar.
pub struct Bars {
    current: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            current: Mutex::new(None),
            visible: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A poisoned lock only means another thread panicked while drawing; keep going.
        let mut guard = match self.current.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl am_sql::Progress for Bars {
    fn begin(&self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => {
                let bar = ProgressBar::with_draw_target(Some(n), self.target());
                // The template is a constant; if indicatif ever rejects it, fall back.
                let style = ProgressStyle::with_template(
                    "{spinner} {msg:<28} [{bar:30}] {human_pos}/{human_len} ({eta})",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, self.target());
                let style = ProgressStyle::with_template("{spinner} {msg} {human_pos}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar
            }
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.with_bar(|slot| {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        });
    }

    fn advance(&self, n: u64) {
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.inc(n);
            }
        });
    }

    fn finish(&self, message: &str) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
                if self.visible && !message.is_empty() {
                    eprintln!("  {message}");
                }
            }
        });
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use am_sql::Progress;

    #[test]
    fn phases_follow_each_other_without_a_terminal() {
        let bars = Bars {
            current: Mutex::new(None),
            visible: false,
        };
        bars.begin("users", Some(10));
        bars.advance(4);
        bars.with_bar(|slot| assert_eq!(slot.as_ref().map(|b| b.position()), Some(4)));
        bars.finish("10 users");
        bars.with_bar(|slot| assert!(slot.is_none()));
        bars.begin("transactions", None);
        bars.advance(7);
        bars.finish("");
        bars.with_bar(|slot| assert!(slot.is_none()));
    }
}
