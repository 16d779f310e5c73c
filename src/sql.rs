//! The one way user text gets into SQL: hex-encoded, never pasted in. A lock
//! name given with `--name` and a DSN's session variable values are the
//! user's own text; as `CONVERT(X'..' USING utf8mb4)` no quote or backslash
//! in them can end the string early.

/// Lowercase hex of `bytes`: for SQL here, and for the MD5 lock name.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not format! per byte: the lock name is encoded several times
    // a run, and format!'s machinery cost some 27k instructions of it.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// `text` as an SQL string expression. CONVERT(... USING utf8mb4) rather
/// than the `_utf8mb4 X'..'` introducer, which some MySQL-compatible servers
/// take as bytes and refuse for sql_mode; and a lock name converted so is
/// the very lock an application takes with `GET_LOCK('NAME', ...)`.
pub fn text(text: &str) -> String {
    format!("CONVERT(X'{}' USING utf8mb4)", hex(text.as_bytes()))
}

/// `text` as an SQL string literal. Only for text sera wrote itself, without
/// backslashes (a LIKE pattern made of `text`'s output): user text goes
/// through `text`.
pub fn literal(text: &str) -> String {
    debug_assert!(!text.contains('\\'), "{text}");
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_hex_and_sera_text_is_quoted() {
        assert_eq!(text("a'b"), "CONVERT(X'612762' USING utf8mb4)");
        assert_eq!(text(""), "CONVERT(X'' USING utf8mb4)");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(literal("%X'61'%"), "'%X''61''%'");
    }
}
