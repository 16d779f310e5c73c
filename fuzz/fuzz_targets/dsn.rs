//! The DSN parser: `server` in the config file, written by hand by operators.
//!
//! Beyond "never panics", it checks the promises `src/dsn.rs` makes:
//! - `session_sql()` writes nothing but names, numbers, bare words and hex
//!   strings (as `CONVERT(X'..' USING utf8mb4)`) into SQL;
//! - an error message never quotes text from where a password may lie (from
//!   the first `:` to the last `@`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sera::dsn::Dsn;
use sera::duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = duration::parse(text);
    match Dsn::parse(text) {
        Ok(dsn) => check_ok(text, dsn),
        Err(message) => check_err(text, &message),
    }
});

fn check_ok(text: &str, dsn: Dsn) {
    if let Some(sql) = dsn.session_sql() {
        let allowed = |c: char| c.is_ascii_alphanumeric() || " _.=,'-()".contains(c);
        assert!(sql.chars().all(allowed), "{text:?} gave {sql:?}");
        assert!(!sql.contains("--"), "{text:?} gave {sql:?}");
        assert_eq!(sql.matches('\'').count() % 2, 0, "{text:?} gave {sql:?}");
    }
}

/// The part an error quotes, ` in "..."` at its end, must not overlap the
/// span from the first ':' to the last '@'. Checked where it is unambiguous:
/// text whose Debug form is itself (printable ASCII, no quote or backslash),
/// and a quoted part found in the text only at places that overlap the span.
fn check_err(text: &str, message: &str) {
    let plain = |c: char| (' '..='~').contains(&c) && c != '"' && c != '\\';
    if !text.chars().all(plain) {
        return;
    }
    let Some(at) = text.rfind('@') else { return };
    let Some(colon) = text[..at].find(':') else {
        return;
    };
    let (secret_start, secret_end) = (colon + 1, at);
    if secret_start >= secret_end {
        return;
    }
    let Some(quoted) = message
        .strip_suffix('"')
        .and_then(|m| m.rsplit_once(" in \""))
        .map(|(_, q)| q)
    else {
        return;
    };
    if quoted.is_empty() {
        return;
    }
    let all_overlap = text.match_indices(quoted).all(|(start, part)| {
        let end = start + part.len();
        start < secret_end && end > secret_start
    });
    let found = text.contains(quoted);
    assert!(
        !(found && all_overlap),
        "{text:?}: the error quotes text from the password span: {message}"
    );
}
