//! The command line: `sera [options] [--] <wait> <command> [args...]`.
//!
//! Options stop at the first positional argument, so everything from the
//! command on is passed verbatim: `sera 5 ls -la` never treats `-la` as ours.
//! The flags and `--` placement are those of the Go sera.
//!
//! `sera [options] status [--name NAME | <command> [args...] | --all] [--json]`
//! asks who holds a lock instead: a wait time is never `status`, so the two
//! cannot be confused.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration;
use crate::settings::{self, Settings};
use crate::sql::LockTable;

#[derive(Debug, Default)]
pub struct Args {
    pub wait: Duration,
    pub command: Vec<OsString>,
    pub wait_and_skip: bool,
    pub detailed_exit_codes: bool,
    pub config: Option<PathBuf>,
    pub verbose: bool,
    /// `--name`: the lock's name on the server, instead of the command's MD5.
    pub name: Option<String>,
    /// `--lock-table DB.TABLE`: table mode (table.rs).
    pub lock_table: Option<LockTable>,
    /// How to watch the lock and the command's tree, as far as flags say.
    pub settings: Settings,
}

/// What the user asked for.
pub enum Request {
    Run(Args),
    /// Who holds the lock named by `args.name`, or the command's.
    Status {
        args: Args,
        look: Look,
    },
    Help,
    Version,
}

/// What `sera status` shows, and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct Look {
    /// One JSON object instead of lines.
    pub json: bool,
    /// `--all`: every lock a sera holds on the server, not one lock.
    pub all: bool,
}

pub const USAGE: &str = "usage: sera [options] [--] <wait-seconds> <command> [args...]";

/// `sera --help`.
pub const HELP: &str = "\
sera: run a command only while holding a MySQL/MariaDB lock named after it,
so that it never runs twice at once anywhere in the cluster.

usage: sera [options] [--] <wait-seconds> <command> [args...]
       sera [options] status [--name NAME | <command> [args...]] [--json]
       sera [options] status --all [--json]

  <wait-seconds>  how long to wait for the lock: 0 tries once; 0.5 is allowed
  <command>       run with its stdio, terminal, environment and signals
                  as they are; its exit status is sera's. The lock is the
                  MD5 of the command line, or --name; the command finds it
                  in $SERA_LOCK_NAME.
  status          whether the lock is free (exit 0) or held (exit 1), and
                  by whom; --all: every lock seras hold (needs
                  performance_schema or metadata_lock_info)

