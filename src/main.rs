//! `sera <wait> <command> [args...]`: run a command only while holding a
//! MySQL/MariaDB lock named after it, so that it never runs twice at once
//! anywhere in the cluster. This file is the life of one run, top to bottom.

use std::ffi::OsString;
use std::time::Instant;

use sera::args::{self, Args, Request};
use sera::child::{self, Child, Wake};
use sera::config::{self, Config};
use sera::duration::{seconds, tenths};
use sera::lock::{self, Check, Refused};
use sera::mysql::{self, Conn};
use sera::report::{exit, Failure, Reporter};
use sera::room;
use sera::settings::{OnLost, Orphans, Settings, CHECK_DEADLINE};
use sera::tree;

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
    child::stop_on_signals_as_init();

    // 1. Arguments: options, then <wait>, then the command, verbatim.
    let (args, status) = match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => (args, None),
        Ok(Request::Status { args, json }) => (args, Some(json)),
        Ok(Request::Help) => {
            say(HELP);
            return Ok(0);
        }
        Ok(Request::Version) => {
            say(&format!("{}\n", sera::version::line()));
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
    let lock_name = match &args.name {
        Some(name) => name.clone(),
        None => lock::name(&args.command),
    };
    reporter.verbose = args.verbose || config.verbose;
    reporter.context = format!("lock {lock_name}: {}", command_line(&args.command));
    if config.syslog {
        reporter.use_syslog();
    }
    for warning in &config.warnings {
        reporter.warn(&format!("config {}: {warning}", path.display()));
    }
    let settings = args.settings.or(config.settings);
    if args.wait_and_skip && settings.slots() > 1 {
        return Err(Failure::new(
            exit::ARGUMENTS,
            "bad arguments",
            "--wait-and-skip runs a command once while slots let several run at once: \
             use one or the other",
        )
        .hint(format!("{}; see sera --help", args::USAGE)));
    }
    if args.detailed_exit_codes && !args.wait_and_skip {
        reporter.warn(
            "--detailed-exit-codes does nothing without --wait-and-skip \
             (it makes a skipped run exit 205)",
        );
    }

    // Before connecting: a command that cannot start is 203 now, not after
    // a wait for a lock it could not use. (`status` runs no command.)
    if status.is_none() {
        child::check_program(&args.command[0]).map_err(|e| cannot_run(&args.command[0], e))?;
    }

    // 3. Connect: one dedicated connection, for this run only.
    //    It tells the server who it is, for `sera status` to show others.
    //    A server that has reached max_connections is waited out, with the
    //    rest of the herd, as long as <wait> allows.
    let about = lock::introduction(&lock_name, status.is_none().then(|| &args.command[0]));
    let connect = || Conn::connect_as(&config.server, &about);
    let until = Instant::now() + args.wait;
    let mut conn = room::connect(&connect, &mut room::Backoff::default(), until)
        .map_err(|e| connect_failure(&config, e))?;
    reporter.progress(&format!(
        "connected to {} ({}) as connection {}",
        config.server.address,
        conn.server_version(),
        conn.connection_id()
    ));
    // `sera status` stops here: it only looks.
    if let Some(json) = status {
        return show_status(conn, &lock_name, settings.slots(), json);
    }

    // 4. Lock, or wait for whoever holds it. The same round trip raises the
    //    session's idle timeout, so the server never frees the lock of a
    //    command that runs longer than its wait_timeout.
    let dsn_wait_timeout = config.server.session_var("wait_timeout");
    for warning in settings.warnings(dsn_wait_timeout.and_then(|v| v.parse().ok())) {
        reporter.warn(&warning);
    }
    let asked = Instant::now();
    let keep_session = lock::keep_session_sql(&config.server.session_vars);
    let asking = Asking {
        lock_name: &lock_name,
        config: &config,
        args: &args,
        deadline: until,
        settings: &settings,
        setup: keep_session.as_deref(),
        reporter,
    };
    let (held, seat) = match take_lock(&mut conn, &asking, &connect)? {
        Turn::Ours(held, seat) => (held, seat),
        Turn::Skip => {
            conn.quit();
            reporter.event("skipped: another run held the lock and has finished");
            return Ok(if args.detailed_exit_codes {
                exit::SKIPPED
            } else {
                0
            });
        }
    };
    reporter.event(&format!(
        "acquired the lock {held} after {} ms",
        asked.elapsed().as_millis()
    ));

    // 5. Spawn, with every signal sera forwards blocked from here on.
    let mut child =
        child::spawn(&args.command, conn.raw_fd()).map_err(|e| cannot_run(&args.command[0], e))?;
    // Only now, so that the round trip does not delay the command's start.
    if let Err(e) = room::leave(&mut conn, &seat) {
        reporter.warn(&format!(
            "could not give back the waiting-room seat {seat}: {e}"
        ));
    }

    // 6. Watch: forward signals, reap, check now and then that the lock is
    //    still ours, and see out whatever the command leaves behind.
    let watching = Watching {
        lock_name: &held,
        settings: &settings,
        reporter,
        started: Instant::now(),
    };
    let lost = watch(&mut conn, &mut child, &watching);

    // 7. Release: ending the session frees the lock at once.
    conn.quit();
    if lost {
        return Ok(exit::LOCK_LOST);
    }
    reporter.progress("released the lock");
    Ok(child.status.map_or(exit::LOCK_LOST, child::exit_code))
}

