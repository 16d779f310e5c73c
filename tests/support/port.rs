//! TCP ports on 127.0.0.1: one free for a server, one that refuses.

use std::io;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;

/// A port that was free on 127.0.0.1 a moment ago (never 3306).
pub(super) fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if port != 3306 {
            return port;
        }
    }
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as this
/// lives: bound but never listening, so no other test can take it meanwhile
/// (a port merely freed may be reused at once by a parallel test).
#[allow(dead_code)]
pub struct ClosedPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

#[allow(dead_code)]
impl ClosedPort {
    pub fn new() -> ClosedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: the socket made here is owned at once; the sockaddr_in values
        // are plain data, valid zeroed, and passed with their true sizes.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                len,
            );
            assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut len = len;
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_in).cast(),
                &mut len,
            );
            ClosedPort {
                fd,
                port: u16::from_be(bound.sin_port),
            }
        }
    }
}
