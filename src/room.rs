//! The waiting room: how a herd of seras waits for one lock without taking
//! the server down.
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

use crate::lock;
use crate::mysql::{Conn, Error};

/// The first retry comes after about this long (jittered by half either
/// way), each next one after twice as long, up to CEILING.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const CEILING: Duration = Duration::from_secs(4);

/// Take a seat in the room of `name`, if one is free: Some(seat), to be
/// left with `leave` once the wait is over. A room of 0 seats means no
/// room at all: everyone waits connected, and gets Some("").
pub fn take_seat(conn: &mut Conn, name: &str, seats: u32) -> Result<Option<String>, Error> {
    if seats == 0 {
        return Ok(Some(String::new()));
    }
    let seat_names = lock::numbered(name, "room", seats);
    match lock::try_each(conn, &seat_names, None) {
        Ok((free, _)) => Ok(free),
        // A proxy that lets only a bare GET_LOCK through (Vitess) refuses
        // the seat query: there is no room there, wait connected as before.
        Err(Error::Server { .. }) => Ok(Some(String::new())),
        Err(e) => Err(e),
    }
}

/// Give the seat back, so the next waiter outside can have it.
pub fn leave(conn: &mut Conn, seat: &str) -> Result<(), Error> {
    match seat.is_empty() {
        true => Ok(()),
        false => lock::release(conn, seat),
    }
}

/// Growing, jittered pauses between tries from outside the room.
pub struct Backoff {
    next: Duration,
    /// A small xorshift state: jitter needs no more than this.
    random: u64,
}

impl Default for Backoff {
    fn default() -> Backoff {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff {
            next: FIRST_RETRY,
            // Hosts started by the same cron tick differ at least in pid.
            random: now ^ (u64::from(std::process::id()) << 32) | 1,
        }
    }
}

impl Backoff {
    /// Sleep the next pause, cut short at `deadline`; false when the
    /// deadline has come.
    pub fn sleep(&mut self, deadline: Instant) -> bool {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        // Between half and one and a half times the pause.
        let pause = self.next / 2 + Duration::from_nanos(self.random % self.next.as_nanos() as u64);
        self.next = (self.next * 2).min(CEILING);
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(pause.min(left));
        Instant::now() < deadline
    }
}

/// Connect with `connect`, waiting out "Too many connections" with backoff
/// until `deadline`; any other failure, or 1040 at the deadline, is final.
pub fn connect(
    connect: &dyn Fn() -> Result<Conn, Error>,
    backoff: &mut Backoff,
    deadline: Instant,
) -> Result<Conn, Error> {
    loop {
        match connect() {
            // After the last pause, cut at the deadline, one last try.
            Err(Error::Server { code: 1040, .. }) if Instant::now() < deadline => {
                backoff.sleep(deadline);
            }
            result => return result,
        }
    }
}
