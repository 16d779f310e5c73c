//! `sera <wait> <command> [args...]`: run a command only while holding a
//! MySQL/MariaDB lock named after it, so that it never runs twice at once
//! anywhere in the cluster. This file is the life of one run, top to bottom:
//! `run` is its seven steps, one call each, and each step's function follows
//! it in order.

use std::path::Path;
use std::time::Instant;

use sera::args::{self, Args, Look, Request};
use sera::child::{self, Child};
use sera::config::Config;
use sera::duration;
use sera::failure::{cannot_run, connect_failure};
use sera::keeper::{self, Role};
use sera::lock;
use sera::mysql::Conn;
use sera::plan::{self, Plan, Taking};
use sera::report::{exit, say, Failure, Reporter};
use sera::room::{self, Connector, Turn};
use sera::settings::Lease;
use sera::status;
use sera::watch::{self, Ending, Watching};
use sera::{sql::LockTable, table};

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
    let plan = plan::configure(&args, reporter)?;

    // `sera status` only looks: it connects, asks who holds the lock, and
    // says so.
    let deadline = Instant::now() + args.wait;
    if let Some(how) = status {
        return look(&plan, deadline, how, reporter);
    }

    // Before connecting: a command that cannot start is 203 now, not after
    // a wait for a lock it could not use.
    let program =
        child::check_program(&args.command[0]).map_err(|e| cannot_run(&args.command[0], e))?;

    // 3. Connect: one dedicated connection, for this run only.
    //    It tells the server who it is, for `sera status` to show others.
    //    A server that has reached max_connections is waited out, with the
    //    rest of the herd, as long as <wait> allows.
    let about = lock::introduction(
        &plan.lock_name,
        plan.settings.slots(),
        Some(&args.command[0]),
    );
    let connect = || Conn::connect_as(&plan.config.server, &about);
    let mut connector = Connector::new(&connect, deadline, plan.settings.waiting_room());
    let lease = match &plan.lock_table {
        // configure checked that the table's lease fits the settings.
        Some(_) => Lease::Bounded(plan.settings.table_lease()),
        None => plan::lease(&args, &plan, reporter)?,
    };
    let mut conn = connect_within(&mut connector, &plan.config, reporter)?;

    // 4. Lock, or wait for whoever holds it. The first try goes out now, in
    //    the same write as the SET that makes the session's idle timeout the
    //    lease. In table mode the lock is a lease row instead, and the
    //    command learns its fencing token.
    let taking = Taking {
        plan: &plan,
        args: &args,
        lease,
        deadline,
    };
    let asked = match &plan.lock_table {
        Some(table) => Asked::Table(table),
        None => Asked::Lock(room::ask(&mut conn, &taking, &mut connector)?),
    };
    //    While the server answers, sera forks its keeper, which reads the
    //    answer and does the rest of the run, the command as its child; this
    //    process, the front, holds on to the connection and waits for it
    //    (keeper.rs). The keeper waits for the lock with the signals at
    //    their defaults: interrupted, it dies, and so does the front.
    let signals = child::block_signals();
    let session = conn.connection_id();
    if let Some(code) = fork_keeper(&conn, &signals, &plan, &args, reporter)? {
        return Ok(code);
    }
    signals.unblock();
    let (held, seat, renewed_at, mut lease_row) = match asked {
        Asked::Table(table) => {
            match table::take_turn(&mut conn, table, &taking, &mut connector, &about, reporter)? {
                table::Taken::Ours(row) => {
                    (plan.lock_name.clone(), None, row.renewed_at, Some(row))
                }
                table::Taken::Skip => return Ok(skipped(conn, &args, reporter)),
            }
        }
        Asked::Lock(first_try) => {
            match room::take_turn(&mut conn, first_try, &taking, &mut connector, reporter)? {
                (Turn::Ours { held, seat }, renewed_at) => (held, seat, renewed_at, None),
                (Turn::Skip, _) => return Ok(skipped(conn, &args, reporter)),
            }
        }
    };
    let taken = Instant::now();

    // 5. Spawn, with every signal sera forwards blocked from here on. A
    //    keeper that reconnected while it waited holds a session the front
    //    has no copy of: it forks once more, and holds that one for the new
    //    keeper as the front holds the first.
    signals.block();
    if conn.connection_id() != session {
        if let Some(code) = fork_keeper(&conn, &signals, &plan, &args, reporter)? {
            return Ok(code);
        }
    }
    tell_the_command(&held, lease_row.as_ref().map(|row| row.token));
    let mut child = spawn(
        &mut conn,
        &program,
        &args,
        &signals,
        seat.as_deref(),
        reporter,
    )?;

    // 6. Watch: forward signals, reap, check now and then that the lock is
    //    still ours, and see out whatever the command leaves behind.
    let watching = Watching {
        lock_name: &held,
        settings: &plan.settings,
        reporter,
        started: Instant::now(),
        lease,
        renewed_at,
    };
    let ending = watch::watch(&mut conn, &mut child, &watching, lease_row.as_deref_mut());
    //    min_hold: a command done sooner keeps the lock that long anyway;
    //    a lease row keeps it by itself, so sera need not wait for that.
    let until = taken + plan.settings.min_hold();
    if let (None, Ending::Exited { .. }) = (&lease_row, &ending) {
        watch::min_hold(&mut conn, &mut child, &watching, until);
    }

    // 7. Release: ending the session frees the lock at once; a lease row is
    //    given back first.
    if let (Some(row), Ending::Exited { .. }) = (&mut lease_row, &ending) {
        row.release(&mut conn, duration::left(until), reporter);
    }
    Ok(keeper::done(release(conn, ending, reporter)))
}

