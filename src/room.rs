//! Waiting for the lock: the whole protocol of a waiter (`take_lock`), and
//! the waiting room that keeps a herd of seras from taking the server down.
//!
//! A sera waiting in GET_LOCK holds a connection for its whole wait. A fleet
//! whose cron fires at :00 on every host would hold one per host, and past
//! `max_connections` the server refuses everyone, the application included.
//! So only a few waiters per lock wait connected: each holds one of the
//! room's seats, the locks `NAME#room1` to `NAME#roomN`, and gets the lock
//! within a millisecond of its release, as any waiter would. The others hang
//! up and try again later, with jittered, growing backoff, and take a seat
//! when one is free. "Too many connections" (1040) is waited out the same
//! way, until the wait ends.

use std::time::{Duration, Instant};

use crate::duration::{left, seconds};
use crate::failure::{no_turn, NoTurn};
use crate::lock::{self, Probe, Refused};
use crate::mysql::{self, Conn, Error};
use crate::plan::Taking;
use crate::report::Failure;
use crate::report::Reporter;
use crate::status;

/// The first retry comes after about this long (jittered by half either
/// way), each next one after twice as long, up to CEILING.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const CEILING: Duration = Duration::from_secs(4);

/// A waiter outside for long comes back less often: the ceiling grows with
/// the time it has waited, by 1/128 of it per seat of the room (an eighth
/// with the default 16), up to LONGEST. Each try is a login, and one waiting
/// behind long jobs would otherwise log in every few seconds for as long as
/// it waits. The seated waiters, who run first, cover the pause: the fewer
/// the seats, the slower the growth (scripts/herd-sim.py, 16 seats: no wait
/// grows for jobs up to 20 ms; 300 seras on 1 s jobs log in 20 times a run
/// instead of 37, on 10 s jobs 64 instead of 338).
const LONGEST: Duration = Duration::from_secs(30);
const GROWTH_PER_SEAT: u32 = 128;

/// Where a waiter may wait.
enum Entry {
    /// Connected, blocked in the server: with a seat of the room, to give
    /// back with `leave` once the wait is over; or with none, where there
    /// is no room.
    In { seat: Option<String> },
    /// Every seat is taken: outside, hung up.
    Full,
}

/// Take a seat in the room of `name`, if one is free. A room of 0 seats
/// means no room at all: everyone waits connected.
fn take_seat(conn: &mut Conn, name: &str, seats: u32) -> Result<Entry, Error> {
    if seats == 0 {
        return Ok(Entry::In { seat: None });
    }
    let seat_names = lock::numbered(name, "room", seats);
    match lock::try_each(conn, &seat_names, None) {
        Ok(tried) if tried.held.is_some() => Ok(Entry::In { seat: tried.held }),
        Ok(_) => Ok(Entry::Full),
        // A proxy that lets only a bare GET_LOCK through (Vitess) refuses
        // the seat query: there is no room there, wait connected as before.
        Err(Error::Server { .. }) => Ok(Entry::In { seat: None }),
        Err(e) => Err(e),
    }
}

/// How many of the room's seats go with the first try of each session
/// (`lock::Try`), picked at random: with a few waiters in the room,
/// two random seats are both taken rarely (5 waiters of 16 seats: 1 in 12),
/// and only then does a waiter ask for a seat with a round trip of its own.
const SEATS_IN_FIRST_TRY: u32 = 2;

/// The seats to offer with a first try: none for a run that cannot wait.
fn first_try_seats(name: &str, seats: u32, may_wait: bool, random: u64) -> Vec<String> {
    if !may_wait || seats == 0 {
        return Vec::new();
    }
    // Consecutive seats from a random one on: as good as any pick here.
    let from = (random % u64::from(seats)) as u32;
    let offered = (0..SEATS_IN_FIRST_TRY.min(seats)).map(|k| (from + k) % seats + 1);
    lock::numbered_from(name, "room", offered)
}

/// Give the seat back, so the next waiter outside can have it.
pub fn leave(conn: &mut Conn, seat: Option<&str>) -> Result<(), Error> {
    match seat {
        None => Ok(()),
        Some(seat) => lock::release(conn, seat),
    }
}

