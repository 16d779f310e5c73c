//! The client's packet reader: everything sera reads from a server — the
//! greeting, the auth exchange (switch requests, caching_sha2 rounds, the
//! server's RSA key), OK and ERR packets and the text result set.
//!
//! Input: one byte of flags that shape the DSN, then the server's replies,
//! separated by `|next|`. A peer thread plays the server: it sends the first
//! reply at once, and each next one when the client has written a request or
//! is waiting for more (its thread sleeps with nothing left to read). Replies
//! go out one exchange at a time because the client drops whatever it holds
//! when it sends a command (stale by its rules), so a transcript written all
//! at once would never get past the first command. After the last reply the
//! peer shuts its writing side: the client meets the end of the stream, and
//! no iteration ever waits for a timeout.
//!
//! Over a unix socket pair by default (`Conn::connect_over`); with the `TCP`
//! flag over a loopback connection (`Conn::connect`), the only way to reach
//! caching_sha2_password full auth with the server's RSA key, and TLS (sera's
//! default features include TLS and ed25519, and so does this build).
//!
//! Beyond "never panics": no input may make the client spend 3 s of CPU (the
//! contract is an answer within the configured timeout; the largest RSA key
//! sera accepts costs about 1 s in this instrumented build, 50 ms in release).
#![no_main]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sera::dsn::Dsn;
use sera::mysql::Conn;

const SESSION_VAR: u8 = 1 << 0;
const NO_NATIVE: u8 = 1 << 1;
const CLEARTEXT: u8 = 1 << 2;
const NO_PASSWORD: u8 = 1 << 3;
const TCP: u8 = 1 << 4;
const DATABASE: u8 = 1 << 5;
/// TLS without certificate checks: over TCP, to a greeting that offers SSL,
/// the client starts a TLS handshake on the fuzzer's bytes. (`tls=true`
/// would load the system's CA bundle each run, which is local config, not
/// server input, and slow.)
const TLS: u8 = 1 << 6;
const TLS_PREFERRED: u8 = 1 << 7;

const SEPARATOR: &[u8] = b"|next|";

/// Each reply must fit in the socket buffers, so that writing it never waits
/// for the client to read. Real replies are a few hundred bytes.
const MAX_INPUT: usize = 32 * 1024;

const TIMEOUT: Duration = Duration::from_millis(100);
const CPU_LIMIT: Duration = Duration::from_secs(3);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, server)) = data.split_first() else {
        return;
    };
    if server.len() > MAX_INPUT {
        return;
    }
    let replies = split(server);
    let started = thread_cpu_time();
    run(flags, &replies);
    let spent = thread_cpu_time().saturating_sub(started);
    assert!(spent < CPU_LIMIT, "the client spent {spent:?} of CPU");
});

/// The replies, without empty ones: writing nothing would not wake a client
/// waiting for its reply, and the peer would wait for it to block again.
fn split(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut replies = Vec::new();
    while let Some(at) = bytes.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        replies.push(&bytes[..at]);
        bytes = &bytes[at + SEPARATOR.len()..];
    }
    replies.push(bytes);
    replies.retain(|reply| !reply.is_empty());
    replies
}

/// The DSN for `flags` (its address: the listener, or a unix socket that is
/// never dialled), made once per process: the same in every run.
fn dsn(flags: u8) -> &'static Dsn {
    static DSNS: [OnceLock<Dsn>; 256] = [const { OnceLock::new() }; 256];
    DSNS[usize::from(flags)].get_or_init(|| {
        let address = if flags & TCP != 0 {
            let port = listener().local_addr().expect("local address").port();
            format!("tcp(127.0.0.1:{port})")
        } else {
            "unix(/nonexistent)".to_string()
        };
        parse_dsn(flags, &address)
    })
}

fn parse_dsn(flags: u8, address: &str) -> Dsn {
    let password = if flags & NO_PASSWORD != 0 {
        ""
    } else {
        ":Zq9#pw"
    };
    let database = if flags & DATABASE != 0 { "locks" } else { "" };
    let mut text = format!("sera{password}@{address}/{database}?timeout=100ms");
    let params = [
        (SESSION_VAR, "&wait_timeout=60&sql_mode='x'"),
        (NO_NATIVE, "&allowNativePasswords=false"),
        (CLEARTEXT, "&allowCleartextPasswords=true"),
        (TLS, "&tls=skip-verify"),
        (TLS_PREFERRED, "&tls=preferred"),
    ];
    for (flag, param) in params {
        if flags & flag != 0 {
            text.push_str(param);
        }
    }
    Dsn::parse(&text).expect("the fuzz target's DSN parses")
}

