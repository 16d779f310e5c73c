//! Where a config file stops being JSON, and what the mistake looks like.
//!
//! miniserde (small, and enough to read a config) says only that a text is
//! not JSON. An operator who broke `/etc/sera.json` by hand needs the line
//! and the column, and a name for the usual slips: a comma after the last
//! item, a quote left out, single quotes. This scanner runs only after
//! miniserde has refused a text, so it checks, builds nothing, and stays
//! small: the small static build has a size budget.

/// "line 3, column 17: <what is wrong>", or None when the scanner finds
/// nothing wrong (miniserde refused something it does not check, such as
/// a nesting too deep for it).
pub fn explain(text: &str) -> Option<String> {
    let mut scan = Scan {
        text: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let (at, what) = match scan.document() {
        Ok(()) => return None,
        Err(Some(found)) => found,
        Err(None) => return None,
    };
    let before = &text.as_bytes()[..at];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Some(format!("line {line}, column {column}: {what}"))
}

/// Where the first mistake is (a byte offset) and what it is; None: the
/// scanner gives up without an answer.
type Mistake = Option<(usize, &'static str)>;

/// Deeper than this, the scanner gives up rather than recurse further.
const MAX_DEPTH: usize = 128;

const NOT_A_VALUE: &str =
    "expected a value: a \"string\" (double quotes), a number, true, false, null, { or [";

struct Scan<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

impl Scan<'_> {
    fn document(&mut self) -> Result<(), Mistake> {
        self.value()?;
        match self.next_token() {
            None => Ok(()),
            Some(_) => self.fail("more text after the end of the JSON (a missing comma or {?)"),
        }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T, Mistake> {
        Err(Some((self.at, what)))
    }

    /// Skip white space and peek at the byte after it.
    fn next_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
        self.text.get(self.at).copied()
    }

    fn value(&mut self) -> Result<(), Mistake> {
        match self.next_token() {
            None => self.fail("the text ends where a value should be"),
            Some(b'{') => self.nested(b'}'),
            Some(b'[') => self.nested(b']'),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'\'') => self.fail("single quotes: JSON takes double quotes (\")"),
            Some(_) => {
                for word in ["true", "false", "null"] {
                    if self.text[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(());
                    }
                }
                self.fail(NOT_A_VALUE)
            }
        }
    }

    /// An object (`close` is `}`) or an array (`]`), from its opening byte.
    fn nested(&mut self, close: u8) -> Result<(), Mistake> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(None);
        }
        let object = close == b'}';
        self.at += 1;
        if self.next_token() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let next = self.next_token();
            if object {
                match next {
                    Some(b'"') => self.string()?,
                    Some(b'\'') => {
                        return self.fail("single quotes: JSON takes double quotes (\")")
                    }
                    Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                        return self.fail("a key must be in double quotes")
                    }
                    _ => return self.fail("expected a key in double quotes"),
                }
                if self.next_token() != Some(b':') {
                    return self.fail("expected : after the key");
                }
                self.at += 1;
            }
            self.value()?;
            match self.next_token() {
                Some(b',') => {
                    let comma = self.at;
                    self.at += 1;
                    if self.next_token() == Some(close) {
                        self.at = comma;
                        return self.fail(if object {
                            "a comma before } (JSON allows no comma after the last item)"
                        } else {
                            "a comma before ] (JSON allows no comma after the last item)"
                        });
                    }
                }
                Some(b) if b == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                None if object => {
                    return self.fail("the text ends inside an object (a missing }?)")
                }
                None => return self.fail("the text ends inside a list (a missing ]?)"),
                Some(_) if object => return self.fail("expected , or } (a missing comma?)"),
                Some(_) => return self.fail("expected , or ] (a missing comma?)"),
            }
        }
    }

    /// A string, from its opening quote. A string that runs into the end
    /// of its line is almost always a closing quote left out: say so where
    /// the string starts, which is where the eye should go.
    fn string(&mut self) -> Result<(), Mistake> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.text.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let escape = self.text.get(self.at + 1).copied();
                    let hex = |i: usize| self.text.get(i).is_some_and(u8::is_ascii_hexdigit);
                    match escape {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 2
                        }
                        Some(b'u') if (2..6).all(|i| hex(self.at + i)) => self.at += 6,
                        _ => return self.fail("a bad \\ escape in a string (write \\\\ for \\)"),
                    }
                }
                Some(0..=0x1f) | None => {
                    self.at = start;
                    return self.fail("a string that is not closed on its line (a missing \"?)");
                }
                Some(_) => self.at += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), Mistake> {
        let start = self.at;
        if self.text.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let mut digits = self.digits();
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            digits = digits && self.digits();
        }
        if let Some(b'e' | b'E') = self.text.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.text.get(self.at) {
                self.at += 1;
            }
            digits = digits && self.digits();
        }
        if !digits {
            self.at = start;
            return self.fail("a malformed number");
        }
        Ok(())
    }

    /// Skip digits; whether there was at least one.
    fn digits(&mut self) -> bool {
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at > start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_json_has_nothing_to_explain() {
        for text in [
            r#"{"server": "u@tcp(h)/", "syslog": true, "n": -1.5e3, "a": [1, {}, []], "z": null}"#,
            r#""\u00e9\n""#,
            " [ ] ",
        ] {
            assert_eq!(explain(text), None, "{text}");
        }
    }

    #[test]
    fn the_usual_mistakes_are_named_where_they_are() {
        let cases = [
            (
                "{\n  \"server\": \"u@tcp(h)/\",\n}",
                "line 2, column 24: a comma before }",
            ),
            ("[1, 2,]", "line 1, column 6: a comma before ]"),
            (
                "{\n  \"server\": \"u@tcp(h)/,\n  \"syslog\": true\n}",
                "line 2, column 13: a string that is not closed on its line",
            ),
            (
                "{\"server\": \"a\"\n \"syslog\": true}",
                "line 2, column 2: expected , or } (a missing comma?)",
            ),
            (
                "{server: 1}",
                "line 1, column 2: a key must be in double quotes",
            ),
            ("{\"server\": 'x'}", "line 1, column 12: single quotes"),
            (
                "{\"server\" \"x\"}",
                "line 1, column 11: expected : after the key",
            ),
            (
                "{\"server\": ",
                "line 1, column 12: the text ends where a value",
            ),
            (
                "{\"a\": 1",
                "line 1, column 8: the text ends inside an object",
            ),
            ("{\"a\": tru}", "line 1, column 7: expected a value"),
            ("{\"a\": -}", "line 1, column 7: a malformed number"),
            ("{\"a\": \"\\q\"}", "line 1, column 8: a bad \\ escape"),
            ("{} {}", "line 1, column 4: more text after the end"),
            ("\u{0}{}", "line 1, column 1: expected a value"),
            // Columns count characters, not bytes.
            ("{\"é\": 1,}", "line 1, column 8: a comma before }"),
        ];
        for (text, says) in cases {
            let explained = explain(text).unwrap_or_default();
            assert!(explained.starts_with(says), "{text:?}: {explained}");
        }
    }

    #[test]
    fn deep_nesting_is_given_up_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(explain(&deep), None);
    }
}
