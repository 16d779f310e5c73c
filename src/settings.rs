//! How sera takes the lock and watches it and the command's tree: `slots`,
//! `waiting_room`, `check_interval`, `lease`, `on_lost`, `kill_after`,
//! `orphans` and `min_hold`.
//!
//! Each may be set by a flag (`--check-interval 1s`) or by the config key of
//! the same name (`"check_interval": "1s"`), so they are declared and parsed
//! here once: `Args` and `Config` each fill a `Settings` of what was given,
//! and the run merges them with `or`, the flag first. What neither gives
//! takes its default.

use std::time::Duration;

use crate::duration;

/// The settings, by their config key names; the flags are the same with
/// `-` for `_`.
pub const KEYS: [&str; 8] = [
    "slots",
    "waiting_room",
    "check_interval",
    "lease",
    "on_lost",
    "kill_after",
    "orphans",
    "min_hold",
];

/// How many waiters per lock wait connected (see room.rs): enough that the
/// next in line is always connected when the lock frees, few enough that
/// a herd of hundreds costs the server a handful of connections.
const DEFAULT_WAITING_ROOM: u32 = 16;

/// More slots than this would make lock names too long, and no fleet needs
/// them.
const MAX_SLOTS: u32 = 1000;

/// The same for the waiting room's seats, whose names are made alike.
const MAX_SEATS: u32 = 1000;

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(10);
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A lease is the session's `wait_timeout`, whole seconds, from 2 s to the
/// longest idle time MySQL and MariaDB accept (365 days).
const MIN_LEASE: Duration = Duration::from_secs(2);
pub const LONGEST_LEASE: Duration = Duration::from_secs(31_536_000);

/// The tree must be dead this long before the server may free the lock.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// Checking the lock more often than this only loads the server: a check
/// may take up to its deadline, and a lost lock is noticed within
/// check_interval + 1 s anyway.
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The longest a liveness check waits for its answer before it counts as
/// unanswered (the question stays open for the next check).
pub const CHECK_DEADLINE: Duration = Duration::from_secs(1);

/// What to do when the lock is lost while the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLost {
    /// Stop the command's tree: SIGTERM, then SIGKILL after `kill_after`.
    Term,
    /// Say so and let the command finish.
    Ignore,
}

/// What to do with the processes the command leaves running when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// Keep the lock, and keep checking it, until the last of them exits.
    Wait,
    /// SIGTERM them, SIGKILL what is left after `kill_after`, then release.
    Term,
    /// Release at once and leave them running, unprotected.
    Ignore,
}

/// The settings given in one place (flags, or the config); None: not given.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How many may hold the lock at once: a mutex (1) or a semaphore.
    slots: Option<u32>,
    /// Seats in the waiting room; 0: no room, every waiter stays connected.
    waiting_room: Option<u32>,
    /// `Some(ZERO)`: never check.
    check_interval: Option<Duration>,
    /// How long the server keeps a silent session (and its lock).
    lease: Option<Duration>,
    on_lost: Option<OnLost>,
    kill_after: Option<Duration>,
    orphans: Option<Orphans>,
    /// How long the lock stays held at least, from when it was taken.
    min_hold: Option<Duration>,
}

