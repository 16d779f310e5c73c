//! Running the sera binary as a user would: a config file of its own in a
//! temp dir, a real process, its exit code, stdout and stderr.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::TempDir;

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

/// SQL for the connection id holding the lock of this command line, as the
/// Go sera names it (the server computes the MD5 of the hex-encoded text).
#[allow(dead_code)]
pub fn is_used_lock_sql(command_line: &str) -> String {
    let hex: String = command_line.bytes().map(|b| format!("{b:02x}")).collect();
    format!("SELECT IS_USED_LOCK(MD5(X'{hex}'))")
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
