//! The command sera runs in scripts/bench.sh's contention, scale and
//! footprint runs: it appends "<id> <start ns> <end ns>" (CLOCK_REALTIME) to
//! the file it is given, in one write, so hand-offs and overlaps can be read
//! back. STAMP_ID names the run (the environment is not part of the lock name,
//! so every run shares one lock); STAMP_SLEEP_MS holds the lock a while;
//! STAMP_WAIT_FILE holds it until that file exists.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn main() {
    let start = now();
    let path = std::env::args_os().nth(1).expect("usage: bench_stamp FILE");
    if let Some(ms) = std::env::var("STAMP_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(file) = std::env::var_os("STAMP_WAIT_FILE") {
        while std::fs::metadata(&file).is_err() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let id = std::env::var("STAMP_ID").unwrap_or_default();
    let line = format!("{id} {start} {}\n", now());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}
