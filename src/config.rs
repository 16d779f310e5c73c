//! The config file, `/etc/sera.json` as the Go sera reads it.
//!
//! A fleet migrating from the Go tool keeps its config, so the keys and their
//! meaning stay: `server` (a go-sql-driver DSN), `syslog`, `verbose`. sera adds
//! the lock-liveness settings. Unlike the Go tool, every problem with the file
//! is reported, naming the file and the key, and a typo in a key name is
//! pointed out instead of silently ignored.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use miniserde::json::{self, Value};

use crate::dsn::{Dsn, Tls};
use crate::mysql;
use crate::settings::{self, Settings};
use crate::sql::LockTable;

/// Where the Go sera looks, and so where sera looks by default.
pub const DEFAULT_PATH: &str = "/etc/sera.json";

/// No real config comes near this; a larger file is not a config.
const MAX_SIZE: u64 = 64 * 1024;

/// The keys sera knows besides the `settings::KEYS`.
const OWN_KEYS: [&str; 8] = [
    "server",
    "syslog",
    "verbose",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "allow_read_only",
    "lock_table",
];

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub server: Dsn,
    /// The password came from SERA_PASSWORD, not from the file.
    pub password_from_env: bool,
    pub syslog: bool,
    pub verbose: bool,
    /// The lock server is meant to be read-only: sera takes locks there.
    pub allow_read_only: bool,
    /// `lock_table`: table mode (table.rs).
    pub lock_table: Option<LockTable>,
    /// How to watch the lock and the command's tree, as far as the file says.
    pub settings: Settings,
    /// Things worth a warning that do not stop the run.
    pub warnings: Vec<String>,
}

/// Which file to read: `--config` beats `SERA_CONFIG` beats the default.
pub fn choose_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("SERA_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Read and check the config. The error says what is wrong, in the user's
/// terms; the caller adds the file name.
pub fn load(path: &Path) -> Result<Config, String> {
    let (text, mode) = read_small(path)?;
    parse_with_mode(&text, path, Some(mode))
}

/// Check the text of a config file that was read from `path` (which is named
/// in the result and looked at for the permission warning). `load` reads the
/// file and calls this; the fuzz target calls it directly.
pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
    parse_with_mode(text, path, None)
}

/// `parse`, with the file's permission bits if they are known already (from
/// the `fstat` of the file that was read), to spare a second look.
fn parse_with_mode(text: &str, path: &Path, mode: Option<u32>) -> Result<Config, String> {
    let root = match json::from_str::<Value>(text) {
        Ok(Value::Object(root)) => root,
        Ok(_) => return Err("it is not a JSON object ({ ... })".into()),
        Err(_) => {
            return Err(match crate::json_error::explain(text) {
                Some(mistake) => format!("it is not valid JSON: {mistake}"),
                None => "it is not valid JSON".into(),
            })
        }
    };
    let mut warnings = Vec::new();
    warnings.extend(unknown_keys(&root));

    let server = match root.get("server") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"server\" must be a string (a DSN)".into()),
        None => return Err("it has no \"server\" key (the DSN of the lock server)".into()),
    };
    let mut server = Dsn::parse(&server).map_err(|e| format!("\"server\": {e}"))?;
    no_tls_needed(&server)?;
    // Only a password written in the file is worth a warning about the file.
    if server.password.is_some() {
        if let Some(warning) = readable_by_others(path, mode) {
            warnings.push(warning);
        }
    }
    server.tls_ca = file(&root, "tls_ca", path)?;
    server.tls_cert = file(&root, "tls_cert", path)?;
    server.tls_key = file(&root, "tls_key", path)?;
    if server.tls_cert.is_some() != server.tls_key.is_some() {
        return Err("\"tls_cert\" and \"tls_key\" go together: give both or neither".into());
    }
    let has_tls_files = server.tls_ca.is_some() || server.tls_cert.is_some();
    if has_tls_files && server.tls == Tls::False {
        warnings.push("tls_ca or tls_cert is set, but the DSN has no tls=true: TLS is off".into());
    }
    // The environment beats the file, so an image can ship a config without
    // its secret. An empty SERA_PASSWORD= is ignored, with a warning: it is
    // far more often a secret that a deployment failed to fill in than an
    // account without a password, and it would only earn "access denied".
    let mut password_from_env = false;
    match std::env::var_os("SERA_PASSWORD") {
        Some(password) if password.is_empty() => warnings.push(format!(
            "SERA_PASSWORD is set but empty: ignored; {}",
            match server.password {
                Some(_) => "the password of \"server\" in this file is used",
                None => "\"server\" in this file has no password",
            }
        )),
        Some(password) => {
            server.password = Some(password.to_string_lossy().into_owned());
            password_from_env = true;
        }
        None => {}
    }

    let mut settings = Settings::default();
    for key in settings::KEYS {
        // "slots": 3 reads as naturally as "slots": "3".
        let value = match root.get(key) {
            Some(Value::Number(miniserde::json::Number::U64(n))) => Some(n.to_string()),
            _ => string(&root, key)?,
        };
        if let Some(value) = value {
            settings
                .set(key, &value)
                .map_err(|e| format!("\"{key}\": {e}"))?;
        }
    }

    Ok(Config {
        path: path.to_path_buf(),
        server,
        password_from_env,
        syslog: boolean(&root, "syslog")?,
        verbose: boolean(&root, "verbose")?,
        allow_read_only: boolean(&root, "allow_read_only")?,
        lock_table: string(&root, "lock_table")?
            .map(|text| LockTable::parse(&text))
            .transpose()
            .map_err(|e| format!("\"lock_table\": {e}"))?,
        settings,
        warnings,
    })
}