impl Settings {
    /// Set the setting named `key` (one of KEYS) from its text. The error
    /// says what is wrong with the value; the caller names the flag or key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "slots" => match value.parse() {
                Ok(n) if (1..=MAX_SLOTS).contains(&n) && !value.starts_with('+') => {
                    self.slots = Some(n)
                }
                _ => {
                    return Err(format!(
                        "\"{value}\" is not a number of slots from 1 to {MAX_SLOTS}"
                    ))
                }
            },
            "waiting_room" => match value.parse() {
                Ok(n) if n <= MAX_SEATS && !value.starts_with('+') => self.waiting_room = Some(n),
                _ => {
                    return Err(format!(
                        "\"{value}\" is not a number of seats from 0 to {MAX_SEATS}"
                    ))
                }
            },
            "check_interval" => {
                let interval = duration::parse(value)?;
                if !interval.is_zero() && interval < MIN_CHECK_INTERVAL {
                    return Err(format!(
                        "{} is too short: the least is 100ms (or 0 to never check)",
                        duration::format(interval)
                    ));
                }
                self.check_interval = Some(interval);
            }
            "lease" => {
                let lease = duration::parse(value)?;
                if lease.subsec_nanos() != 0 {
                    return Err(format!(
                        "{} is not whole seconds (the server counts a lease in seconds)",
                        duration::format(lease)
                    ));
                }
                if !(MIN_LEASE..=LONGEST_LEASE).contains(&lease) {
                    return Err(format!(
                        "{} is out of range: a lease is 2s to 8760h (365 days)",
                        duration::format(lease)
                    ));
                }
                self.lease = Some(lease);
            }
            "kill_after" => self.kill_after = Some(duration::parse(value)?),
            "min_hold" => self.min_hold = Some(duration::parse(value)?),
            "on_lost" => {
                self.on_lost = Some(match value {
                    "term" => OnLost::Term,
                    "ignore" => OnLost::Ignore,
                    _ => return Err(format!("\"{value}\" is not one of term, ignore")),
                })
            }
            "orphans" => {
                self.orphans = Some(match value {
                    "wait" => Orphans::Wait,
                    "term" => Orphans::Term,
                    "ignore" => Orphans::Ignore,
                    _ => return Err(format!("\"{value}\" is not one of wait, term, ignore")),
                })
            }
            _ => return Err(format!("no setting is called {key}")),
        }
        Ok(())
    }

    /// Each setting from `self` where given, else from `other`.
    pub fn or(self, other: Settings) -> Settings {
        Settings {
            slots: self.slots.or(other.slots),
            waiting_room: self.waiting_room.or(other.waiting_room),
            check_interval: self.check_interval.or(other.check_interval),
            lease: self.lease.or(other.lease),
            on_lost: self.on_lost.or(other.on_lost),
            kill_after: self.kill_after.or(other.kill_after),
            orphans: self.orphans.or(other.orphans),
            min_hold: self.min_hold.or(other.min_hold),
        }
    }

    pub fn slots(&self) -> u32 {
        self.slots.unwrap_or(1)
    }

    pub fn waiting_room(&self) -> u32 {
        self.waiting_room.unwrap_or(DEFAULT_WAITING_ROOM)
    }

    /// How often to check the lock is still ours; None: never.
    pub fn check_every(&self) -> Option<Duration> {
        let interval = self.check_interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
        (!interval.is_zero()).then_some(interval)
    }

    /// Table mode's lease: how long the lock outlives the last renewal the
    /// server received, 30 s unless given. (The DSN's wait_timeout has no
    /// part in it: the session is not the lock there.)
    pub fn table_lease(&self) -> Duration {
        self.lease.unwrap_or(DEFAULT_LEASE)
    }

    pub fn on_lost(&self) -> OnLost {
        self.on_lost.unwrap_or(OnLost::Term)
    }

    /// After SIGTERM, how long the tree has before SIGKILL.
    pub fn kill_after(&self) -> Duration {
        self.kill_after.unwrap_or(DEFAULT_KILL_AFTER)
    }

    pub fn orphans(&self) -> Orphans {
        self.orphans.unwrap_or(Orphans::Wait)
    }

    /// How long the lock stays held at least, even when the command is done
    /// sooner: longer than the clock skew between the hosts that start the
    /// same job, so that a late host finds it still held.
    pub fn min_hold(&self) -> Duration {
        self.min_hold.unwrap_or(Duration::ZERO)
    }

    /// Whether the setting `key` (one of KEYS) is given here.
    pub fn given(&self, key: &str) -> bool {
        match key {
            "slots" => self.slots.is_some(),
            "waiting_room" => self.waiting_room.is_some(),
            "check_interval" => self.check_interval.is_some(),
            "lease" => self.lease.is_some(),
            "on_lost" => self.on_lost.is_some(),
            "kill_after" => self.kill_after.is_some(),
            "orphans" => self.orphans.is_some(),
            "min_hold" => self.min_hold.is_some(),
            _ => false,
        }
    }

    /// Whether lease, check_interval or kill_after is given here: the three
    /// a lease must fit.
    pub fn shapes_the_lease(&self) -> bool {
        self.lease.is_some() || self.check_interval.is_some() || self.kill_after.is_some()
    }

    /// The lease this run keeps, from these settings and the `wait_timeout`
    /// the DSN sets (in seconds), which is what the server uses and so is
    /// the lease. Err: settings that cannot fit, in words that name the
    /// lease and its bound; `flag` names a setting as the user gave it.
    pub fn lease(
        &self,
        dsn_wait_timeout: Option<u64>,
        flag: &dyn Fn(&str) -> String,
    ) -> Result<Lease, String> {
        let kill_after = self.kill_after();
        let Some(every) = self.check_every() else {
            if self.lease.is_some() {
                return Err(format!(
                    "{} needs renewals, and {} 0 never renews it: give one or the other",
                    flag("lease"),
                    flag("check_interval")
                ));
            }
            return Ok(Lease::Unbounded);
        };
        let (lease, named) = match dsn_wait_timeout {
            Some(idle) => (
                Duration::from_secs(idle),
                format!("the DSN's wait_timeout={idle} (the lease the server keeps)"),
            ),
            None => {
                let lease = self.lease.unwrap_or(DEFAULT_LEASE);
                let named = match self.lease {
                    Some(_) => format!("{} {}", flag("lease"), duration::format(lease)),
                    None => format!("the default lease of {}", duration::format(lease)),
                };
                (lease, named)
            }
        };
        let needed = every + CHECK_DEADLINE + kill_after + LEASE_MARGIN;
        if lease < needed {
            return Err(format!(
                "{named} is too short for {} {} and {} {}: a lease must cover \
                 check_interval + 1 s + kill_after + 1 s ({} s)",
                flag("check_interval"),
                duration::format(every),
                flag("kill_after"),
                duration::format(kill_after),
                duration::seconds(needed)
            ));
        }
        Ok(Lease::Bounded(lease))
    }

    /// What the user should know about these settings before the run.
    /// `dsn_wait_timeout` is the session's idle timeout in seconds when the
    /// DSN sets one.
    pub fn warnings(&self, dsn_wait_timeout: Option<u64>) -> Vec<String> {
        if self.check_every().is_none() {
            return vec![
                "check_interval is 0: sera never checks the lock, so a lost lock \
                 (a server restart, a killed connection) goes unnoticed and the \
                 command runs on unprotected; and nothing renews a lease, so the \
                 session is kept for up to 365 days: if this host vanishes, the \
                 server keeps the lock until TCP keepalive gives up (about 2 h 11 min \
                 with Linux defaults)"
                    .to_string(),
            ];
        }
        match (dsn_wait_timeout, self.lease) {
            (Some(idle), Some(lease)) if Duration::from_secs(idle) != lease => vec![format!(
                "the DSN sets wait_timeout={idle}, which is the lease the server keeps: \
                 the lease of {} is not used",
                duration::format(lease)
            )],
            _ => Vec::new(),
        }
    }
}