/// The peer thread, started once: a thread per run costs more than the run.
struct Peer {
    jobs: Mutex<Sender<Job>>,
    served: Mutex<Receiver<Socket>>,
    /// A byte here wakes the peer thread when the client is done, so that it
    /// stops at once instead of at its next look.
    wake: UnixStream,
}

struct Job {
    /// The peer's end of a unix socket pair; None: accept a TCP client.
    unix: Option<UnixStream>,
    replies: Vec<Vec<u8>>,
    client_tid: libc::pid_t,
    done: Arc<AtomicBool>,
}

/// The peer's socket, handed back so the client side decides when it closes.
enum Socket {
    Unix(#[allow(dead_code)] UnixStream),
    Tcp(TcpStream),
    None,
}

fn peer() -> &'static Peer {
    static PEER: OnceLock<Peer> = OnceLock::new();
    PEER.get_or_init(|| {
        let (jobs, job) = channel::<Job>();
        let (done, served) = channel();
        let (wake, wakeup) = UnixStream::pair().expect("socketpair");
        wakeup.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            // Wake from the short waits on time, not 50 µs late.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
            // The client is the fuzzing thread, the same in every run.
            let mut client: Option<(libc::pid_t, Sleeps)> = None;
            // Room for any request at once, so that one read takes it all.
            let mut sink = vec![0u8; 2 * MAX_INPUT];
            for job in job {
                // A byte from a run that ended while its job was finishing.
                while (&wakeup).read(&mut sink).is_ok() {}
                let wakeup = wakeup.as_raw_fd();
                if client.as_ref().map(|(tid, _)| *tid) != Some(job.client_tid) {
                    client = Some((job.client_tid, Sleeps::of(job.client_tid)));
                }
                let client = &mut client.as_mut().expect("just set").1;
                let replies: Vec<&[u8]> = job.replies.iter().map(Vec::as_slice).collect();
                let socket = match job.unix {
                    Some(mut peer) => {
                        serve(&mut peer, &replies, client, &mut sink, &job.done, wakeup);
                        Socket::Unix(peer)
                    }
                    None => match accept(&job.done, wakeup) {
                        Some(mut peer) => {
                            serve(&mut peer, &replies, client, &mut sink, &job.done, wakeup);
                            Socket::Tcp(peer)
                        }
                        None => Socket::None,
                    },
                };
                if done.send(socket).is_err() {
                    return;
                }
            }
        });
        Peer {
            jobs: Mutex::new(jobs),
            served: Mutex::new(served),
            wake,
        }
    })
}

fn listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        listener
    })
}

/// This run's TCP client, unless it gave up before connecting.
fn accept(done: &AtomicBool, wakeup: RawFd) -> Option<TcpStream> {
    let listener = listener();
    loop {
        match listener.accept() {
            Ok((peer, _)) => {
                peer.set_nonblocking(false).expect("blocking peer");
                // Each reply at once: Nagle would hold it for the client's
                // delayed ACK, 40 ms.
                peer.set_nodelay(true).expect("nodelay");
                return Some(peer);
            }
            Err(_) if done.load(Ordering::SeqCst) => return None,
            Err(_) => {
                wait_readable(listener.as_raw_fd(), wakeup, 50_000);
            }
        }
    }
}

fn run(flags: u8, replies: &[&[u8]]) {
    let peer = peer();
    let done = Arc::new(AtomicBool::new(false));
    let mut job = Job {
        unix: None,
        replies: replies.iter().map(|r| r.to_vec()).collect(),
        client_tid: gettid(),
        done: done.clone(),
    };
    let conn = if flags & TCP != 0 {
        let listener = listener();
        // A connection left over from an earlier run is not this run's client.
        while listener.accept().is_ok() {}
        peer.jobs
            .lock()
            .unwrap()
            .send(job)
            .expect("the peer thread");
        talk(Conn::connect(dsn(flags)))
    } else {
        let (client, peer_end) = UnixStream::pair().expect("socketpair");
        job.unix = Some(peer_end);
        peer.jobs
            .lock()
            .unwrap()
            .send(job)
            .expect("the peer thread");
        talk(Conn::connect_over(client, dsn(flags)))
    };
    done.store(true, Ordering::SeqCst);
    let _ = (&peer.wake).write(&[1]);
    match peer.served.lock().unwrap().recv().expect("the peer thread") {
        // Close with a reset while the client is still open: no TIME_WAIT
        // for each of a million runs. (Where the client closed first, the
        // peer keeps one for a minute: a few thousand, harmless on loopback.)
        Socket::Tcp(socket) => reset(&socket),
        Socket::Unix(_) | Socket::None => {}
    }
    drop(conn);
}

