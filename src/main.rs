//! `sera <wait> <command> [args...]`: run a command only while holding a
//! MySQL/MariaDB lock named after it, so that it never runs twice at once
//! anywhere in the cluster. This file is the life of one run, top to bottom.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use sera::args::{self, Args, Request};
use sera::child::{self, Child, Wake};
use sera::config::{self, Config, OnLost};
use sera::lock::{self, Check, Refused};
use sera::mysql::{self, Conn};
use sera::report::{exit, Failure, Reporter};

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);
/// The longest a liveness check waits for its answer before it counts as
/// unanswered (the question stays open for the next check).
const CHECK_DEADLINE: Duration = Duration::from_secs(1);

fn main() {
    let mut reporter = Reporter::stderr_only();
    let code = match run(&mut reporter) {
        Ok(code) => code,
        Err(failure) => {
            reporter.fail(&failure);
            failure.code
        }
    };
    std::process::exit(code);
}

fn run(reporter: &mut Reporter) -> Result<i32, Failure> {
    // 1. Arguments: options, then <wait>, then the command, verbatim.
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => args,
        Ok(Request::Help) => {
            print!("{}", HELP);
            return Ok(0);
        }
        Ok(Request::Version) => {
            println!("{}", sera::version::line());
            return Ok(0);
        }
        Err(why) => {
            return Err(Failure::new(exit::ARGUMENTS, "bad arguments", why)
                .hint(format!("{}; see sera --help", args::USAGE)))
        }
    };

    // 2. Config: /etc/sera.json, or --config, or SERA_CONFIG.
    let path = config::choose_path(args.config.clone());
    let config = config::load(&path)
        .map_err(|why| Failure::new(exit::CONFIG, format!("config {}", path.display()), why))?;
    let lock_name = lock::name(&args.command);
    reporter.verbose = args.verbose || config.verbose;
    reporter.context = format!("lock {lock_name}: {}", command_line(&args.command));
    if config.syslog {
        reporter.use_syslog();
    }
    for warning in &config.warnings {
        reporter.warn(&format!("config {}: {warning}", path.display()));
    }

    // 3. Connect: one dedicated connection, for this run only.
    let mut conn = Conn::connect(&config.server).map_err(|e| connect_failure(&config, e))?;
    reporter.progress(&format!(
        "connected to {} ({}) as connection {}",
        config.server.address,
        conn.server_version(),
        conn.connection_id()
    ));

    // 4. Lock, or wait for whoever holds it.
    let asked = Instant::now();
    if args.wait_and_skip {
        match lock::acquire(&mut conn, &lock_name, Duration::ZERO) {
            Ok(()) => reporter.progress("first past the post: running the command"),
            Err(Refused::TimedOut) => return wait_and_skip(conn, &lock_name, &args, reporter),
            Err(Refused::Failed(e)) => return Err(lock_failure(e)),
        }
    } else {
        reporter.progress(&format!(
            "waiting up to {} s for the lock {lock_name}",
            seconds(args.wait)
        ));
        match lock::acquire(&mut conn, &lock_name, args.wait) {
            Ok(()) => {}
            Err(Refused::TimedOut) => return Err(timed_out(&mut conn, &lock_name, &args)),
            Err(Refused::Failed(e)) => return Err(lock_failure(e)),
        }
    }
    reporter.event(&format!(
        "acquired the lock after {} ms",
        asked.elapsed().as_millis()
    ));

    // 5. Spawn, with every forwardable signal blocked from here on.
    let mask = child::block_signals();
    let child = child::spawn(&args.command, &mask, conn.raw_fd()).map_err(|e| {
        let program = &args.command[0];
        Failure::new(
            exit::COMMAND,
            format!("cannot run {}", program.to_string_lossy()),
            e.reason(program),
        )
    })?;
    let started = Instant::now();

    // 6. Watch: forward signals, reap, and check now and then that the
    //    lock is still ours.
    let settings = Settings::from(&args, &config);
    let (status, lost) = watch(&mut conn, &child, &lock_name, &settings, reporter, started);
    let code = child::exit_code(status);
    reporter.event(&format!(
        "the command {} after {} s",
        child::describe(status),
        tenths(started.elapsed())
    ));

    // 7. Release: ending the session frees the lock at once.
    conn.quit();
    reporter.progress("released the lock");
    Ok(if lost { exit::LOCK_LOST } else { code })
}

