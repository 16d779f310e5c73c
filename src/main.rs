//! `sera <wait> <command> [args...]`: run a command only while holding a
//! MySQL/MariaDB lock named after it, so that it never runs twice at once
//! anywhere in the cluster. This file is the life of one run, top to bottom:
//! `run` is its seven steps, one call each, and each step's function follows
//! it in order.

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use sera::args::{self, Args, Request};
use sera::child::{self, Child};
use sera::config::{self, Config};
use sera::failure::{cannot_run, connect_failure, no_turn};
use sera::lock;
use sera::mysql::Conn;
use sera::report::{exit, say, Failure, Reporter};
use sera::room::{self, Asking, Connector, Turn};
use sera::settings::Settings;
use sera::status;
use sera::table::{self, LockTable};
use sera::watch::{self, Ending, Watching};

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
    let Some((args, status)) = arguments()? else {
        return Ok(0);
    };

    // 2. Config: /etc/sera.json, or --config, or SERA_CONFIG, and what it
    //    and the flags make of this run.
    let plan = configure(&args, reporter)?;

    // `sera status` only looks: it connects, asks who holds the lock, and
    // says so.
    let deadline = Instant::now() + args.wait;
    if let Some(json) = status {
        return look(&plan, deadline, json, reporter);
    }

    // Before connecting: a command that cannot start is 203 now, not after
    // a wait for a lock it could not use.
    let program =
        child::check_program(&args.command[0]).map_err(|e| cannot_run(&args.command[0], e))?;

    // 3. Connect: one dedicated connection, for this run only.
    //    It tells the server who it is, for `sera status` to show others.
    //    A server that has reached max_connections is waited out, with the
    //    rest of the herd, as long as <wait> allows.
    let about = lock::introduction(&plan.lock_name, Some(&args.command[0]));
    let connect = || Conn::connect_as(&plan.config.server, &about);
    let mut connector = Connector::new(&connect, deadline);
    let mut conn = connect_within(&mut connector, &plan.config, reporter)?;

    // 4. Lock, or wait for whoever holds it. In table mode the lock is a
    //    lease row, and the command learns its fencing token.
    let (held, seat, mut lease) = match &plan.lock_table {
        Some(table) => match take_lease(
            &mut conn,
            table,
            &plan,
            &args,
            deadline,
            &mut connector,
            &about,
            reporter,
        )? {
            table::Taken::Ours(lease) => (plan.lock_name.clone(), None, Some(lease)),
            table::Taken::Skip => return Ok(skipped(conn, &args, reporter)),
        },
        None => match take_lock(&mut conn, &plan, &args, deadline, &mut connector, reporter)? {
            Turn::Ours { held, seat } => (held, seat, None),
            Turn::Skip => return Ok(skipped(conn, &args, reporter)),
        },
    };

    // 5. Spawn, with every signal sera forwards blocked from here on.
    let mut child = spawn(&mut conn, &program, &args, seat.as_deref(), reporter)?;

    // 6. Watch: forward signals, reap, check now and then that the lock is
    //    still ours, and see out whatever the command leaves behind.
    let watching = Watching {
        lock_name: &held,
        settings: &plan.settings,
        reporter,
        started: Instant::now(),
    };
    let ending = watch::watch(&mut conn, &mut child, &watching, lease.as_deref_mut());

    // 7. Release: ending the session frees the lock at once; a lease row is
    //    given back first.
    if let (Some(lease), Ending::Exited { .. }) = (&mut lease, &ending) {
        lease.release(&mut conn);
    }
    Ok(release(conn, ending, reporter))
}

/// Step 1: what the user asked for. None once `--help` or `--version` has
/// been answered; the Some(json) beside the arguments is `sera status`.
fn arguments() -> Result<Option<(Args, Option<bool>)>, Failure> {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => Ok(Some((args, None))),
        Ok(Request::Status { args, json }) => Ok(Some((args, Some(json)))),
        Ok(Request::Help) => {
            say(args::HELP);
            Ok(None)
        }
        Ok(Request::Version) => {
            say(&format!("{}\n", sera::version::line()));
            Ok(None)
        }
        Err(why) => Err(Failure::new(exit::ARGUMENTS, "bad arguments", why)
            .hint(format!("{}; see sera --help", args::USAGE))),
    }
}

/// What the config and the flags make of this run.
struct Plan {
    config: Config,
    lock_name: String,
    settings: Settings,
    /// Table mode: the lock is a lease row in this table.
    lock_table: Option<LockTable>,
}

/// Step 2: read the config, name the lock, set up the reporter, and refuse
/// flags that contradict each other.
fn configure(args: &Args, reporter: &mut Reporter) -> Result<Plan, Failure> {
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
        ));
    }
    if args.detailed_exit_codes && !args.wait_and_skip {
        reporter.warn(
            "--detailed-exit-codes does nothing without --wait-and-skip \
             (it makes a skipped run exit 205)",
        );
    }
    let lock_table = args.lock_table.clone().or(config.lock_table.clone());
    if let Some(why) = lock_table
        .as_ref()
        .and_then(|_| table::refuse_settings(&settings))
    {
        // 201 when a flag had a part in it, 200 when the config alone did.
        let flags = args.lock_table.is_some()
            || args.settings.shapes_the_lease()
            || args.settings.slots() > 1;
        return Err(match flags {
            true => Failure::new(exit::ARGUMENTS, "bad arguments", why),
            false => Failure::new(exit::CONFIG, format!("config {}", path.display()), why),
        });
    }
    Ok(Plan {
        config,
        lock_name,
        settings,
        lock_table,
    })
}