/// Growing, jittered pauses between tries from outside the room (and
/// between the polls of a waiter in table mode).
pub(crate) struct Backoff {
    next: Duration,
    ceiling: Duration,
    /// The seats that cover a waiter outside while it pauses: the ceiling
    /// grows with them (0: it does not grow).
    seats: u32,
    since: Instant,
    /// A small xorshift state: jitter needs no more than this.
    random: u64,
}

impl Backoff {
    /// The room's, for a waiter outside a room of `seats`: growing with the
    /// time waited.
    fn outside(seats: u32) -> Backoff {
        Backoff {
            seats,
            ..Backoff::new(FIRST_RETRY, CEILING)
        }
    }

    /// Pauses of about `first` (half of it either way), doubling up to
    /// about `ceiling`: never more than one and a half times `ceiling`.
    pub(crate) fn new(first: Duration, ceiling: Duration) -> Backoff {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff {
            next: first,
            ceiling,
            seats: 0,
            since: Instant::now(),
            // Hosts started by the same cron tick differ at least in pid.
            random: now ^ (u64::from(std::process::id()) << 32) | 1,
        }
    }

    fn random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    /// Sleep the next pause, cut short at `deadline`.
    pub(crate) fn sleep(&mut self, deadline: Instant) {
        let pause = self.pause(self.since.elapsed());
        std::thread::sleep(pause.min(left(deadline)));
    }

    /// The next pause, `waited` into the wait: between half and one and a
    /// half times the step.
    fn pause(&mut self, waited: Duration) -> Duration {
        let pause =
            self.next / 2 + Duration::from_nanos(self.random() % self.next.as_nanos() as u64);
        let grown = waited.saturating_mul(self.seats) / GROWTH_PER_SEAT;
        let ceiling = grown.clamp(self.ceiling, LONGEST.max(self.ceiling));
        self.next = (self.next * 2).min(ceiling);
        pause
    }
}

/// How a run connects, at its start and again from outside a full room:
/// "Too many connections" is waited out until the run's deadline, and each
/// pause, for either reason, is the next of the run's one backoff.
pub struct Connector<'a> {
    connect: &'a dyn Fn() -> Result<Conn, Error>,
    deadline: Instant,
    backoff: Backoff,
}

impl Connector<'_> {
    /// `seats`: the lock's waiting room, whose seated waiters cover one
    /// outside while it pauses.
    pub fn new(
        connect: &dyn Fn() -> Result<Conn, Error>,
        deadline: Instant,
        seats: u32,
    ) -> Connector<'_> {
        Connector {
            connect,
            deadline,
            backoff: Backoff::outside(seats),
        }
    }

    /// Connect now. Any failure but 1040, or 1040 at the deadline, is final.
    pub fn connect(&mut self) -> Result<Conn, Error> {
        self.connect_after(false)
    }

    /// Connect after the next pause, as `connect` otherwise.
    fn connect_later(&mut self) -> Result<Conn, Error> {
        self.connect_after(true)
    }

    fn connect_after(&mut self, mut pause: bool) -> Result<Conn, Error> {
        loop {
            if pause {
                self.backoff.sleep(self.deadline);
            }
            match (self.connect)() {
                // After the last pause, cut at the deadline, one last try.
                Err(Error::Server {
                    code: mysql::TOO_MANY_CONNECTIONS,
                    ..
                }) if Instant::now() < self.deadline => pause = true,
                result => return result,
            }
        }
    }
}

/// Whose turn it is once the lock step is over.
pub enum Turn {
    /// The lock is ours (`held`: a semaphore's slot has a name of its own):
    /// run the command, then give back the waiting-room seat, if one was
    /// taken.
    Ours { held: String, seat: Option<String> },
    /// `--wait-and-skip`: someone else ran it and has finished.
    Skip,
}

/// The first try of step 4, sent and not yet answered: what `take_turn`
/// needs to read its answer.
pub struct FirstTry {
    /// The waiting-room seats the try offered.
    seats: Vec<String>,
    keep_session: Option<String>,
    asked: Instant,
    /// When it went, on the lease's clock (`lock::clock`).
    sent: Duration,
}