/// How sera watches the lock while the command runs: flag beats config beats
/// the default.
struct Settings {
    check_interval: Duration,
    on_lost: OnLost,
    kill_after: Duration,
}

impl Settings {
    fn from(args: &Args, config: &Config) -> Settings {
        Settings {
            check_interval: args
                .check_interval
                .or(config.check_interval)
                .unwrap_or(DEFAULT_CHECK_INTERVAL),
            on_lost: args.on_lost.or(config.on_lost).unwrap_or(OnLost::Term),
            kill_after: args
                .kill_after
                .or(config.kill_after)
                .unwrap_or(DEFAULT_KILL_AFTER),
        }
    }
}

/// Wait for the command to end. Returns its wait status, and whether the lock
/// was lost and the command stopped because of it.
fn watch(
    conn: &mut Conn,
    child: &Child,
    lock_name: &str,
    settings: &Settings,
    reporter: &Reporter,
    started: Instant,
) -> (libc::c_int, bool) {
    let mut watch = lock::Watch::new(lock_name, CHECK_DEADLINE.min(settings.check_interval));
    let mut checking = !settings.check_interval.is_zero();
    loop {
        let until_next = if checking {
            settings.check_interval
        } else {
            Duration::from_secs(86400 * 365)
        };
        if let Wake::Exited(status) = child::wait(child, until_next) {
            return (status, false);
        }
        let why = match watch.check(conn) {
            Check::Ours => continue,
            Check::Uncertain => {
                reporter.progress(&format!(
                    "no answer to lock check {} of {}",
                    watch.unanswered,
                    lock::MAX_UNANSWERED
                ));
                continue;
            }
            Check::Lost(why) => why,
        };
        let ran = tenths(started.elapsed());
        match settings.on_lost {
            OnLost::Term => {
                reporter.fail(&Failure::new(
                    exit::LOCK_LOST,
                    "lost the lock",
                    format!(
                        "{why}; stopping the command after {ran} s \
                         (SIGTERM, then SIGKILL after {} s)",
                        seconds(settings.kill_after)
                    ),
                ));
                return (child::stop(child, settings.kill_after), true);
            }
            OnLost::Ignore => {
                reporter.warn(&format!(
                    "lost the lock after {ran} s: {why}; \
                     on_lost=ignore, so the command goes on unprotected"
                ));
                checking = false;
            }
        }
    }
}

/// `--wait-and-skip` when someone else holds the lock: wait for them to
/// finish, then skip the command (exit 0, or 205 with detailed exit codes).
fn wait_and_skip(
    mut conn: Conn,
    lock_name: &str,
    args: &Args,
    reporter: &Reporter,
) -> Result<i32, Failure> {
    reporter.progress("someone else has the lock: waiting for them, then skipping the command");
    match lock::acquire(&mut conn, lock_name, args.wait) {
        Ok(()) => {}
        Err(Refused::TimedOut) => return Err(timed_out(&mut conn, lock_name, args)),
        Err(Refused::Failed(e)) => return Err(lock_failure(e)),
    }
    conn.quit();
    reporter.event("skipped: another run held the lock and has finished");
    Ok(if args.detailed_exit_codes {
        exit::SKIPPED
    } else {
        0
    })
}

fn timed_out(conn: &mut Conn, lock_name: &str, args: &Args) -> Failure {
    let held_by = lock::holder(conn, lock_name)
        .map(|who| format!("held by {who}"))
        .unwrap_or_else(|| "it was held by another session".into());
    Failure::new(
        exit::TIMED_OUT,
        format!(
            "timed out after {} s waiting for the lock",
            seconds(args.wait)
        ),
        held_by,
    )
}