options (they stop at <wait-seconds>):
  --name NAME             the lock is exactly NAME (1 to 64 characters), so
                          that different commands, or an application's
                          GET_LOCK('NAME', ...), share it
  --lock-table DB.TABLE   the lock is a lease row in that table, for Galera
                          and clusters where GET_LOCK is local to a node;
                          the command gets $SERA_FENCING_TOKEN
  --slots N               let up to N commands hold the lock at once (a
                          semaphore; 1, the default, is the plain lock; not
                          with --lock-table)
  --waiting-room N        waiters per lock that wait connected (16; 0: all);
                          the others retry now and then
  --wait-and-skip         the first to get the lock runs the command; the
                          others wait for it to finish, then exit 0 without
                          running it
  --detailed-exit-codes   with --wait-and-skip: exit 205 when skipped
  --config FILE           config file (default /etc/sera.json, or $SERA_CONFIG)
  --check-interval DUR    how often to check the lock is ours, renewing the
                          lease (5s; at least 100ms; 0: never, and no lease)
  --lease DUR             a host gone silent loses the lock this long after
                          its last renewal, its command stopped first (30s;
                          at least check_interval + 1s + kill_after + 1s)
  --on-lost term|ignore   a lost lock stops the tree (term) or not (ignore)
  --kill-after DUR        after SIGTERM, SIGKILL what is left this much later (10s)
  --orphans wait|term|ignore
                          what the command leaves running: keep the lock
                          until it exits (wait), stop it (term), or let the
                          lock go (ignore)
  --min-hold DUR          hold the lock at least DUR, even if the command is
                          done sooner (more than the hosts' clock skew)
  -v, --verbose           progress on stderr
  -h, --help              this text
  -V, --version           the version

config file (JSON):
  {
    \"server\": \"user:password@tcp(db.example.com:3306)/?timeout=5s\",
    \"syslog\": true,
    \"verbose\": false,
    \"check_interval\": \"5s\", \"lease\": \"30s\", \"on_lost\": \"term\",
    \"kill_after\": \"10s\", \"orphans\": \"wait\", \"slots\": 1, \"waiting_room\": 16,
    \"min_hold\": \"0s\", \"allow_read_only\": false, \"lock_table\": \"sera.locks\",
    \"tls_ca\": \"ca.pem\", \"tls_cert\": \"client.pem\", \"tls_key\": \"client.key\"
  }
  server is a go-sql-driver/mysql DSN (tls=true|skip-verify|preferred|false);
  $SERA_PASSWORD, if set and not empty, replaces its password (the command
  does not see it). The tls_ files are for tls=true; relative to the
  config's folder. Durations are Go's: 500ms, 5s, 2m, 1h30m. A read-only
  server (a replica) or a Galera node is refused (202); allow_read_only
  accepts a read-only one.

exit codes:
  the command's own   it ran; its exit status is passed through
  128+N               it was killed by signal N
  200                 config file missing, unreadable or invalid (or a bad DSN)
  201                 bad arguments
  202                 could not connect, authenticate or lock (or the server
                      is read-only or a Galera node)
  203                 the command could not be started
  204                 timed out waiting for the lock
  205                 --wait-and-skip --detailed-exit-codes: skipped
  206                 the lock was lost while the command ran; it was stopped,
                      with every process it started
";

/// MySQL refuses longer lock names (MariaDB would take them, but the same
/// name must work on both).
const MAX_NAME_CHARS: usize = 64;

/// Parse the arguments (without the program name). The error is one line.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Request, String> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut out = Args::default();
    let mut wait = None;
    // Some once the word `status` was read.
    let mut status: Option<Look> = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("name") => {
                let name = string_value(&mut parser, "--name")?;
                if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
                    return Err(format!(
                        "--name: a lock name has 1 to {MAX_NAME_CHARS} characters \
                         (MySQL's limit), this one has {}",
                        name.chars().count()
                    ));
                }
                out.name = Some(name);
            }
            Long("json") if status.is_some() => status = status.map(|l| Look { json: true, ..l }),
            Long("all") if status.is_some() => status = status.map(|l| Look { all: true, ..l }),
            Value(value) if status.is_none() && wait.is_none() && value == "status" => {
                status = Some(Look::default())
            }
            Value(value) if status.is_some() => {
                out.command = std::iter::once(value)
                    .chain(parser.raw_args().map_err(|e| e.to_string())?)
                    .collect();
                break;
            }
            Long("lock-table") => {
                let text = string_value(&mut parser, "--lock-table")?;
                out.lock_table =
                    Some(LockTable::parse(&text).map_err(|e| format!("--lock-table: {e}"))?);
            }
            Long("wait-and-skip") => out.wait_and_skip = true,
            Long("detailed-exit-codes") => out.detailed_exit_codes = true,
            Long("config") => out.config = Some(parser.value().map_err(|e| e.to_string())?.into()),
            Short('v') | Long("verbose") => out.verbose = true,
            Short('h') | Long("help") => return Ok(Request::Help),
            Short('V') | Long("version") => return Ok(Request::Version),
            // `-1` reads as an option; say what is really wrong with it.
            Short(c) if c.is_ascii_digit() || c == '.' => {
                return Err("the wait time must be 0 or more seconds".into())
            }
            Value(value) => {
                wait = Some(parse_wait(&value.to_string_lossy())?);
                out.command = parser.raw_args().map_err(|e| e.to_string())?.collect();
                break;
            }
            // Every setting (settings::KEYS) is a flag too: --slots, --waiting-room,
            // --check-interval, --lease, --on-lost, --kill-after, --orphans, --min-hold.
            Long(flag) => {
                let flag = flag.to_string();
                let Some(key) = settings::KEYS.iter().find(|k| k.replace('_', "-") == flag) else {
                    return Err(format!("invalid option '--{flag}'"));
                };
                let value = string_value(&mut parser, &format!("--{flag}"))?;
                out.settings
                    .set(key, &value)
                    .map_err(|e| format!("--{flag}: {e}"))?;
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if let Some(look) = status {
        if look.all && (out.name.is_some() || !out.command.is_empty()) {
            return Err("status --all lists every lock: no --name or command with it".into());
        }
        if look.all {
            return Ok(Request::Status { args: out, look });
        }
        if out.name.is_none() && out.command.is_empty() {
            return Err("status: name the lock with --name NAME or by its command".into());
        }
        if out.name.is_some() && !out.command.is_empty() {
            return Err("status: --name or a command, not both".into());
        }
        return Ok(Request::Status { args: out, look });
    }
    out.wait = wait.ok_or("missing the wait time and the command")?;
    if out.command.is_empty() {
        return Err("missing the command to run".into());
    }
    Ok(Request::Run(out))
}