/// Step 4 under way: what has been asked of the server so far.
enum Asked<'a> {
    /// In GET_LOCK mode, the first try, sent and not yet answered.
    Lock(room::FirstTry),
    /// In table mode nothing yet: the lease row is taken by `table::take_turn`.
    Table(&'a LockTable),
}

/// Step 1: what the user asked for. None once `--help` or `--version` has
/// been answered; the Some(Look) beside the arguments is `sera status`.
fn arguments() -> Result<Option<(Args, Option<Look>)>, Failure> {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Request::Run(args)) => Ok(Some((args, None))),
        Ok(Request::Status { args, look }) => Ok(Some((args, Some(look)))),
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

/// `sera status`: step 3, then who holds the lock, on stdout.
fn look(plan: &Plan, deadline: Instant, how: Look, reporter: &Reporter) -> Result<i32, Failure> {
    let about = lock::introduction(&plan.lock_name, plan.settings.slots(), None);
    let connect = || Conn::connect_as(&plan.config.server, &about);
    let mut connector = Connector::new(&connect, deadline, plan.settings.waiting_room());
    let conn = connect_within(&mut connector, &plan.config, reporter)?;
    match (&plan.lock_table, how.all) {
        (_, true) => status::show_all(conn, how.json),
        (Some(table), false) => table::show_status(conn, table, &plan.lock_name, how.json),
        (None, false) => {
            status::show_status(conn, &plan.lock_name, plan.settings.slots(), how.json)
        }
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

/// Step 4: fork the keeper (keeper.rs). In the front, Some(exit code) once
/// the keeper is done; in the keeper, None: it goes on with the run.
fn fork_keeper(
    conn: &Conn,
    signals: &child::Signals,
    plan: &Plan,
    args: &Args,
    reporter: &Reporter,
) -> Result<Option<i32>, Failure> {
    let kill_after = plan.settings.kill_after();
    match keeper::fork(signals).map_err(|e| cannot_run(&args.command[0], e))? {
        Role::Front(keeper) => Ok(Some(keeper::front(keeper, conn, kill_after, reporter))),
        Role::Keeper => Ok(None),
    }
}

/// Step 5, first: what the command may know of its lock, in its
/// environment: the name held on the server (SERA_LOCK_NAME), and in table
/// mode the fencing token of this grant (SERA_FENCING_TOKEN), for the job
/// to pass on to what it writes.
fn tell_the_command(held: &str, fencing_token: Option<u64>) {
    // Sound: sera never starts a thread, so no one reads the environment now.
    std::env::set_var("SERA_LOCK_NAME", held);
    if let Some(token) = fencing_token {
        std::env::set_var("SERA_FENCING_TOKEN", token.to_string());
    }
}

/// Step 5: start the command; only then give back the waiting-room seat, so
/// that the round trip does not delay the command's start.
fn spawn(
    conn: &mut Conn,
    program: &Path,
    args: &Args,
    signals: &child::Signals,
    seat: Option<&str>,
    reporter: &Reporter,
) -> Result<Child, Failure> {
    // SAFETY: sera never starts a thread.
    let child = unsafe { child::spawn(program, &args.command, signals) }
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