/// Whose turn it is once the lock step is over.
enum Turn {
    /// The lock is ours (this one: a semaphore's slot has a name of its
    /// own): run the command, then give back the waiting-room seat (if one
    /// was taken; "" if not).
    Ours(String, String),
    /// `--wait-and-skip`: someone else ran it and has finished.
    Skip,
}

/// What `take_lock` needs to know about the run.
struct Asking<'a> {
    lock_name: &'a str,
    /// For the messages of a failed reconnection.
    config: &'a Config,
    args: &'a Args,
    /// When `<wait>` is over.
    deadline: Instant,
    settings: &'a Settings,
    /// Sent with every first try of a session: `lock::keep_session_sql`.
    setup: Option<&'a str>,
    reporter: &'a Reporter,
}

/// Take the lock, or one of its slots, waiting for it until `deadline`: first
/// without waiting; then, with a seat in the waiting room, connected and
/// blocked in the server; and while the room is full, from outside, hung up,
/// trying again now and then on a new connection (`reconnect`). With
/// `--wait-and-skip` only the first to ask runs; the others wait for it to
/// finish and skip.
fn take_lock(
    conn: &mut Conn,
    asking: &Asking,
    reconnect: &dyn Fn() -> Result<Conn, mysql::Error>,
) -> Result<Turn, Failure> {
    let Asking {
        lock_name,
        config,
        args,
        deadline,
        settings,
        setup,
        reporter,
    } = *asking;
    let slots = settings.slots();
    let mut backoff = room::Backoff::default();
    let mut first = true;
    let mut was_outside = false;
    loop {
        // Every try is on a new session, which needs the setup too.
        let (held, setup_failed) =
            lock::try_take(conn, lock_name, slots, setup).map_err(lock_failure)?;
        if let (Some(e), true) = (setup_failed, first) {
            reporter.warn(&format!(
                "could not raise the lock session's wait_timeout: {e}; \
                 the server may end the session, and free the lock, if it idles"
            ));
        }
        match held {
            // With --wait-and-skip, a lock free on a later try means the
            // run we waited for is over.
            Some(_) if args.wait_and_skip && !first => return Ok(Turn::Skip),
            Some(held) => return Ok(Turn::Ours(held, String::new())),
            None => {}
        }
        if first {
            reporter.progress(&match args.wait_and_skip {
                true => {
                    "someone else has the lock: waiting for them, then skipping the command".into()
                }
                false => format!(
                    "waiting up to {} s for the lock {lock_name}",
                    seconds(args.wait)
                ),
            });
        }
        first = false;
        if Instant::now() >= deadline {
            return Err(timed_out(conn, lock_name, args, slots));
        }
        let seat =
            room::take_seat(conn, lock_name, settings.waiting_room()).map_err(lock_failure)?;
        if let Some(seat) = seat {
            let left = deadline.saturating_duration_since(Instant::now());
            // On every way out but Ours the session ends, and the seat with it.
            return match lock::wait_take(conn, lock_name, slots, left) {
                Ok(_) if args.wait_and_skip => Ok(Turn::Skip),
                Ok(held) => Ok(Turn::Ours(held, seat)),
                Err(Refused::TimedOut) => Err(timed_out(conn, lock_name, args, slots)),
                Err(Refused::Failed(e)) => Err(lock_failure(e)),
            };
        }
        // The room is full: hang up, and try again later from outside.
        if !was_outside {
            reporter.progress("the waiting room is full: waiting outside, without a connection");
        }
        was_outside = true;
        conn.quit();
        backoff.sleep(deadline);
        *conn = room::connect(reconnect, &mut backoff, deadline)
            .map_err(|e| connect_failure(config, e))?;
    }
}

