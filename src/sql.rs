//! The one way user text gets into SQL: hex-encoded, never pasted in;
//! and the one name that cannot be (`LockTable`), checked strictly instead. A lock
//! name given with `--name` and a DSN's session variable values are the
//! user's own text; as `CONVERT(X'..' USING utf8mb4)` no quote or backslash
//! in them can end the string early.

use std::fmt;

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

/// MySQL's limit for database and table names.
const MAX_IDENTIFIER: usize = 64;

/// The table that holds the lease rows: `--lock-table DB.TABLE`, key
/// `lock_table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTable {
    database: String,
    table: String,
}

impl LockTable {
    /// `DB.TABLE`, each part 1 to 64 of [A-Za-z0-9_$]. Identifiers cannot be
    /// hex-encoded the way values are (SQL has no X'..' for names), so this
    /// strict check is what keeps user text out of the SQL: nothing that
    /// passes it can end a backquoted name.
    pub fn parse(text: &str) -> Result<LockTable, String> {
        let Some((database, table)) = text.split_once('.') else {
            return Err(format!(
                "\"{text}\" is not DATABASE.TABLE (such as sera.locks)"
            ));
        };
        for part in [database, table] {
            let plain = part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
            if part.is_empty() || part.len() > MAX_IDENTIFIER || !plain {
                return Err(format!(
                    "\"{text}\": a database or table name here is 1 to {MAX_IDENTIFIER} \
                     letters, digits, _ or $"
                ));
            }
        }
        Ok(LockTable {
            database: database.to_string(),
            table: table.to_string(),
        })
    }

    /// The database part, which must exist before the table can.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The table's name as SQL: safe to paste, see `parse`.
    pub fn sql(&self) -> String {
        format!("`{}`.`{}`", self.database, self.table)
    }

    /// The statement that makes the table; the README gives it too. A
    /// primary key, because Galera certifies writes by key; InnoDB, because
    /// Galera replicates nothing else.
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (name VARBINARY(255) NOT NULL PRIMARY KEY, \
             holder VARBINARY(255) NOT NULL, token BIGINT UNSIGNED NOT NULL, \
             expires DATETIME(6) NOT NULL) ENGINE=InnoDB",
            self.sql()
        )
    }
}

impl fmt::Display for LockTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
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