/// Step 4 of a run in GET_LOCK mode, first half: send the first try, with
/// the SET that makes the session's idle timeout the lease, and read
/// nothing yet: sera forks its keeper while the server answers.
pub fn ask(
    conn: &mut Conn,
    taking: &Taking,
    connector: &mut Connector,
) -> Result<FirstTry, Failure> {
    let Taking {
        plan,
        args,
        lease,
        deadline,
    } = *taking;
    let first = FirstTry {
        seats: first_try_seats(
            &plan.lock_name,
            plan.settings.waiting_room(),
            !left(deadline).is_zero(),
            connector.backoff.random(),
        ),
        keep_session: lock::keep_session_sql(&plan.config.server, lease),
        asked: Instant::now(),
        sent: lock::clock(),
    };
    let slots = plan.settings.slots();
    let first_try = lock::Try {
        name: &plan.lock_name,
        slots,
        seats: &first.seats,
        keep_session: first.keep_session.as_deref(),
    };
    first_try
        .send(conn, Probe::Full)
        .map_err(|e| no_turn(NoTurn::LockFailed(e), &plan.config, args.wait, slots))?;
    Ok(first)
}

/// Step 4, second half: the answer to the first try (`ask`), and what
/// follows: the lock, or a slot of it, or the news that the run we waited
/// for is over; and when the grant restarted the server's idle clock, from
/// which the lease runs (`lock::clock`).
pub fn take_turn(
    conn: &mut Conn,
    first: FirstTry,
    taking: &Taking,
    connector: &mut Connector,
    reporter: &Reporter,
) -> Result<(Turn, Duration), Failure> {
    let Taking { plan, args, .. } = *taking;
    let (asked, sent) = (first.asked, first.sent);
    let turn = take_lock(conn, first, taking, connector, reporter)
        .map_err(|why| no_turn(why, &plan.config, args.wait, plan.settings.slots()))?;
    // The server's idle clock restarted when it granted the lock, which was
    // no later than the answer came; a second less allows for the way
    // back. Never before the GET_LOCK was first sent.
    let renewed_at = sent.max(lock::clock().saturating_sub(Duration::from_secs(1)));
    if let Turn::Ours { held, .. } = &turn {
        reporter.event(&format!(
            "acquired the lock {held} after {} ms",
            asked.elapsed().as_millis() as u64
        ));
    }
    Ok((turn, renewed_at))
}

/// Take the lock, or one of its slots, waiting for it until the deadline:
/// first without waiting (the try `ask` sent); then, with a seat in the
/// waiting room, connected and blocked in the server; and while the room is
/// full, from outside, hung up, trying again now and then on a new
/// connection (`connector`). With `--wait-and-skip` only the first to ask
/// runs; the others wait for it to finish and skip.
fn take_lock(
    conn: &mut Conn,
    first_try: FirstTry,
    taking: &Taking,
    connector: &mut Connector,
    reporter: &Reporter,
) -> Result<Turn, NoTurn> {
    let Taking {
        plan,
        args,
        deadline,
        ..
    } = *taking;
    let (lock_name, settings) = (plan.lock_name.as_str(), &plan.settings);
    let allow_read_only = plan.config.allow_read_only;
    let FirstTry {
        seats,
        keep_session,
        ..
    } = first_try;
    let keep_session = keep_session.as_deref();
    let mut sent_seats = Some(seats);
    let slots = settings.slots();
    let mut first = true;
    let mut was_outside = false;
    // Which server variables this server lets the first try ask for.
    let mut probe = Probe::Full;
    loop {
        // Every try is on a new session, which needs keep_session too. The
        // first went with `ask`.
        let (seats, sent) = match sent_seats.take() {
            Some(seats) => (seats, true),
            None => {
                let seats = first_try_seats(
                    lock_name,
                    settings.waiting_room(),
                    !left(deadline).is_zero(),
                    connector.backoff.random(),
                );
                (seats, false)
            }
        };
        let this_try = lock::Try {
            name: lock_name,
            slots,
            seats: &seats,
            keep_session,
        };
        if !sent {
            this_try.send(conn, probe).map_err(NoTurn::LockFailed)?;
        }
        let tried = this_try
            .answer(conn, &mut probe)
            .map_err(NoTurn::LockFailed)?;
        // Whether or not the lock was free: a busy lock on a replica is on
        // the wrong server all the same.
        let server = tried.server;
        if server.galera || (server.read_only.is_some() && !allow_read_only) {
            conn.quit();
            return Err(NoTurn::WrongServer(server));
        }
        if let (Some(e), true) = (tried.keep_session_refused, first) {
            reporter.warn(&format!(
                "could not set the lock session's wait_timeout to the lease: {e}; \
                 if this host vanishes, the server keeps the lock for its own wait_timeout"
            ));
        }
        match tried.held {
            // With --wait-and-skip, a lock free on a later try means the
            // run we waited for is over.
            Some(_) if args.wait_and_skip && !first => return Ok(Turn::Skip),
            Some(held) => return Ok(Turn::Ours { held, seat: None }),
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
            return Err(timed_out(conn, lock_name, slots));
        }
        let entry = match tried.seat {
            Some(seat) => Entry::In { seat: Some(seat) },
            None => {
                take_seat(conn, lock_name, settings.waiting_room()).map_err(NoTurn::LockFailed)?
            }
        };
        if let Entry::In { seat } = entry {
            // On every way out but Ours the session ends, and the seat with it.
            return match lock::wait_take(conn, lock_name, slots, deadline, seat) {
                Ok(_) if args.wait_and_skip => Ok(Turn::Skip),
                Ok((held, seat)) => Ok(Turn::Ours { held, seat }),
                Err(Refused::TimedOut) => Err(timed_out(conn, lock_name, slots)),
                Err(Refused::Failed(e)) => Err(NoTurn::LockFailed(e)),
            };
        }
        // The room is full: hang up, and try again later from outside.
        if !was_outside {
            reporter.progress("the waiting room is full: waiting outside, without a connection");
        }
        was_outside = true;
        conn.quit();
        *conn = connector.connect_later().map_err(NoTurn::ConnectFailed)?;
    }
}

