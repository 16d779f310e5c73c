//! The server address, in the DSN grammar of go-sql-driver/mysql.
//!
//! The Go sera reads `/etc/sera.json`, whose `server` key is a go-sql-driver
//! DSN. A fleet runs both tools during a migration, so sera must read the
//! same files the same way:
//!
//! `[user[:password]@][protocol[(address)]]/[dbname][?param=value&...]`
//!
//! The split follows go-sql-driver's own algorithm: the last `/` of the whole
//! text ends the address, the last `@` before it ends the credentials, and the
//! first `:` of the credentials ends the user name. So a password may contain
//! `:`, `@`, `/` and `?`, and a unix socket path may contain `/`; a `/` inside
//! a parameter value must be written `%2F` (as Go requires too).
//!
//! Error messages quote the faulty part of the DSN, but never anything that
//! could be part of the password (see [`may_hold_password`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host` has no brackets, even for IPv6.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    False,
    True,
    SkipVerify,
    Preferred,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub user: String,
    pub password: Option<String>,
    pub address: Address,
    /// None when empty.
    pub database: Option<String>,
    /// None when absent or zero (Go's "no timeout").
    pub timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub tls: Tls,
    pub allow_native_passwords: bool,
    pub allow_cleartext_passwords: bool,
    /// (name, URL-decoded value), in DSN order. Names are checked by `parse`.
    pub session_vars: Vec<(String, String)>,
    /// TLS files from the config (`tls_ca`, `tls_cert`, `tls_key`): not part
    /// of the DSN grammar, but of how to reach the server.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

const DEFAULT_PORT: u16 = 3306;
const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_SOCKET: &str = "/tmp/mysql.sock";

/// go-sql-driver parameters that mean nothing to sera. They are accepted and
/// ignored, so that they are not sent to the server as session variables.
const IGNORED_PARAMS: &[&str] = &[
    "allowAllFiles",
    "allowFallbackToPlaintext",
    "allowOldPasswords",
    "charset",
    "checkConnLiveness",
    "clientFoundRows",
    "collation",
    "columnsWithAlias",
    "compress",
    "connectionAttributes",
    "interpolateParams",
    "loc",
    "maxAllowedPacket",
    "multiStatements",
    "parseTime",
    "rejectReadOnly",
    "serverPubKey",
    "strict",
    "timeTruncate",
];

impl Dsn {
    pub fn parse(text: &str) -> Result<Dsn, String> {
        let mut dsn = Dsn {
            user: String::new(),
            password: None,
            address: Address::Tcp {
                host: DEFAULT_HOST.to_string(),
                port: DEFAULT_PORT,
            },
            database: None,
            timeout: None,
            read_timeout: None,
            write_timeout: None,
            tls: Tls::False,
            allow_native_passwords: true,
            allow_cleartext_passwords: false,
            session_vars: Vec::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        };
        // Go accepts the empty DSN and uses every default.
        if text.is_empty() {
            return Ok(dsn);
        }
        let Some((prefix, rest)) = text.rsplit_once('/') else {
            // Name the first problem: `tcp(h:1` lacks its ')' before it
            // lacks the slash.
            let net_addr = text.rsplit_once('@').map_or(text, |(_, net_addr)| net_addr);
            if net_addr.contains('(') && !net_addr.contains(')') {
                return Err(dsn_error(text, "unclosed '(' in the address", net_addr));
            }
            return Err("invalid DSN: missing the slash before the database name \
                        (write \"user@tcp(host:3306)/\")"
                .to_string());
        };
        let net_addr = match prefix.rsplit_once('@') {
            Some((credentials, net_addr)) => {
                match credentials.split_once(':') {
                    Some((user, password)) => {
                        dsn.user = user.to_string();
                        dsn.password = Some(password.to_string());
                    }
                    None => dsn.user = credentials.to_string(),
                }
                net_addr
            }
            None => prefix,
        };
        dsn.address = parse_address(text, net_addr, rest)?;

        let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
        let database = unescape(database, false)
            .ok_or_else(|| dsn_error(text, "bad %-escape in the database name", database))?;
        if !database.is_empty() {
            dsn.database = Some(database);
        }
        for segment in params.split('&') {
            // Go skips anything that is not name=value, such as an empty segment.
            if let Some((name, raw)) = segment.split_once('=') {
                set_param(&mut dsn, text, segment, name, raw)?;
            }
        }
        Ok(dsn)
    }