/// A DSN that insists on TLS this build lacks (`mysql::tls_missing`) is a
/// config error, found now rather than as a failed connection.
fn no_tls_needed(server: &Dsn) -> Result<(), String> {
    match mysql::tls_missing(server) {
        Some(why) => Err(format!("\"server\": {why}: use the full build")),
        None => Ok(()),
    }
}

/// How many unknown keys a warning names; the rest are counted. A file
/// with thousands of them must not bury the run in lines.
const UNKNOWN_KEYS_NAMED: usize = 3;

/// One warning for all the keys sera does not know (typos, mostly), or none.
fn unknown_keys(root: &Object) -> Option<String> {
    let known: Vec<&str> = OWN_KEYS.iter().chain(&settings::KEYS).copied().collect();
    let unknown: Vec<&String> = root
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .collect();
    let named: Vec<String> = unknown
        .iter()
        .take(UNKNOWN_KEYS_NAMED)
        .map(|key| format!("\"{key}\""))
        .collect();
    let more = match unknown.len().saturating_sub(UNKNOWN_KEYS_NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let (keys, are) = match unknown.len() {
        0 => return None,
        1 => ("key", "is"),
        _ => ("keys", "are"),
    };
    Some(format!(
        "unknown {keys} {}{more} {are} ignored (known keys: {})",
        named.join(", "),
        known.join(", ")
    ))
}

/// The text of the file at `path`, and its permission bits.
fn read_small(path: &Path) -> Result<(String, u32), String> {
    // Look before opening: opening a device can have effects of its own (a
    // tape rewinds, a tty becomes ours), and opening a FIFO blocks until a
    // writer comes, which may be never.
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    })?;
    must_be_regular(&meta)?;
    // O_NONBLOCK still, and a second look at what was opened: the path may
    // have been swapped for a FIFO in between. For a regular file O_NONBLOCK
    // changes nothing.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let opened = file.metadata().map_err(|e| e.to_string())?;
    must_be_regular(&opened)?;
    // Room for all of it and the look past its end: one read, not a few
    // small ones.
    let mut bytes = Vec::with_capacity(opened.len().min(MAX_SIZE) as usize + 1);
    file.take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(format!("it is larger than {} KiB", MAX_SIZE / 1024));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("it is empty".into());
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    Ok((text, opened.permissions().mode()))
}

/// Only a regular file can be a config; say what else it is.
fn must_be_regular(meta: &std::fs::Metadata) -> Result<(), String> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        return Err("it is a directory".into());
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "something else"
    };
    Err(format!("it is not a regular file but {what}"))
}

type Object = miniserde::json::Object;

fn boolean(root: &Object, key: &str) -> Result<bool, String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("\"{key}\" must be true or false")),
    }
}

fn string(root: &Object, key: &str) -> Result<Option<String>, String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

/// A file named in the config; a relative path is relative to the config's
/// own folder, so the config and its certificates can travel together.
fn file(root: &Object, key: &str, config: &Path) -> Result<Option<PathBuf>, String> {
    Ok(string(root, key)?.map(|name| match config.parent() {
        Some(folder) => folder.join(name),
        None => PathBuf::from(name),
    }))
}

