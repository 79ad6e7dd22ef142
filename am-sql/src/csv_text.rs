//! The one rule for writing a text value into a CSV export (the CLI's and the API's).

use std::borrow::Cow;

/// `value` as one CSV field: quoted when it holds a separator, a quote or a line break; a
/// value starting with `= + - @`, a tab or a carriage return is also prefixed with `'` (inside
/// quotes) so spreadsheets do not run it as a formula. Borrowed when nothing changes.
pub fn csv_safe(value: &str) -> Cow<'_, str> {
    let guarded = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !guarded && !value.contains([',', '"', '\n', '\r']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    out.push('"');
    if guarded {
        out.push('\'');
    }
    out.push_str(&value.replace('"', "\"\""));
    out.push('"');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_when_needed_and_formulas_defused() {
        assert!(matches!(csv_safe("Asha Rao"), Cow::Borrowed("Asha Rao")));
        assert_eq!(csv_safe(""), "");
        assert_eq!(csv_safe("Rao, Asha"), "\"Rao, Asha\"");
        assert_eq!(csv_safe("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_safe("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_safe("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_safe("-cmd@x"), "\"'-cmd@x\"");
        assert_eq!(csv_safe("+1"), "\"'+1\"");
        assert_eq!(csv_safe("@sum"), "\"'@sum\"");
        assert_eq!(csv_safe("\tx"), "\"'\tx\"");
        assert_eq!(csv_safe("\rx"), "\"'\rx\"");
        assert_eq!(csv_safe("a=b"), "a=b");
    }
}