    /// The value the DSN gives a session variable, if any.
    pub fn session_var(&self, name: &str) -> Option<&str> {
        self.session_vars
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// One `SET a=..., b=...` statement for all session variables, or None.
    pub fn session_sql(&self) -> Option<String> {
        let assignments: Vec<String> = self
            .session_vars
            .iter()
            // `parse` rejects bad names; this guards a hand-built Dsn.
            .filter(|(name, _)| is_variable_name(name))
            .map(|(name, value)| format!("{name}={}", sql_value(value)))
            .collect();
        if assignments.is_empty() {
            None
        } else {
            Some(format!("SET {}", assignments.join(", ")))
        }
    }
}

/// Applies one `name=raw` parameter; `segment` is the whole `name=raw` text.
fn set_param(
    dsn: &mut Dsn,
    text: &str,
    segment: &str,
    name: &str,
    raw: &str,
) -> Result<(), String> {
    let value = unescape(raw, true).ok_or_else(|| {
        dsn_error(
            text,
            "bad %-escape or invalid UTF-8 in a parameter value",
            segment,
        )
    })?;
    let bool_error = || dsn_error(text, &format!("{name} must be true or false"), segment);
    match name {
        "timeout" => dsn.timeout = duration_param(text, segment, name, &value)?,
        "readTimeout" => dsn.read_timeout = duration_param(text, segment, name, &value)?,
        "writeTimeout" => dsn.write_timeout = duration_param(text, segment, name, &value)?,
        "allowNativePasswords" => {
            dsn.allow_native_passwords = parse_bool(&value).ok_or_else(bool_error)?;
        }
        "allowCleartextPasswords" => {
            dsn.allow_cleartext_passwords = parse_bool(&value).ok_or_else(bool_error)?;
        }
        "tls" => {
            dsn.tls = match parse_bool(&value) {
                Some(true) => Tls::True,
                Some(false) => Tls::False,
                None if value.eq_ignore_ascii_case("skip-verify") => Tls::SkipVerify,
                None if value.eq_ignore_ascii_case("preferred") => Tls::Preferred,
                None => {
                    let what = "tls must be true, false, skip-verify or preferred";
                    return Err(dsn_error(text, what, segment));
                }
            };
        }
        _ if IGNORED_PARAMS.contains(&name) => {}
        _ if is_variable_name(name) => {
            // A repeated name keeps its first place and takes the last value.
            match dsn.session_vars.iter_mut().find(|(known, _)| known == name) {
                Some(var) => var.1 = value,
                None => dsn.session_vars.push((name.to_string(), value)),
            }
        }
        _ => {
            let what = "parameter is neither a known option nor a valid session variable name";
            return Err(dsn_error(text, what, segment));
        }
    }
    Ok(())
}

fn duration_param(
    text: &str,
    segment: &str,
    name: &str,
    value: &str,
) -> Result<Option<Duration>, String> {
    match duration::parse(value) {
        Ok(duration) if duration.is_zero() => Ok(None),
        Ok(duration) => Ok(Some(duration)),
        Err(_) => {
            let what = format!("{name} must be a Go duration such as 500ms, 5s or 1m30s");
            Err(dsn_error(text, &what, segment))
        }
    }
}

/// Parses `[protocol[(address)]]`. `rest` is what follows the last '/' and
/// only serves to explain a missing slash.
fn parse_address(text: &str, net_addr: &str, rest: &str) -> Result<Address, String> {
    let (net, addr) = match net_addr.split_once('(') {
        None => (net_addr, ""),
        Some((net, inner)) => match inner.strip_suffix(')') {
            Some(addr) => (net, addr),
            None if inner.contains(')') => {
                let what = "unexpected text after ')' (the address must be followed by \"/\", \
                            and a \"/\" in a parameter value must be written %2F)";
                return Err(dsn_error(text, what, net_addr));
            }
            None if rest.contains(')') => {
                let what = "the address is not followed by \"/\" (a \"/\" was found inside it)";
                return Err(dsn_error(text, what, net_addr));
            }
            None => return Err(dsn_error(text, "unclosed '(' in the address", net_addr)),
        },
    };
    match net {
        "" | "tcp" => parse_tcp(text, net_addr, addr),
        "unix" if addr.is_empty() => Ok(Address::Unix(PathBuf::from(DEFAULT_SOCKET))),
        "unix" => Ok(Address::Unix(PathBuf::from(addr))),
        _ => Err(dsn_error(
            text,
            "unknown protocol (expected tcp or unix)",
            net_addr,
        )),
    }
}

/// Parses `host`, `host:port`, `[ipv6]`, `[ipv6]:port` or a bare IPv6 address
/// (which Go's net.JoinHostPort accepts too).
fn parse_tcp(text: &str, net_addr: &str, addr: &str) -> Result<Address, String> {
    let (host, port) = if let Some(bracketed) = addr.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(dsn_error(text, "unclosed '[' in the address", net_addr));
        };
        if after.is_empty() {
            (host, None)
        } else if let Some(port) = after.strip_prefix(':') {
            (host, Some(port))
        } else {
            return Err(dsn_error(text, "unexpected text after ']'", net_addr));
        }
    } else {
        match addr.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (addr, None),
        }
    };
    let valid_host_char = |c: char| c.is_ascii_alphanumeric() || "-._:%".contains(c);
    if !host.chars().all(valid_host_char) {
        return Err(dsn_error(
            text,
            "invalid character in the host name",
            net_addr,
        ));
    }
    // Go dials the local system when the host is empty (":3306").
    let host = if host.is_empty() { DEFAULT_HOST } else { host };
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(dsn_error(text, "port is not a number", net_addr));
        }
        Some(port) => match port.parse::<u16>() {
            Ok(number) if number != 0 => number,
            _ => return Err(dsn_error(text, "port out of range (1 to 65535)", net_addr)),
        },
    };
    Ok(Address::Tcp {
        host: host.to_string(),
        port,
    })
}