/// Play the server: the first reply at once, each next one when the client
/// has written something or sleeps waiting for more, then end of stream.
fn serve<S: Read + Write + AsRawFd>(
    peer: &mut S,
    replies: &[&[u8]],
    client: &mut Sleeps,
    sink: &mut [u8],
    done: &AtomicBool,
    wakeup: RawFd,
) {
    let fd = peer.as_raw_fd();
    let mut turns_before = 0;
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 {
            // Wait for a request, or for the client to block on its read
            // again after the last reply woke it.
            // Look often at first, then less while the client computes.
            let mut interval = 20_000;
            loop {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                if wait_readable(fd, wakeup, interval) {
                    match peer.read(sink) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => break,
                    }
                }
                if client.sleeping() && client.turns() > turns_before {
                    break;
                }
                interval = (interval * 2).min(200_000);
            }
        }
        // Counted before writing: the client may take the reply and block
        // again before a count taken after the write.
        turns_before = client.turns();
        if peer.write_all(reply).is_err() {
            return;
        }
    }
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// What sera does with a connection: the check query, the lock query sent
/// and read apart, a statement answered by OK (as the session setup sent with
/// GET_LOCK is). Returns the connection (if any) so the caller
/// chooses when it closes. With SERA_FUZZ_VERBOSE set, says how each went
/// (to see what a seed or a crash input does).
fn talk(conn: Result<Conn, sera::mysql::Error>) -> Option<Conn> {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    let verbose = *VERBOSE.get_or_init(|| std::env::var_os("SERA_FUZZ_VERBOSE").is_some());
    let say = |step: &str, outcome: String| {
        if verbose {
            eprintln!("{step}: {outcome}");
        }
    };
    let mut conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            say("connect", format!("error: {e}"));
            return None;
        }
    };
    say(
        "connect",
        format!(
            "ok: {} (id {}, MariaDB: {}, reply timeout {:?})",
            conn.server_version(),
            conn.connection_id(),
            conn.is_mariadb(),
            conn.reply_timeout()
        ),
    );
    let outcome = conn.query_row("SELECT 1", TIMEOUT);
    say("check", describe(outcome));
    let outcome = conn
        .send_query("SELECT GET_LOCK('x', 0)")
        .and_then(|()| conn.read_row(TIMEOUT));
    say("lock", describe(outcome));
    let outcome = conn
        .send_query("SET SESSION wait_timeout=60")
        .and_then(|()| conn.read_done(TIMEOUT))
        .map(|()| None);
    say("setup", describe(outcome));
    Some(conn)
}

/// Always formats, so that every Display path is exercised.
fn describe(outcome: Result<Option<sera::mysql::Row>, sera::mysql::Error>) -> String {
    match outcome {
        Ok(row) => format!("ok: {row:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Whether the client thread sleeps (in its read: it does nothing else that
/// blocks), and how many times it has been on a CPU so far. A sleep counts
/// only if the thread ran since the last reply was written (which wakes the
/// thread within the write, on a unix socket as on loopback TCP).
struct Sleeps {
    /// `/proc/.../stat`: the state is the letter after the `(name)`.
    stat: std::fs::File,
    /// `/proc/.../schedstat`: the third number counts the thread's turns on
    /// a CPU, so it grows once the thread has woken up.
    schedstat: std::fs::File,
    buf: [u8; 512],
}

impl Sleeps {
    fn of(tid: libc::pid_t) -> Sleeps {
        let open = |name: &str| {
            std::fs::File::open(format!("/proc/self/task/{tid}/{name}"))
                .expect("the client thread's /proc files")
        };
        Sleeps {
            stat: open("stat"),
            schedstat: open("schedstat"),
            buf: [0; 512],
        }
    }

    fn sleeping(&mut self) -> bool {
        use std::os::unix::fs::FileExt;
        let n = self.stat.read_at(&mut self.buf, 0).unwrap_or(0);
        let stat = &self.buf[..n];
        match stat.iter().rposition(|&b| b == b')') {
            Some(end) => stat.get(end + 2) == Some(&b'S'),
            None => false,
        }
    }

    fn turns(&mut self) -> u64 {
        use std::os::unix::fs::FileExt;
        let n = self.schedstat.read_at(&mut self.buf, 0).unwrap_or(0);
        std::str::from_utf8(&self.buf[..n])
            .ok()
            .and_then(|text| text.split_whitespace().nth(2))
            .and_then(|turns| turns.parse().ok())
            .unwrap_or(0)
    }
}

/// Wait up to `ns` nanoseconds for `fd` to become readable (or closed); true
/// if it is. A byte on `wakeup` ends the wait early (the caller then sees it
/// is done).
fn wait_readable(fd: RawFd, wakeup: RawFd, ns: i64) -> bool {
    let mut polls = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wakeup,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: ns,
    };
    unsafe { libc::ppoll(polls.as_mut_ptr(), 2, &timeout, std::ptr::null()) };
    polls[0].revents != 0
}

fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn gettid() -> libc::pid_t {
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
