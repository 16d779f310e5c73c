//! Running the sera binary as a user would: a config file of its own in a
//! temp dir, a real process, its exit code, stdout and stderr.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::time::{Duration, Instant};

use super::{Server, TempDir};

#[allow(dead_code)]
pub struct Setup {
    pub dir: TempDir,
    pub config: PathBuf,
}

#[allow(dead_code)]
impl Setup {
    /// A config with just `server`.
    pub fn new(dsn: &str) -> Setup {
        Setup::with_json(&format!("{{\"server\": \"{dsn}\"}}"))
    }

    /// A config file with exactly this text.
    pub fn with_json(json: &str) -> Setup {
        let dir = TempDir::new();
        let config = dir.join("sera.json");
        std::fs::write(&config, json).unwrap();
        // As an operator should keep it: sera warns about a readable password.
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir, config }
    }

    /// `sera --config <ours> <args>`, stdin closed, output captured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sera"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        Outcome::from(self.command(args).output().unwrap())
    }
}

#[allow(dead_code)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

#[allow(dead_code)]
impl Outcome {
    pub fn from(out: Output) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A shell loop that holds on (and so holds the lock, as a command under
/// sera) until `path` exists.
#[allow(dead_code)]
pub fn until_exists(path: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.02; done", path.display())
}

/// The lock of `lock_sql` (an `is_used_lock_sql`) stays held, checked every
/// 200 ms, for `long`.
#[allow(dead_code)]
pub fn assert_held_for(server: &Server, lock_sql: &str, long: Duration) {
    let since = Instant::now();
    while since.elapsed() < long {
        let holder = server.sql(lock_sql);
        assert_ne!(holder, "NULL", "lost after {:?}", since.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A password distinctive enough to spot anywhere it leaks.
#[allow(dead_code)]
pub const SECRET: &str = "Sup3r-S3cret";

/// The contract every failure keeps: its exit code, nothing on stdout (it
/// stays the command's), one line `sera: ...` that says `says` (in any
/// case), perhaps a hint line, never the password, never a panic. `case`
/// names it in the test's messages.
#[allow(dead_code)]
pub fn assert_failure(case: &str, out: &Outcome, code: i32, says: &str) {
    assert_eq!(out.code, code, "{case}: {}", out.stderr);
    assert_eq!(out.stdout, "", "{case}: stdout must stay the command's");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "{case}: one line and perhaps a hint: {lines:?}"
    );
    assert!(lines[0].starts_with("sera: "), "{case}: {}", lines[0]);
    assert!(
        lines[0].to_lowercase().contains(&says.to_lowercase()),
        "{case}: expected {says:?} in {:?}",
        lines[0]
    );
    if let Some(hint) = lines.get(1) {
        assert!(hint.starts_with("sera: hint: "), "{case}: {hint}");
    }
    assert!(!out.stderr.contains(SECRET), "{case}: the password leaked");
    assert!(!out.stderr.contains("panicked"), "{case}: {}", out.stderr);
}

/// Text as hex digits, as SQL's `X'..'` takes it and sera sends names.
#[allow(dead_code)]
pub fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// SQL for the connection id holding the lock of this command line, as the
/// Go sera names it (the server computes the MD5 of the hex-encoded text).
#[allow(dead_code)]
pub fn is_used_lock_sql(command_line: &str) -> String {
    format!("SELECT IS_USED_LOCK(MD5(X'{}'))", hex(command_line))
}

/// Whether a process is still alive (and not a zombie).
#[allow(dead_code)]
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The first child of `parent`, if it has one yet.
#[allow(dead_code)]
pub fn child_of(parent: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}