/// How long the server keeps the lock of a session that went silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// check_interval 0: nothing renews it, so the session is kept as long
    /// as the server allows.
    Unbounded,
    /// The session's wait_timeout: renewed by every lock check.
    Bounded(Duration),
}

impl Lease {
    /// The session's `wait_timeout`, in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Lease::Unbounded => LONGEST_LEASE.as_secs(),
            Lease::Bounded(d) => d.as_secs(),
        }
    }
}

/// Settings that table mode cannot keep its promise with, or None. The
/// renewals are the lock checks, so they must happen, and often enough that
/// a sera that cannot renew has stopped the command before the lease ends.
pub fn refused_in_table_mode(settings: &Settings) -> Option<String> {
    if settings.slots() > 1 {
        return Some(
            "--slots does not work with --lock-table: table mode is a plain lock \
             (one holder at a time)"
                .into(),
        );
    }
    let Some(every) = settings.check_every() else {
        return Some(
            "--lock-table renews its lease with the lock checks, and check_interval 0 \
             never renews it: give a check interval"
                .into(),
        );
    };
    let lease = settings.table_lease();
    let needed = every + CHECK_DEADLINE + settings.kill_after() + LEASE_MARGIN;
    (lease < needed).then(|| {
        format!(
            "a lease of {} is too short for check_interval {} and kill_after {}: \
             a lease must cover check_interval + 1 s + kill_after + 1 s ({} s)",
            duration::format(lease),
            duration::format(every),
            duration::format(settings.kill_after()),
            duration::seconds(needed)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_given_wins_then_the_default() {
        let mut flags = Settings::default();
        flags.set("kill_after", "1s").unwrap();
        let mut config = Settings::default();
        config.set("kill_after", "1m").unwrap();
        config.set("orphans", "term").unwrap();
        let merged = flags.or(config);
        assert_eq!(merged.kill_after(), Duration::from_secs(1));
        assert_eq!(merged.orphans(), Orphans::Term);
        assert_eq!(merged.on_lost(), OnLost::Term);
        assert_eq!(merged.check_every(), Some(DEFAULT_CHECK_INTERVAL));
    }

    #[test]
    fn zero_means_never_and_below_100ms_is_refused() {
        let mut s = Settings::default();
        s.set("check_interval", "0").unwrap();
        assert_eq!(s.check_every(), None);
        let e = s.set("check_interval", "1ns").unwrap_err();
        assert!(e.contains("the least is 100ms"), "{e}");
        assert!(s.set("on_lost", "explode").is_err());
        assert!(s
            .set("orphans", "keep")
            .unwrap_err()
            .contains("wait, term, ignore"));
    }

    #[test]
    fn warnings_for_what_goes_unnoticed() {
        let mut s = Settings::default();
        assert!(s.warnings(Some(28800)).is_empty());
        s.set("lease", "20s").unwrap();
        assert!(s.warnings(Some(28800))[0].contains("lease of 20s is not used"));
        s.set("check_interval", "0").unwrap();
        assert!(s.warnings(None)[0].contains("never checks"));
    }

    fn key(name: &str) -> String {
        name.to_string()
    }

    #[test]
    fn a_lease_must_cover_a_check_the_kill_and_a_margin() {
        let mut s = Settings::default();
        assert_eq!(s.lease(None, &key), Ok(Lease::Bounded(DEFAULT_LEASE)));
        s.set("lease", "10s").unwrap();
        let e = s.lease(None, &key).unwrap_err();
        assert_eq!(
            e,
            "lease 10s is too short for check_interval 5s and kill_after 10s: \
             a lease must cover check_interval + 1 s + kill_after + 1 s (17 s)"
        );
        s.set("kill_after", "3s").unwrap();
        assert_eq!(
            s.lease(None, &key),
            Ok(Lease::Bounded(Duration::from_secs(10)))
        );
        // The DSN's wait_timeout is the lease the server keeps.
        let e = s.lease(Some(5), &key).unwrap_err();
        assert!(e.starts_with("the DSN's wait_timeout=5"), "{e}");
        assert!(s.set("lease", "1s").unwrap_err().contains("2s to 8760h"));
        assert!(s
            .set("lease", "2.5s")
            .unwrap_err()
            .contains("whole seconds"));
        s.set("check_interval", "0").unwrap();
        assert!(s.lease(None, &key).unwrap_err().contains("never renews"));
        let mut never = Settings::default();
        never.set("check_interval", "0").unwrap();
        assert_eq!(never.lease(None, &key), Ok(Lease::Unbounded));
    }

    #[test]
    fn settings_that_cannot_keep_the_lease_are_refused() {
        let mut s = Settings::default();
        assert_eq!(refused_in_table_mode(&s), None);
        s.set("lease", "10s").unwrap();
        s.set("check_interval", "5s").unwrap();
        s.set("kill_after", "5s").unwrap();
        assert!(refused_in_table_mode(&s).unwrap().contains("(12 s)"));
        s.set("check_interval", "0").unwrap();
        assert!(refused_in_table_mode(&s).unwrap().contains("never renews"));
        let mut slots = Settings::default();
        slots.set("slots", "2").unwrap();
        assert!(refused_in_table_mode(&slots).unwrap().contains("--slots"));
    }
}