/// Seconds, whole or decimal: `0`, `30`, `0.5`.
fn parse_wait(text: &str) -> Result<Duration, String> {
    duration::parse_seconds(text).ok_or_else(|| {
        format!("invalid wait time \"{text}\": expected 0 or more seconds, such as 5 or 0.5")
    })
}

fn string_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    value
        .into_string()
        .map_err(|_| format!("{flag}: the value is not valid text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(OsString::from))? {
            Request::Run(a) => Ok(a),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn options_stop_at_the_wait_time() {
        let a = run(&["5", "ls", "-la", "--wait-and-skip"]).unwrap();
        assert_eq!(a.wait, Duration::from_secs(5));
        assert_eq!(a.command, ["ls", "-la", "--wait-and-skip"]);
        assert!(!a.wait_and_skip);
    }

    #[test]
    fn flags_and_double_dash_as_the_go_tool() {
        let a = run(&[
            "--wait-and-skip",
            "--detailed-exit-codes",
            "--",
            "30",
            "job.sh",
            "--",
        ])
        .unwrap();
        assert!(a.wait_and_skip && a.detailed_exit_codes);
        assert_eq!(a.wait, Duration::from_secs(30));
        assert_eq!(a.command, ["job.sh", "--"]);
    }

    #[test]
    fn decimal_and_zero_wait() {
        assert_eq!(run(&["0.5", "x"]).unwrap().wait, Duration::from_millis(500));
        assert_eq!(run(&["0", "x"]).unwrap().wait, Duration::ZERO);
    }

    #[test]
    fn bad_waits_are_refused() {
        for wait in ["-1", "abc", "NaN", "inf", "1e3", "", "1.2.3", "-0.5"] {
            assert!(run(&[wait, "x"]).is_err(), "wait {wait:?} accepted");
        }
    }

    #[test]
    fn missing_pieces_are_refused() {
        assert!(run(&[]).unwrap_err().contains("missing the wait"));
        assert!(run(&["5"]).unwrap_err().contains("missing the command"));
        assert!(run(&["--bogus", "5", "x"]).is_err());
        assert!(run(&["--on-lost", "explode", "5", "x"]).is_err());
        assert!(run(&["--kill-after", "soon", "5", "x"]).is_err());
        assert!(run(&["--orphans", "keep", "5", "x"]).is_err());
        let e = run(&["--check-interval", "1ns", "5", "x"]).unwrap_err();
        assert!(e.contains("the least is 100ms"), "{e}");
    }

    #[test]
    fn names_and_status() {
        assert_eq!(
            run(&["--name", "backup", "5", "x"])
                .unwrap()
                .name
                .as_deref(),
            Some("backup")
        );
        let long = "é".repeat(65);
        for bad in ["", long.as_str()] {
            let e = run(&["--name", bad, "5", "x"]).unwrap_err();
            assert!(e.contains("1 to 64 characters"), "{e}");
        }
        assert!(run(&["--name", &"é".repeat(64), "5", "x"]).is_ok());
        let status = |args: &[&str]| parse(args.iter().map(OsString::from));
        match status(&["status", "--json", "backup.sh", "--json"]) {
            Ok(Request::Status { args, look }) => {
                assert!(look.json && !look.all);
                assert_eq!(args.command, ["backup.sh", "--json"]);
            }
            _ => panic!("not a status request"),
        }
        assert!(matches!(
            status(&["--config", "f", "status", "--name", "n"]),
            Ok(Request::Status {
                look: Look {
                    json: false,
                    all: false
                },
                ..
            })
        ));
        assert!(matches!(
            status(&["status", "--all", "--json"]),
            Ok(Request::Status {
                look: Look {
                    json: true,
                    all: true
                },
                ..
            })
        ));
        assert!(status(&["status", "--all", "--name", "n"]).is_err());
        assert!(status(&["status"]).is_err());
        assert!(status(&["status", "--name", "n", "cmd"]).is_err());
        // A command called `status` still runs after a wait time.
        assert_eq!(run(&["5", "status"]).unwrap().command, ["status"]);
    }

    #[test]
    fn liveness_flags() {
        let a = run(&[
            "--check-interval",
            "1s",
            "--on-lost=ignore",
            "--kill-after",
            "500ms",
            "--lease",
            "1m",
            "--orphans",
            "term",
            "1",
            "x",
        ])
        .unwrap();
        let mut expected = Settings::default();
        for (key, value) in [
            ("check_interval", "1s"),
            ("on_lost", "ignore"),
            ("kill_after", "500ms"),
            ("lease", "1m"),
            ("orphans", "term"),
        ] {
            expected.set(key, value).unwrap();
        }
        assert_eq!(a.settings, expected);
        // Only the settings become flags this way.
        assert!(run(&["--server", "x", "1", "x"]).is_err());
    }
}
