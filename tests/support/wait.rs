//! Waiting for something a test cannot be told about, by polling.

use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for what should happen at once, before it fails:
/// long, because qemu-user takes a while to start a binary and CI's
/// machine is shared; a test that passes never waits it out.
#[allow(dead_code)]
pub const LONG: Duration = Duration::from_secs(30);

/// Poll `condition` every 20 ms until it is true or `deadline` passes; return whether
/// it became true.
#[allow(dead_code)]
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