/// A password in a world-readable file is worth a warning, not a refusal:
/// the Go sera never complained, and a fleet's files are often 0644.
fn readable_by_others(path: &Path, mode: Option<u32>) -> Option<String> {
    let mode = match mode {
        Some(mode) => mode,
        None => std::fs::metadata(path).ok()?.permissions().mode(),
    };
    (mode & 0o044 != 0).then(|| {
        format!(
            "it holds a password and is readable by other users; fix with: chmod 600 {}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_at(json: &str) -> Result<Config, String> {
        // A path that does not exist: no permission warning, and relative
        // TLS files resolve against its folder.
        parse(json, Path::new("/etc/sera/sera.json"))
    }

    // tls=preferred in the tests below: it uses the TLS files too, and the
    // build without TLS accepts it.
    #[test]
    fn a_password_in_a_file_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sera-config-{}.json", std::process::id()));
        let warned = |mode: u32| {
            std::fs::write(&path, r#"{"server": "u:pw@tcp(127.0.0.1:3306)/"}"#).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let config = load(&path).unwrap();
            config.warnings.iter().any(|w| w.contains("chmod 600"))
        };
        let (open, closed) = (warned(0o644), warned(0o600));
        std::fs::remove_file(&path).unwrap();
        assert_eq!((open, closed), (true, false));
    }

    #[test]
    fn tls_files_are_relative_to_the_config_folder() {
        let config = parse_at(
            r#"{"server": "u@tcp(db:3306)/?tls=preferred", "tls_ca": "ca.pem",
                "tls_cert": "/abs/client.pem", "tls_key": "keys/client.key"}"#,
        )
        .unwrap();
        let server = &config.server;
        assert_eq!(
            server.tls_ca.as_deref(),
            Some(Path::new("/etc/sera/ca.pem"))
        );
        assert_eq!(
            server.tls_cert.as_deref(),
            Some(Path::new("/abs/client.pem"))
        );
        assert_eq!(
            server.tls_key.as_deref(),
            Some(Path::new("/etc/sera/keys/client.key"))
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn tls_files_without_tls_in_the_dsn_are_a_warning() {
        let config = parse_at(r#"{"server": "u@tcp(db:3306)/", "tls_ca": "ca.pem"}"#).unwrap();
        assert_eq!(config.warnings.len(), 1);
        assert!(
            config.warnings[0].contains("TLS is off"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let e =
            parse_at(r#"{"server": "u@tcp(db)/?tls=preferred", "tls_cert": "c.pem"}"#).unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let e =
            parse_at(r#"{"server": "u@tcp(db)/?tls=preferred", "tls_key": "k.pem"}"#).unwrap_err();
        assert!(e.contains("go together"), "{e}");
    }

    #[test]
    fn liveness_settings_are_read() {
        let config = parse_at(
            r#"{"server": "u@tcp(db)/", "check_interval": "2s", "on_lost": "ignore",
                "kill_after": "1m", "syslog": true, "verbose": null, "orphans": "term"}"#,
        )
        .unwrap();
        let mut expected = Settings::default();
        for (key, value) in [
            ("check_interval", "2s"),
            ("on_lost", "ignore"),
            ("kill_after", "1m"),
            ("orphans", "term"),
        ] {
            expected.set(key, value).unwrap();
        }
        assert_eq!(config.settings, expected);
        assert!(config.syslog && !config.verbose);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn unknown_keys_are_one_bounded_warning() {
        let one = parse_at(r#"{"server": "u@tcp(db)/", "sever": 1}"#).unwrap();
        assert_eq!(one.warnings.len(), 1);
        assert!(
            one.warnings[0].starts_with("unknown key \"sever\" is ignored (known keys: server, "),
            "{:?}",
            one.warnings
        );
        let keys: String = (0..5000).map(|i| format!(", \"k{i:04}\": 0")).collect();
        let many = parse_at(&format!(r#"{{"server": "u@tcp(db)/"{keys}}}"#)).unwrap();
        assert_eq!(many.warnings.len(), 1);
        assert!(
            many.warnings[0].starts_with(
                "unknown keys \"k0000\", \"k0001\", \"k0002\" and 4997 more are ignored"
            ),
            "{:?}",
            many.warnings
        );
    }

    #[test]
    fn tls_in_a_build_without_it_is_a_config_error_but_preferred_is_plain() {
        for tls in ["true", "skip-verify"] {
            let parsed = parse_at(&format!(r#"{{"server": "u@tcp(db)/?tls={tls}"}}"#));
            assert_eq!(parsed.is_ok(), cfg!(feature = "tls"), "tls={tls}");
            if let Err(e) = parsed {
                assert!(e.contains("built without TLS"), "{e}");
            }
            // A unix socket never uses TLS, so any build serves it.
            assert!(parse_at(&format!(r#"{{"server": "u@unix(/s)/?tls={tls}"}}"#)).is_ok());
        }
        assert!(parse_at(r#"{"server": "u@tcp(db)/?tls=preferred"}"#).is_ok());
    }

    #[test]
    fn invalid_json_says_where() {
        let e = parse_at("{\n  \"server\": \"u@tcp(db)/\",\n}").unwrap_err();
        assert_eq!(
            e,
            "it is not valid JSON: line 2, column 25: a comma before } \
             (JSON allows no comma after the last item)"
        );
    }

    #[test]
    fn check_intervals_below_100ms_are_refused() {
        let e = parse_at(r#"{"server": "u@tcp(db)/", "check_interval": "1ns"}"#).unwrap_err();
        assert!(e.contains("the least is 100ms"), "{e}");
        let never = parse_at(r#"{"server": "u@tcp(db)/", "check_interval": "0s"}"#).unwrap();
        assert_eq!(never.settings.check_every(), None);
        let e = parse_at(r#"{"server": "u@tcp(db)/", "orphans": "keep"}"#).unwrap_err();
        assert!(e.contains("wait, term, ignore"), "{e}");
    }
}