/// What `watch` needs to know about the run.
struct Watching<'a> {
    lock_name: &'a str,
    settings: &'a Settings,
    reporter: &'a Reporter,
    started: Instant,
}

/// Wait for the command and for whatever it leaves behind, checking now and
/// then that the lock is still ours. Returns true when the lock was lost and
/// the tree was stopped because of it.
fn watch(conn: &mut Conn, child: &mut Child, w: &Watching) -> bool {
    let settings = w.settings;
    // Every check gets the full deadline for its answer, however short the
    // interval: a short stall of the server is not a lost lock.
    let mut lock_watch = lock::Watch::new(w.lock_name, CHECK_DEADLINE);
    let mut check_every = settings.check_every();
    loop {
        match child.wait(check_every) {
            Wake::Timeout => {}
            Wake::CommandExited => {
                w.reporter.event(&format!(
                    "the command {} after {} s",
                    child::describe(child.status.unwrap_or(0)),
                    tenths(w.started.elapsed())
                ));
                if child.tree_empty || leftovers(child, w) {
                    return false;
                }
                continue;
            }
            Wake::TreeEmpty => {
                w.reporter
                    .progress("the last process the command left has exited");
                return false;
            }
            Wake::StopAsked => {
                w.reporter.event(&format!(
                    "got signal {} while waiting for what the command left: \
                     stopping it (SIGTERM, then SIGKILL after {} s)",
                    child.stop_signal.unwrap_or(0),
                    seconds(settings.kill_after())
                ));
                stop_tree(child, w);
                return false;
            }
        }
        let why = match lock_watch.check(conn) {
            Check::Ours => continue,
            Check::Uncertain => {
                w.reporter.progress(&format!(
                    "no answer to lock check {} of {}",
                    lock_watch.unanswered,
                    lock::MAX_UNANSWERED
                ));
                continue;
            }
            Check::Lost(why) => why,
        };
        let ran = tenths(w.started.elapsed());
        match settings.on_lost() {
            OnLost::Term => {
                w.reporter.fail(&Failure::new(
                    exit::LOCK_LOST,
                    "lost the lock",
                    format!(
                        "{why}; the command has run {ran} s: stopping it and every \
                         process it started (SIGTERM, then SIGKILL after {} s)",
                        seconds(settings.kill_after())
                    ),
                ));
                stop_tree(child, w);
                return true;
            }
            OnLost::Ignore => {
                w.reporter.warn(&format!(
                    "lost the lock after {ran} s: {why}; \
                     on_lost=ignore, so the command goes on unprotected"
                ));
                check_every = None;
            }
        }
    }
}

/// The command has exited and left processes running: apply the orphan
/// policy (a stop signal sera got turns `wait` into `term`). Returns true
/// when the run is over.
fn leftovers(child: &mut Child, w: &Watching) -> bool {
    let left = match tree::list(&tree::below_sera().unwrap_or_default()) {
        list if list.is_empty() => "processes".to_string(),
        list => list,
    };
    let policy = match w.settings.orphans() {
        Orphans::Wait if child.stop_signal.is_some() => Orphans::Term,
        policy => policy,
    };
    match policy {
        Orphans::Wait => {
            w.reporter.notice(&format!(
                "the command exited but left {left} running: keeping the lock until \
                 they exit (--orphans term stops them, --orphans ignore releases the lock now)"
            ));
            false
        }
        Orphans::Term => {
            w.reporter.event(&format!(
                "the command left {left} running: stopping them \
                 (SIGTERM, then SIGKILL after {} s)",
                seconds(w.settings.kill_after())
            ));
            stop_tree(child, w);
            true
        }
        Orphans::Ignore => {
            w.reporter.event(&format!(
                "the command left {left} running: releasing the lock anyway (orphans=ignore)"
            ));
            true
        }
    }
}

