//! What the config and the flags make of one run: the lock's name, the
//! settings merged (a flag before its config key), the lock mode, and the
//! lease those settings can keep. Everything a run decides before it
//! connects, so that settings which cannot work together are refused at
//! once: 201 when a flag had a part in it, 200 when the config alone did.

use std::ffi::OsString;
use std::time::Instant;

use crate::args::{self, Args};
use crate::config::{self, Config};
use crate::lock;
use crate::report::{exit, Failure, Reporter};
use crate::settings::{self, Lease, Settings};
use crate::sql::LockTable;

/// What the config and the flags make of this run.
pub struct Plan {
    pub config: Config,
    pub lock_name: String,
    pub settings: Settings,
    /// Table mode: the lock is a lease row in this table.
    pub lock_table: Option<LockTable>,
}

/// Read the config, name the lock, set up the reporter, and refuse
/// flags that contradict each other.
pub fn configure(args: &Args, reporter: &mut Reporter) -> Result<Plan, Failure> {
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
    let lock_table = args.lock_table.clone().or(config.lock_table.clone());
    if let Some(why) = lock_table
        .as_ref()
        .and_then(|_| settings::refused_in_table_mode(&settings))
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

/// The lease of this run, or why the settings cannot fit one: a bad
/// argument (201) if a flag shaped it, else a bad config (200).
pub fn lease(args: &Args, plan: &Plan, reporter: &Reporter) -> Result<Lease, Failure> {
    let dsn_wait_timeout = plan
        .config
        .server
        .session_var("wait_timeout")
        .and_then(|v| v.parse().ok());
    for warning in plan.settings.warnings(dsn_wait_timeout) {
        reporter.warn(&warning);
    }
    let flag = |key: &str| match args.settings.given(key) {
        true => format!("--{}", key.replace('_', "-")),
        false => key.to_string(),
    };
    plan.settings.lease(dsn_wait_timeout, &flag).map_err(|why| {
        match args.settings.shapes_the_lease() {
            true => Failure::new(exit::ARGUMENTS, "bad arguments", why),
            false => Failure::new(
                exit::CONFIG,
                format!("config {}", plan.config.path.display()),
                why,
            ),
        }
    })
}

/// What taking the lock (step 4 of a run) needs to know of the plan.
pub struct Taking<'a> {
    pub plan: &'a Plan,
    pub args: &'a Args,
    pub lease: Lease,
    /// When `<wait>` is over.
    pub deadline: Instant,
}

/// The command as one line, for logs; the lock name is the MD5 of this.
pub fn command_line(command: &[OsString]) -> String {
    let words: Vec<_> = command.iter().map(|a| a.to_string_lossy()).collect();
    words.join(" ")
}