/// The wait is over: who held the lock, for the message. Only the plain
/// lock has one holder to name.
fn timed_out(conn: &mut Conn, lock_name: &str, slots: u32) -> NoTurn {
    let holder = match lock::slot_names(lock_name, slots).as_slice() {
        [only] => status::holder(conn, only).ok().flatten().map(Box::new),
        _ => None,
    };
    NoTurn::TimedOut { holder }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pauses outside a room of `seats`, `waited` into the wait, once
    /// the steps have reached their ceiling.
    fn pauses_after(seats: u32, waited: Duration) -> Vec<Duration> {
        let mut backoff = Backoff::outside(seats);
        (0..40).map(|_| backoff.pause(waited)).skip(20).collect()
    }

    /// Every pause within half of `about`, either way.
    fn about(pauses: &[Duration], about: Duration) -> bool {
        pauses
            .iter()
            .all(|p| *p >= about / 2 && *p <= about * 3 / 2)
    }

    #[test]
    fn a_waiter_outside_for_long_comes_back_less_often_but_within_45_s() {
        // Fresh: about 4 s.
        let fresh = pauses_after(16, Duration::ZERO);
        assert!(about(&fresh, CEILING), "{fresh:?}");
        // Two minutes in, 16 seats: an eighth of that, 15 s.
        let long = pauses_after(16, Duration::from_secs(120));
        assert!(about(&long, Duration::from_secs(15)), "{long:?}");
        // An hour in: the longest, 30 s.
        let longer = pauses_after(16, Duration::from_secs(3600));
        assert!(about(&longer, LONGEST), "{longer:?}");
        // A room of one seat covers less: two minutes in, still 4 s.
        let small_room = pauses_after(1, Duration::from_secs(120));
        assert!(about(&small_room, CEILING), "{small_room:?}");
        // The table mode's polls do not grow.
        let mut polls = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let hour = Duration::from_secs(3600);
        assert!((0..40).all(|_| polls.pause(hour) <= Duration::from_millis(1500)));
    }

    #[test]
    fn the_first_try_offers_two_seats_of_the_room_and_none_without_a_wait() {
        for random in [0, 7, 15, 16, u64::MAX] {
            let seats = first_try_seats("job", 16, true, random);
            assert_eq!(seats.len(), 2, "{seats:?}");
            assert_ne!(seats[0], seats[1]);
            let room = lock::numbered("job", "room", 16);
            assert!(seats.iter().all(|s| room.contains(s)), "{seats:?}");
        }
        assert_eq!(first_try_seats("job", 1, true, 5), ["job#room1"]);
        assert!(first_try_seats("job", 16, false, 5).is_empty());
        assert!(first_try_seats("job", 0, true, 5).is_empty());
    }
}
