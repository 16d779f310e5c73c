//! A TCP relay between sera and the server, so a test can cut or stall the link,
//! or stand in for a load balancer in front of a cluster.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A TCP relay between sera and the server, inside the test: listens on a free
/// 127.0.0.1 port and forwards to a target port, one thread pair per connection,
/// so a test can cut or stall the link on demand. With several targets
/// ([`Relay::start_failover`]) each new connection goes to the first that
/// accepts one, as a load balancer or a VIP sends clients to a live node.
#[allow(dead_code)]
pub struct Relay {
    port: u16,
    state: Arc<RelayState>,
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
}

struct RelayState {
    /// Tried in order for every new connection; the first that accepts wins.
    target_ports: Vec<u16>,
    cut: AtomicBool,
    stalled: AtomicBool,
    closing: AtomicBool,
    /// Both ends of every connection; the lock also orders accept against cut().
    streams: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

#[allow(dead_code)]
impl Relay {
    pub fn start(target_port: u16) -> Relay {
        Relay::start_failover(&[target_port])
    }

    /// A relay that connects each new client to the first of `target_ports`
    /// that accepts a TCP connection: a node that was killed refuses, so its
    /// clients' reconnections go to the next. (A node that is alive but out of
    /// its cluster still accepts; this relay does not look deeper.)
    pub fn start_failover(target_ports: &[u16]) -> Relay {
        assert!(!target_ports.is_empty(), "relay: no target");
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("relay: local_addr").port();
        let state = Arc::new(RelayState {
            target_ports: target_ports.to_vec(),
            cut: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let listener = listener.try_clone().expect("relay: clone listener");
            let state = Arc::clone(&state);
            thread::Builder::new()
                .name(format!("relay-{port}"))
                .spawn(move || accept_loop(listener, state))
                .expect("relay: start thread")
        };
        Relay {
            port,
            state,
            listener,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every current connection abruptly (shutdown both directions on both
    /// sockets) and close new ones as soon as they are accepted, from now on.
    pub fn cut(&self) {
        let streams = self.state.streams.lock().unwrap();
        self.state.cut.store(true, Ordering::SeqCst);
        for stream in streams.iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Stop forwarding bytes in both directions until the relay is dropped:
    /// connections stay open, data already read is held, nothing more is sent.
    /// New connections are accepted but get nothing (no greeting).
    /// Bytes whose write began before this call may still arrive.
    pub fn stall(&self) {
        self.state.stalled.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket wakes the thread blocked in accept().
        // SAFETY: the fd is owned by self.listener and stays open during the
        // call.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.state.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let pumps = std::mem::take(&mut *self.state.pumps.lock().unwrap());
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<RelayState>) {
    for client in listener.incoming() {
        if state.closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let mut streams = state.streams.lock().unwrap();
        if state.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        if state.stalled.load(Ordering::SeqCst) {
            // Held open, never answered, closed when the relay is dropped.
            streams.push(client);
            continue;
        }
        let server = state
            .target_ports
            .iter()
            .find_map(|port| TcpStream::connect(("127.0.0.1", *port)).ok());
        let Some(server) = server else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = (client.try_clone(), server.try_clone());
        let (Ok(client_out), Ok(server_out)) = clones else {
            continue;
        };
        let clones = (client.try_clone(), server.try_clone());
        let (Ok(client_kept), Ok(server_kept)) = clones else {
            continue;
        };
        streams.push(client_kept);
        streams.push(server_kept);
        drop(streams);
        let mut pumps = state.pumps.lock().unwrap();
        for (from, to) in [(client, server_out), (server, client_out)] {
            let state = Arc::clone(&state);
            pumps.push(thread::spawn(move || pump(from, to, &state)));
        }
    }
}

/// Copy bytes from one socket to the other until either side closes, holding them
/// while the relay is stalled. When it ends, both sockets are shut down.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &RelayState) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let stop = || state.cut.load(Ordering::SeqCst) || state.closing.load(Ordering::SeqCst);
        while state.stalled.load(Ordering::SeqCst) && !stop() {
            thread::sleep(Duration::from_millis(20));
        }
        if stop() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