/// Builds an error message that quotes `part` (a slice of `text`) unless it
/// may hold some of the password.
fn dsn_error(text: &str, what: &str, part: &str) -> String {
    if may_hold_password(text, part) {
        format!("invalid DSN: {what}")
    } else {
        format!("invalid DSN: {what} in {}", crate::report::quoted(part))
    }
}

/// True if `part` overlaps the span from the first ':' to the last '@' of
/// the whole DSN. However the DSN is read, even when it is malformed, a
/// password lies inside that span, so quoting only text outside it can never
/// reveal one. A `part` that is not a slice of `text` counts as unsafe.
fn may_hold_password(text: &str, part: &str) -> bool {
    let Some(at) = text.rfind('@') else {
        return false;
    };
    let Some(colon) = text.get(..at).and_then(|before| before.find(':')) else {
        return false;
    };
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let end = start.saturating_add(part.len());
    if end > text.len() {
        return true;
    }
    colon + 1 < at && start < at && end > colon + 1
}

/// Go's boolean spellings (strconv.ParseBool).
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `^[A-Za-z_][A-Za-z0-9_.]*$`: the only user text written into SQL as is.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A session variable value as SQL: numbers (`-?[0-9]+(\.[0-9]+)?`) and bare
/// words (`[A-Za-z_][A-Za-z0-9_]*`, such as ON or DEFAULT) as they are; any
/// other text, with one pair of surrounding quotes removed, as a hex string
/// converted to text (`sql::text`), which keeps user text out of the SQL.
fn sql_value(value: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let is_number = match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    };
    let is_word = value.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_number || is_word {
        return value.to_string();
    }
    let unquoted = ["'", "\""]
        .iter()
        .find_map(|q| value.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(value);
    crate::sql::text(unquoted)
}