fn connect_failure(config: &Config, e: mysql::Error) -> Failure {
    let server = &config.server;
    let failure = Failure::new(
        exit::SERVER,
        format!("cannot connect to {}", server.address),
        &e,
    );
    match e {
        mysql::Error::Server { code: 1045, .. } => {
            let plain_tcp = matches!(server.address, sera::dsn::Address::Tcp { .. })
                && server.tls == sera::dsn::Tls::False;
            failure.hint(format!(
                "check the user and password of \"server\" in {} ({server}){}",
                config.path.display(),
                if plain_tcp {
                    "; MariaDB says the same to a connection without TLS when it has \
                     require_secure_transport=ON: then add tls=true"
                } else {
                    ""
                }
            ))
        }
        mysql::Error::Server { code: 1049, .. } => failure.hint(
            "the database in the DSN does not exist; sera needs none: end the DSN with \"/\"",
        ),
        mysql::Error::Server { code: 1040, .. } => {
            failure.hint("the server has reached max_connections")
        }
        mysql::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            failure.hint("is the server running and listening there?")
        }
        mysql::Error::Timeout | mysql::Error::Protocol(_) if server.timeout.is_none() => failure
            .hint(format!(
                "sera gives up after {} s; set ?timeout= in the DSN to change that",
                seconds(mysql::DEFAULT_TIMEOUT)
            )),
        _ => failure,
    }
}

fn lock_failure(e: mysql::Error) -> Failure {
    let failure = Failure::new(exit::SERVER, "cannot take the lock", &e);
    match e {
        mysql::Error::Server { code: 1235, .. } => failure.hint(
            "this looks like a Galera cluster node, where user locks (GET_LOCK) do not work; \
             point sera at a single server",
        ),
        _ => failure,
    }
}

/// The command as one line, for logs; the lock name is the MD5 of this.
fn command_line(command: &[OsString]) -> String {
    let words: Vec<_> = command.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}

/// Seconds as the user wrote them: `5`, `0.5`. Integer arithmetic only: see
/// `tenths`.
fn seconds(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        ns => format!(
            "{}.{}",
            d.as_secs(),
            format!("{ns:09}").trim_end_matches('0')
        ),
    }
}

/// Seconds with one decimal, as `{:.1}` would print them. Floating point is
/// kept out of sera: its parsing and formatting code alone would cost some
/// 30 KB of the static binary.
fn tenths(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

const HELP: &str = "\
sera: run a command only while holding a MySQL/MariaDB lock named after it,
so that it never runs twice at once anywhere in the cluster.

usage: sera [options] [--] <wait-seconds> <command> [args...]

  <wait-seconds>  how long to wait for the lock: 0 tries once; 0.5 is allowed
  <command>       run with its arguments, stdin, stdout, stderr, terminal,
                  environment and signals as they are; its exit status is
                  sera's. The lock is the MD5 of the command line.

options (they stop at <wait-seconds>):
  --wait-and-skip         the first to get the lock runs the command; the
                          others wait for it to finish, then exit 0 without
                          running it
  --detailed-exit-codes   with --wait-and-skip: exit 205 when skipped
  --config FILE           config file (default /etc/sera.json, or $SERA_CONFIG)
  --check-interval DUR    how often to check the lock is still ours (5s; 0 = never)
  --on-lost term|ignore   when the lock is lost: stop the command (term, the
                          default) or let it finish (ignore)
  --kill-after DUR        after SIGTERM, SIGKILL the command this much later (10s)
  -v, --verbose           progress on stderr
  -h, --help              this text
  -V, --version           the version

config file (JSON):
  {
    \"server\": \"user:password@tcp(db.example.com:3306)/?timeout=5s\",
    \"syslog\": true,
    \"verbose\": false,
    \"check_interval\": \"5s\", \"on_lost\": \"term\", \"kill_after\": \"10s\",
    \"tls_ca\": \"ca.pem\", \"tls_cert\": \"client.pem\", \"tls_key\": \"client.key\"
  }
  server is a go-sql-driver/mysql DSN (tls=true|skip-verify|preferred|false);
  $SERA_PASSWORD, if set, replaces its password. The tls_ files are for
  tls=true; relative to the config's folder. Durations are Go's: 500ms, 5s,
  2m, 1h30m.

exit codes:
  the command's own   it ran; its exit status is passed through
  128+N               it was killed by signal N
  200                 config file missing, unreadable or invalid (or a bad DSN)
  201                 bad arguments
  202                 could not connect, authenticate or lock
  203                 the command could not be started
  204                 timed out waiting for the lock
  205                 --wait-and-skip --detailed-exit-codes: skipped
  206                 the lock was lost while the command ran; it was stopped
";