/// `sera status`: step 3, then who holds the lock, on stdout.
fn look(plan: &Plan, deadline: Instant, json: bool, reporter: &Reporter) -> Result<i32, Failure> {
    let about = lock::introduction(&plan.lock_name, None);
    let connect = || Conn::connect_as(&plan.config.server, &about);
    let mut connector = Connector::new(&connect, deadline);
    let conn = connect_within(&mut connector, &plan.config, reporter)?;
    match &plan.lock_table {
        Some(table) => table::show_status(conn, table, &plan.lock_name, json),
        None => status::show_status(conn, &plan.lock_name, plan.settings.slots(), json),
    }
}

/// Step 3: the run's one connection.
fn connect_within(
    connector: &mut Connector,
    config: &Config,
    reporter: &Reporter,
) -> Result<Conn, Failure> {
    let conn = connector
        .connect()
        .map_err(|e| connect_failure(config, e))?;
    reporter.progress(&format!(
        "connected to {} ({}) as connection {}",
        config.server.address,
        conn.server_version(),
        conn.connection_id()
    ));
    Ok(conn)
}

/// Step 4: the lock, or a slot of it, or the news that the run we waited
/// for is over. The same round trip raises the session's idle timeout, so
/// the server never frees the lock of a command that runs longer than its
/// wait_timeout.
fn take_lock(
    conn: &mut Conn,
    plan: &Plan,
    args: &Args,
    deadline: Instant,
    connector: &mut Connector,
    reporter: &Reporter,
) -> Result<Turn, Failure> {
    let dsn_wait_timeout = plan.config.server.session_var("wait_timeout");
    for warning in plan
        .settings
        .warnings(dsn_wait_timeout.and_then(|v| v.parse().ok()))
    {
        reporter.warn(&warning);
    }
    let asked = Instant::now();
    let keep_session = lock::keep_session_sql(&plan.config.server);
    let asking = Asking {
        lock_name: &plan.lock_name,
        args,
        deadline,
        settings: &plan.settings,
        keep_session: keep_session.as_deref(),
        reporter,
    };
    let turn = room::take_lock(conn, &asking, connector)
        .map_err(|why| no_turn(why, &plan.config, args.wait, plan.settings.slots()))?;
    if let Turn::Ours { held, .. } = &turn {
        reporter.event(&format!(
            "acquired the lock {held} after {} ms",
            asked.elapsed().as_millis()
        ));
    }
    Ok(turn)
}

/// Step 4 in table mode: the lease row, or the news that the run we waited
/// for is over. The command gets the grant's fencing token in its
/// environment, set here before it is spawned (sera starts no thread).
#[allow(clippy::too_many_arguments)]
fn take_lease(
    conn: &mut Conn,
    table: &LockTable,
    plan: &Plan,
    args: &Args,
    deadline: Instant,
    connector: &mut Connector,
    about: &[(&'static str, String)],
    reporter: &Reporter,
) -> Result<table::Taken, Failure> {
    let asking = table::Asking {
        table,
        lock_name: &plan.lock_name,
        wait_and_skip: args.wait_and_skip,
        wait: args.wait,
        deadline,
        settings: &plan.settings,
        config: &plan.config,
        about,
        reporter,
    };
    let taken = table::take_lock(conn, &asking, connector)?;
    if let table::Taken::Ours(lease) = &taken {
        std::env::set_var("SERA_FENCING_TOKEN", lease.token.to_string());
    }
    Ok(taken)
}

/// `--wait-and-skip`, and the run we waited for is over: 0, or 205.
fn skipped(mut conn: Conn, args: &Args, reporter: &Reporter) -> i32 {
    conn.quit();
    reporter.event("skipped: another run held the lock and has finished");
    if args.detailed_exit_codes {
        exit::SKIPPED
    } else {
        0
    }
}

/// Step 5: start the command; only then give back the waiting-room seat,
/// so that the round trip does not delay the command's start.
fn spawn(
    conn: &mut Conn,
    program: &Path,
    args: &Args,
    seat: Option<&str>,
    reporter: &Reporter,
) -> Result<Child, Failure> {
    // SAFETY: sera never starts a thread.
    let child = unsafe { child::spawn(program, &args.command, conn.raw_fd()) }
        .map_err(|e| cannot_run(&args.command[0], e))?;
    if let Err(e) = room::leave(conn, seat) {
        reporter.warn(&format!(
            "could not give back the waiting-room seat {}: {e}",
            seat.unwrap_or_default()
        ));
    }
    Ok(child)
}

/// Step 7: end the session, which frees the lock, and say how the run ends.
fn release(mut conn: Conn, ending: Ending, reporter: &Reporter) -> i32 {
    conn.quit();
    match ending {
        Ending::LockLost => exit::LOCK_LOST,
        Ending::Exited { status } => {
            reporter.progress("released the lock");
            child::exit_code(status)
        }
    }
}

/// The command as one line, for logs; the lock name is the MD5 of this.
fn command_line(command: &[OsString]) -> String {
    let words: Vec<_> = command.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}