/// Go's url.QueryUnescape (`plus_is_space`) or url.PathUnescape. None for a
/// bad %-escape or a result that is not UTF-8.
fn unescape(text: &str, plus_is_space: bool) -> Option<String> {
    let hex_digit = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let high = hex_digit(bytes.next()?)?;
                let low = hex_digit(bytes.next()?)?;
                out.push(u8::try_from(high * 16 + low).ok()?);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.to_string(),
            port,
        }
    }

    fn parse(text: &str) -> Dsn {
        match Dsn::parse(text) {
            Ok(dsn) => dsn,
            Err(e) => panic!("{text:?} should parse, got {e}"),
        }
    }

    fn parse_err(text: &str) -> String {
        match Dsn::parse(text) {
            Ok(dsn) => panic!("{text:?} should fail, got {dsn:?}"),
            Err(e) => e,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn user_only() {
        let dsn = parse("sera@tcp(db1:3307)/");
        assert_eq!(dsn.user, "sera");
        assert_eq!(dsn.password, None);
        assert_eq!(dsn.address, tcp("db1", 3307));
        assert_eq!(dsn.database, None);
    }

    #[test]
    fn user_and_password() {
        let dsn = parse("sera:secret@tcp(10.0.0.5:3306)/locks");
        assert_eq!(dsn.user, "sera");
        assert_eq!(dsn.password.as_deref(), Some("secret"));
        assert_eq!(dsn.address, tcp("10.0.0.5", 3306));
        assert_eq!(dsn.database.as_deref(), Some("locks"));
    }

    #[test]
    fn empty_password_is_some_empty() {
        let dsn = parse("u:@tcp(h)/");
        assert_eq!(dsn.user, "u");
        assert_eq!(dsn.password.as_deref(), Some(""));
    }

    #[test]
    fn password_with_colons() {
        let dsn = parse("u:a:b::c@tcp(h:1)/");
        assert_eq!(dsn.user, "u");
        assert_eq!(dsn.password.as_deref(), Some("a:b::c"));
        assert_eq!(dsn.address, tcp("h", 1));
    }

    #[test]
    fn password_with_at_signs() {
        let dsn = parse("u:p@ss@w@tcp(h:1)/db");
        assert_eq!(dsn.password.as_deref(), Some("p@ss@w"));
        assert_eq!(dsn.address, tcp("h", 1));
        assert_eq!(dsn.database.as_deref(), Some("db"));
    }

    #[test]
    fn password_with_slash_and_at() {
        let dsn = parse("u:p/a@ss@tcp(h:1)/db");
        assert_eq!(dsn.user, "u");
        assert_eq!(dsn.password.as_deref(), Some("p/a@ss"));
        assert_eq!(dsn.address, tcp("h", 1));
        assert_eq!(dsn.database.as_deref(), Some("db"));
    }

    #[test]
    fn password_with_question_mark_and_slash() {
        let dsn = parse("u:a?b/c@tcp(h)/db?timeout=1s");
        assert_eq!(dsn.password.as_deref(), Some("a?b/c"));
        assert_eq!(dsn.address, tcp("h", 3306));
        assert_eq!(dsn.database.as_deref(), Some("db"));
        assert_eq!(dsn.timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn no_credentials_at_all() {
        let dsn = parse("/");
        assert_eq!(dsn.user, "");
        assert_eq!(dsn.password, None);
        assert_eq!(dsn.address, tcp("127.0.0.1", 3306));
        assert_eq!(dsn.database, None);
        assert_eq!(dsn.tls, Tls::False);
        assert!(dsn.allow_native_passwords);
        assert!(!dsn.allow_cleartext_passwords);
        assert!(dsn.session_vars.is_empty());
    }

    #[test]
    fn empty_dsn_means_all_defaults_like_go() {
        assert_eq!(parse(""), parse("/"));
    }

    #[test]
    fn empty_user_with_at() {
        let dsn = parse("@tcp(h)/");
        assert_eq!(dsn.user, "");
        assert_eq!(dsn.password, None);
        assert_eq!(dsn.address, tcp("h", 3306));
    }

    #[test]
    fn tcp_default_port() {
        assert_eq!(
            parse("u@tcp(db.example.com)/").address,
            tcp("db.example.com", 3306)
        );
    }

    #[test]
    fn tcp_without_address_and_without_protocol() {
        assert_eq!(parse("u@tcp/db").address, tcp("127.0.0.1", 3306));
        assert_eq!(parse("u@tcp()/db").address, tcp("127.0.0.1", 3306));
        assert_eq!(parse("u@/db").address, tcp("127.0.0.1", 3306));
        assert_eq!(parse("u@(h:7)/db").address, tcp("h", 7));
    }

    #[test]
    fn empty_host_is_local() {
        assert_eq!(parse("tcp(:3310)/").address, tcp("127.0.0.1", 3310));
    }

    #[test]
    fn ipv6_with_port() {
        assert_eq!(parse("u@tcp([::1]:3307)/").address, tcp("::1", 3307));
    }

    #[test]
    fn ipv6_without_port() {
        assert_eq!(parse("u@tcp([::1])/").address, tcp("::1", 3306));
    }

    #[test]
    fn bare_ipv6_gets_default_port_like_go() {
        assert_eq!(parse("u@tcp(fe80::1)/").address, tcp("fe80::1", 3306));
    }

    #[test]
    fn unix_socket() {
        let dsn = parse("u:pw@unix(/var/run/mysqld/mysqld.sock)/db");
        assert_eq!(
            dsn.address,
            Address::Unix(PathBuf::from("/var/run/mysqld/mysqld.sock"))
        );
        assert_eq!(dsn.database.as_deref(), Some("db"));
        assert_eq!(dsn.password.as_deref(), Some("pw"));
    }

    #[test]
    fn unix_default_socket() {
        assert_eq!(
            parse("u@unix/").address,
            Address::Unix(PathBuf::from("/tmp/mysql.sock"))
        );
        assert_eq!(
            parse("u@unix()/").address,
            Address::Unix(PathBuf::from("/tmp/mysql.sock"))
        );
    }

    #[test]
    fn database_is_path_unescaped() {
        assert_eq!(parse("/my%20db").database.as_deref(), Some("my db"));
        assert_eq!(parse("/a+b").database.as_deref(), Some("a+b"));
        assert_eq!(parse("/db?").database.as_deref(), Some("db"));
    }

    #[test]
    fn known_parameters() {
        let dsn = parse(
            "u@tcp(h)/?timeout=500ms&readTimeout=1.5s&writeTimeout=2m&tls=skip-verify\
             &allowNativePasswords=false&allowCleartextPasswords=1",
        );
        assert_eq!(dsn.timeout, Some(Duration::from_millis(500)));
        assert_eq!(dsn.read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(dsn.write_timeout, Some(Duration::from_secs(120)));
        assert_eq!(dsn.tls, Tls::SkipVerify);
        assert!(!dsn.allow_native_passwords);
        assert!(dsn.allow_cleartext_passwords);
        assert!(dsn.session_vars.is_empty());
    }

    #[test]
    fn zero_timeout_means_none() {
        let dsn = parse("/?timeout=0&readTimeout=0s&writeTimeout=5s");
        assert_eq!(dsn.timeout, None);
        assert_eq!(dsn.read_timeout, None);
        assert_eq!(dsn.write_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn tls_values() {
        let cases = [
            ("true", Tls::True),
            ("1", Tls::True),
            ("t", Tls::True),
            ("TRUE", Tls::True),
            ("True", Tls::True),
            ("false", Tls::False),
            ("0", Tls::False),
            ("F", Tls::False),
            ("False", Tls::False),
            ("skip-verify", Tls::SkipVerify),
            ("SKIP-VERIFY", Tls::SkipVerify),
            ("preferred", Tls::Preferred),
            ("Preferred", Tls::Preferred),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse(&format!("/?tls={value}")).tls,
                expected,
                "tls={value}"
            );
        }
    }

    #[test]
    fn bad_tls_value() {
        let e = parse_err("u:Zq9#pw@tcp(h)/?tls=custom");
        assert_eq!(
            e,
            "invalid DSN: tls must be true, false, skip-verify or preferred in \"tls=custom\""
        );
    }

    #[test]
    fn boolean_spellings() {
        for word in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse(&format!("/?allowCleartextPasswords={word}")).allow_cleartext_passwords);
        }
        for word in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!parse(&format!("/?allowNativePasswords={word}")).allow_native_passwords);
        }
    }

    #[test]
    fn bad_boolean_names_the_parameter() {
        let e = parse_err("u:Zq9#pw@tcp(h)/?allowNativePasswords=yes");
        assert_eq!(
            e,
            "invalid DSN: allowNativePasswords must be true or false in \"allowNativePasswords=yes\""
        );
        let e = parse_err("/?allowCleartextPasswords=");
        assert!(
            e.contains("allowCleartextPasswords must be true or false"),
            "{e}"
        );
    }

    #[test]
    fn bad_port_out_of_range() {
        let e = parse_err("u:Zq9#pw@tcp(127.0.0.1:99999)/");
        assert_eq!(
            e,
            "invalid DSN: port out of range (1 to 65535) in \"tcp(127.0.0.1:99999)\""
        );
        let e = parse_err("tcp(h:123456789012345678901234567890)/");
        assert!(e.contains("port out of range"), "{e}");
    }

    #[test]
    fn port_zero() {
        let e = parse_err("u:Zq9#pw@tcp(h:0)/");
        assert_eq!(
            e,
            "invalid DSN: port out of range (1 to 65535) in \"tcp(h:0)\""
        );
    }

    #[test]
    fn non_numeric_or_empty_port() {
        let e = parse_err("u:Zq9#pw@tcp(h:mysql)/");
        assert_eq!(e, "invalid DSN: port is not a number in \"tcp(h:mysql)\"");
        assert!(parse_err("tcp(h:)/").contains("port is not a number"));
        assert!(parse_err("tcp(h:+1)/").contains("port is not a number"));
        assert!(parse_err("tcp([::1]:x)/").contains("port is not a number"));
    }

    #[test]
    fn bad_brackets_and_host_characters() {
        assert!(parse_err("tcp([::1)/").contains("unclosed '['"));
        assert!(parse_err("tcp([::1]x)/").contains("unexpected text after ']'"));
        assert!(parse_err("tcp(a b)/").contains("invalid character in the host name"));
    }

    #[test]
    fn unclosed_paren() {
        let e = parse_err("u:Zq9#pw@tcp(h:1/db");
        assert_eq!(e, "invalid DSN: unclosed '(' in the address in \"tcp(h:1\"");
    }

    #[test]
    fn text_after_closing_paren() {
        let e = parse_err("tcp(h)x/db");
        assert!(e.contains("unexpected text after ')'"), "{e}");
        // An unescaped '/' in a parameter value, as Go also rejects.
        let e = parse_err("u@tcp(h)/db?loc=Europe/Paris");
        assert!(e.contains("%2F"), "{e}");
    }

    #[test]
    fn unix_socket_without_trailing_slash() {
        let e = parse_err("u@unix(/var/run/mysqld.sock)");
        assert!(e.contains("not followed by \"/\""), "{e}");
    }

    #[test]
    fn unknown_protocol() {
        let e = parse_err("u:Zq9#pw@udp(h:1)/");
        assert_eq!(
            e,
            "invalid DSN: unknown protocol (expected tcp or unix) in \"udp(h:1)\""
        );
        assert!(parse_err("TCP(h)/").contains("unknown protocol"));
    }

    #[test]
    fn unclosed_paren_and_no_slash_names_the_paren_first() {
        let e = parse_err("u:Zq9#pw@tcp(127.0.0.1:3306");
        assert_eq!(
            e,
            "invalid DSN: unclosed '(' in the address in \"tcp(127.0.0.1:3306\""
        );
    }

    #[test]
    fn no_slash() {
        let e = parse_err("u:Zq9#pw@tcp(h:1)");
        assert!(e.starts_with("invalid DSN: missing the slash"), "{e}");
    }

    #[test]
    fn bad_duration_parameter() {
        let e = parse_err("u:Zq9#pw@tcp(h)/?readTimeout=5");
        assert_eq!(
            e,
            "invalid DSN: readTimeout must be a Go duration such as 500ms, 5s or 1m30s in \"readTimeout=5\""
        );
        assert!(parse_err("/?timeout=-1s").contains("timeout must be"));
        assert!(parse_err("/?writeTimeout=").contains("writeTimeout must be"));
    }

    #[test]
    fn bad_session_variable_name() {
        let e = parse_err("u:Zq9#pw@tcp(h)/?wait-timeout=5");
        assert_eq!(
            e,
            "invalid DSN: parameter is neither a known option nor a valid session variable name \
             in \"wait-timeout=5\""
        );
        assert!(parse_err("/?1abc=1").contains("session variable name"));
        assert!(parse_err("/?=1").contains("session variable name"));
        assert!(parse_err("/?a;DROP=1").contains("session variable name"));
    }

    #[test]
    fn session_variables_in_order_and_decoded() {
        let dsn = parse("/?wait_timeout=600&sql_mode=%27ANSI,NO_ZERO_DATE%27&time_zone=a+b%2Fc");
        assert_eq!(
            dsn.session_vars,
            vars(&[
                ("wait_timeout", "600"),
                ("sql_mode", "'ANSI,NO_ZERO_DATE'"),
                ("time_zone", "a b/c"),
            ])
        );
    }

    #[test]
    fn repeated_session_variable_keeps_place_takes_last_value() {
        let dsn = parse("/?a=1&b=2&a=3");
        assert_eq!(dsn.session_vars, vars(&[("a", "3"), ("b", "2")]));
    }

    #[test]
    fn ignored_go_parameters_are_not_session_variables() {
        let dsn = parse("/?charset=utf8mb4&parseTime=true&loc=Local&maxAllowedPacket=0&x.y=1");
        assert_eq!(dsn.session_vars, vars(&[("x.y", "1")]));
        for name in IGNORED_PARAMS {
            assert!(
                parse(&format!("/?{name}=whatever")).session_vars.is_empty(),
                "{name}"
            );
        }
    }

    #[test]
    fn segments_without_equals_are_skipped_like_go() {
        let dsn = parse("/?&&flag&timeout=1s&");
        assert_eq!(dsn.timeout, Some(Duration::from_secs(1)));
        assert!(dsn.session_vars.is_empty());
    }

    #[test]
    fn bad_percent_escapes() {
        assert!(parse_err("/?a=%zz").contains("bad %-escape"));
        assert!(parse_err("/?a=%4").contains("bad %-escape"));
        assert!(parse_err("/?a=%ff").contains("invalid UTF-8"));
        assert!(parse_err("/d%b").contains("bad %-escape in the database name"));
    }

    #[test]
    fn address_display() {
        assert_eq!(tcp("127.0.0.1", 3306).to_string(), "127.0.0.1:3306");
        assert_eq!(tcp("::1", 3306).to_string(), "[::1]:3306");
        assert_eq!(
            Address::Unix(PathBuf::from("/tmp/x.sock")).to_string(),
            "/tmp/x.sock"
        );
    }

    #[test]
    fn password_never_in_errors() {
        let pw = "Zq9#pw";
        let bad = [
            "u:Zq9#pw@tcp(h:99999)/",
            "u:Zq9#pw@tcp(h:0)/",
            "u:Zq9#pw@tcp(h:x)/",
            "u:Zq9#pw@tcp(h/",
            "u:Zq9#pw@tcp(h)x/",
            "u:Zq9#pw@udp(h)/",
            "u:Zq9#pw@tcp(h)",
            "u:Zq9#pw@tcp(a b)/",
            "u:Zq9#pw@tcp([::1)/",
            "u:Zq9#pw@tcp(h)/?timeout=x",
            "u:Zq9#pw@tcp(h)/?tls=x",
            "u:Zq9#pw@tcp(h)/?allowNativePasswords=x",
            "u:Zq9#pw@tcp(h)/?a-b=1",
            "u:Zq9#pw@tcp(h)/?a=%zz",
            "u:Zq9#pw@tcp(h)/%zz",
            "u:Zq9#pw@tcp(h)/?loc=a/b",
            "u:Zq9#pw@unix(/tmp/x.sock)",
            // The password itself holds the only '/', or '@' and '/'.
            "u:Zq/9#pw@tcp(h)",
            "u:Zq9@#/pw@tcp(h)",
            "u:Zq9#p@w@tcp(h:99999)/?a=b@c",
            "u:Zq9#p@w@tcp(h)/?a=b@c&timeout=zz",
            "u:Zq9#pw:@tcp(h)/?tls=zz",
        ];
        for text in bad {
            let e = parse_err(text);
            for fragment in ["Zq", "q9", "9#", "#p", "pw", "9@", "@#", "/p"] {
                if text.contains(fragment) && !text.starts_with(fragment) {
                    assert!(!e.contains(fragment), "{text:?} leaked {fragment:?}: {e}");
                }
            }
            assert!(!e.contains(pw), "{e}");
        }
    }

    #[test]
    fn errors_still_quote_when_safe_with_at_in_params() {
        // An '@' in a parameter widens the hidden span over the address.
        let e = parse_err("u:pw@tcp(h:0)/?a=b@c");
        assert_eq!(e, "invalid DSN: port out of range (1 to 65535)");
        // Without a ':' before the last '@' there is no password to hide.
        let e = parse_err("u@tcp(h)/?a=b@c&timeout=zz");
        assert!(e.ends_with("in \"timeout=zz\""), "{e}");
    }

    #[test]
    fn session_sql_example_from_the_spec() {
        let dsn = parse("/?wait_timeout=600&sql_mode=%27ANSI,NO_ZERO_DATE%27");
        assert_eq!(
            dsn.session_sql().as_deref(),
            Some("SET wait_timeout=600, sql_mode=CONVERT(X'414e53492c4e4f5f5a45524f5f44415445' USING utf8mb4)")
        );
    }

    #[test]
    fn session_sql_none_without_variables() {
        assert_eq!(parse("/?timeout=1s&charset=utf8").session_sql(), None);
    }

    #[test]
    fn session_sql_values() {
        let dsn = parse(
            "/?a=-5&b=1.25&c=ON&d=_x1&e=%22q%22&f=&g=1.&h='&i=it's&j=a+b&k=%C3%A9&l=-&m='x\"",
        );
        assert_eq!(
            dsn.session_sql().as_deref(),
            Some(
                "SET a=-5, b=1.25, c=ON, d=_x1, e=CONVERT(X'71' USING utf8mb4), \
                 f=CONVERT(X'' USING utf8mb4), g=CONVERT(X'312e' USING utf8mb4), \
                 h=CONVERT(X'27' USING utf8mb4), i=CONVERT(X'69742773' USING utf8mb4), \
                 j=CONVERT(X'612062' USING utf8mb4), k=CONVERT(X'c3a9' USING utf8mb4), \
                 l=CONVERT(X'2d' USING utf8mb4), m=CONVERT(X'277822' USING utf8mb4)"
            )
        );
    }

    #[test]
    fn session_sql_skips_hand_built_bad_names() {
        let mut dsn = parse("/?ok=1");
        dsn.session_vars
            .push(("x=1; DROP".to_string(), "2".to_string()));
        assert_eq!(dsn.session_sql().as_deref(), Some("SET ok=1"));
    }

    /// Every string over a small alphabet up to length 5: no panic.
    #[test]
    fn no_panics() {
        let alphabet = [
            "", ":", "@", "/", "(", ")", "?", "&", "=", "%", "[", "]", "t", "1", "µ", "a", "+",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for text in &texts {
                for piece in &alphabet[1..] {
                    longer.push(format!("{text}{piece}"));
                }
            }
            texts.extend(longer);
        }
        let prefixes = [
            "",
            "u:p@tcp(h:1)/",
            "unix(/x)/?",
            "/?a=",
            "tcp(",
            "/?timeout=",
        ];
        for prefix in prefixes {
            for text in &texts {
                let text = format!("{prefix}{text}");
                let _ = duration::parse(&text);
                if let Ok(dsn) = Dsn::parse(&text) {
                    let _ = dsn.session_sql();
                }
            }
        }
    }
}