/// Stop the command's whole tree, and say so if part of it would not die.
fn stop_tree(child: &mut Child, w: &Watching) {
    let Some(survivors) = child.stop(w.settings.kill_after()) else {
        return;
    };
    let who = match survivors.is_empty() {
        true => "processes of the command's tree (without a usable /proc sera cannot name them)"
            .to_string(),
        false => tree::list(&survivors),
    };
    w.reporter.warn(&format!(
        "giving up on {who}: still there {} s after SIGKILL (stuck in the kernel, \
         or not sera's to signal)",
        seconds(child::GIVE_UP_AFTER_KILL)
    ));
}

fn timed_out(conn: &mut Conn, lock_name: &str, args: &Args, slots: u32) -> Failure {
    let held_by = match lock::holder(conn, lock_name) {
        _ if slots > 1 => {
            format!("all {slots} slots were held (sera status --slots {slots} shows by whom)")
        }
        Ok(Some(holder)) => format!("held by {}", holder.describe()),
        _ => "it was held by another session".into(),
    };
    Failure::new(
        exit::TIMED_OUT,
        format!(
            "timed out after {} s waiting for the lock",
            seconds(args.wait)
        ),
        held_by,
    )
}

/// `sera status`: whether the lock is free (exit 0) or held (exit 1), and
/// by whom, on stdout, as lines or as one JSON object. For a semaphore, every
/// slot, then how many wait for any of them; held means all slots are, so
/// that a run would wait.
fn show_status(mut conn: Conn, lock_name: &str, slots: u32, json: bool) -> Result<i32, Failure> {
    let names = match slots {
        1 => vec![lock_name.to_string()],
        _ => lock::numbered(lock_name, "", slots),
    };
    let mut lines = Vec::new();
    let mut held = 0;
    for name in &names {
        let mut holder = lock::holder(&mut conn, name)
            .map_err(|e| Failure::new(exit::SERVER, "cannot look the lock up", e))?;
        held += usize::from(holder.is_some());
        if let (Some(h), true) = (&mut holder, slots > 1) {
            // Waiters wait for the semaphore, not for this slot: counted below.
            h.waiting = None;
        }
        lines.push(match (&holder, json) {
            (_, true) => lock::status_json(name, holder.as_ref()),
            (None, false) => format!("lock {name}: free"),
            (Some(h), false) => match h.waiting.as_deref() {
                Some(n) if n != "0" => {
                    format!("lock {name}: held by {}; {n} waiting", h.describe())
                }
                _ => format!("lock {name}: held by {}", h.describe()),
            },
        });
    }
    let waiting = match slots {
        1 => None,
        _ => lock::semaphore_waiting(&mut conn, lock_name),
    };
    conn.quit();
    if let (false, Some(n)) = (json, &waiting) {
        lines.push(format!(
            "lock {lock_name}: {held} of {slots} slots held; {n} waiting"
        ));
    }
    match (json, slots) {
        (true, 1) | (false, _) => say(&format!("{}\n", lines.join("\n"))),
        (true, _) => {
            let waiting = waiting.map_or(String::new(), |n| format!(",\"waiting\":{n}"));
            say(&format!("{{\"slots\":[{}]{waiting}}}\n", lines.join(",")))
        }
    }
    Ok(if held == names.len() { 1 } else { 0 })
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
            let check = if config.password_from_env {
                "check SERA_PASSWORD (it replaces the password) and the user of \"server\""
            } else {
                "check the user and password of \"server\""
            };
            failure.hint(format!(
                "{check} in {} ({server}){}",
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
        // getaddrinfo's failure, which std gives no kind of its own.
        mysql::Error::Io(ref io) if io.to_string().starts_with("failed to lookup address") => {
            failure.hint(lookup_hint(&server.address))
        }
        // Only for a real timeout: a refusal that came at once (TLS the
        // server or this build lacks) has nothing to do with waiting.
        mysql::Error::Timeout | mysql::Error::NoGreeting if server.timeout.is_none() => failure
            .hint(format!(
                "sera gives up after {} s; set ?timeout= in the DSN to change that",
                seconds(mysql::DEFAULT_TIMEOUT)
            )),
        _ => failure,
    }
}

/// A host name that did not resolve. A root that holds only sera (a
/// container FROM scratch) has nothing to resolve it with, not even
/// /etc/hosts for localhost: say so, and suggest the address.
fn lookup_hint(address: &sera::dsn::Address) -> String {
    let host = match address {
        sera::dsn::Address::Tcp { host, .. } => host.as_str(),
        sera::dsn::Address::Unix(_) => "",
    };
    let ip = match host {
        "localhost" => "127.0.0.1",
        _ => "the server's IP address",
    };
    let here = match ["/etc/hosts", "/etc/resolv.conf"].map(|f| std::path::Path::new(f).exists()) {
        [false, false] => "there is no /etc/hosts and no resolver (/etc/resolv.conf) here",
        _ => "the resolver here does not know it",
    };
    format!("{here} to look {host} up: write {ip} in the DSN instead")
}

fn cannot_run(program: &OsString, e: child::SpawnError) -> Failure {
    Failure::new(
        exit::COMMAND,
        format!("cannot run {}", program.to_string_lossy()),
        e.reason(program),
    )
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

/// Print on stdout. A reader that went away (`sera status | head -0`) is
/// no reason to fail, and no reason for a panic's backtrace.
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// The command as one line, for logs; the lock name is the MD5 of this.
fn command_line(command: &[OsString]) -> String {
    let words: Vec<_> = command.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}

const HELP: &str = "\
sera: run a command only while holding a MySQL/MariaDB lock named after it,
so that it never runs twice at once anywhere in the cluster.

usage: sera [options] [--] <wait-seconds> <command> [args...]
       sera [options] status [--name NAME | <command> [args...]] [--json]

  <wait-seconds>  how long to wait for the lock: 0 tries once; 0.5 is allowed
  <command>       run with its arguments, stdin, stdout, stderr, terminal,
                  environment and signals as they are; its exit status is
                  sera's. The lock is the MD5 of the command line, unless
                  --name gives it.
  status          say whether the lock (of --name, or of the command) is
                  free (exit 0) or held (exit 1), and by whom; --json for
                  one JSON object

options (they stop at <wait-seconds>):
  --name NAME             the lock is exactly NAME (1 to 64 characters), so
                          that different commands, or an application's
                          GET_LOCK('NAME', ...), share it
  --slots N               let up to N commands hold the lock at once (a
                          semaphore; 1, the default, is the plain lock)
  --waiting-room N        how many waiters per lock wait connected (16; 0 =
                          all); the others retry now and then from outside
  --wait-and-skip         the first to get the lock runs the command; the
                          others wait for it to finish, then exit 0 without
                          running it
  --detailed-exit-codes   with --wait-and-skip: exit 205 when skipped
  --config FILE           config file (default /etc/sera.json, or $SERA_CONFIG)
  --check-interval DUR    how often to check the lock is still ours (5s; at
                          least 100ms; 0 = never)
  --on-lost term|ignore   when the lock is lost: stop the command and all it
                          started (term, the default) or let it finish (ignore)
  --kill-after DUR        after SIGTERM, SIGKILL what is left this much later (10s)
  --orphans wait|term|ignore
                          when the command exits but leaves processes running:
                          keep the lock until they exit (wait, the default),
                          stop them (term), or release the lock now (ignore)
  -v, --verbose           progress on stderr
  -h, --help              this text
  -V, --version           the version

config file (JSON):
  {
    \"server\": \"user:password@tcp(db.example.com:3306)/?timeout=5s\",
    \"syslog\": true,
    \"verbose\": false,
    \"check_interval\": \"5s\", \"on_lost\": \"term\", \"kill_after\": \"10s\",
    \"orphans\": \"wait\", \"slots\": 1, \"waiting_room\": 16,
    \"tls_ca\": \"ca.pem\", \"tls_cert\": \"client.pem\", \"tls_key\": \"client.key\"
  }
  server is a go-sql-driver/mysql DSN (tls=true|skip-verify|preferred|false);
  $SERA_PASSWORD, if set and not empty, replaces its password (the command
  does not see it). The tls_ files are for tls=true; relative to the
  config's folder. Durations are Go's: 500ms, 5s, 2m, 1h30m.

exit codes:
  the command's own   it ran; its exit status is passed through
  128+N               it was killed by signal N
  200                 config file missing, unreadable or invalid (or a bad DSN)
  201                 bad arguments
  202                 could not connect, authenticate or lock
  203                 the command could not be started
  204                 timed out waiting for the lock
  205                 --wait-and-skip --detailed-exit-codes: skipped
  206                 the lock was lost while the command ran; it was stopped,
                      with every process it started
";
