//! Exit codes and the one-line error message.

use std::io;

/// Exit code of a failure that is not a usage error or an invalid rule.
pub const ERROR: u8 = 1;
/// Exit code when a rule fails validation (or cannot be planned: a cycle, an unknown
/// dependency): `am rules validate`, `add` and `edit`.
pub const INVALID: u8 = 3;

/// A rule was invalid and its problems were already printed; only the summary is left.
#[derive(Debug)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// The exit code an error deserves.
pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<Invalid>() || cause.is::<am_core::error::ValidationErrors>() {
            return INVALID;
        }
        if let Some(e) = cause.downcast_ref::<am_sql::Error>()
            && matches!(e, am_sql::Error::Invalid(_) | am_sql::Error::Plan(_))
        {
            return INVALID;
        }
    }
    ERROR
}

/// The error and its causes on one line, `outer: inner: root`, without repeating a cause
/// whose text the outer message already contains, safe for a terminal (errors echo names).
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    crate::output::terminal_safe(&out.replace(['\n', '\r'], " ")).into_owned()
}

/// Whether the error is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let err = Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "no such file"))
            .context("cannot read rule.json")
            .unwrap_err();
        assert_eq!(one_line(&err), "cannot read rule.json: no such file");

        let err = anyhow::anyhow!("line one\nline two").context("outer");
        assert_eq!(one_line(&err), "outer: line one line two");

        let err = anyhow::anyhow!("rule \u{1b}[2J\u{202e}x failed\u{7}");
        assert_eq!(one_line(&err), "rule \\u{1b}[2J\\u{202e}x failed\\u{7}");
    }

    #[test]
    fn invalid_rules_exit_with_three() {
        let err = anyhow::Error::new(Invalid("2 problems".into())).context("rule.json");
        assert_eq!(code(&err), INVALID);
        assert_eq!(code(&anyhow::anyhow!("other")), ERROR);
    }
}
