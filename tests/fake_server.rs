//! The client against a scripted fake server.
//!
//! Everywhere else sera is tested against a real MariaDB, and that is where
//! its behaviour is proven. But MariaDB cannot produce what these tests need:
//! MySQL 8's caching_sha2_password exchanges (fast auth, RSA full auth, an
//! auth switch), and peers that are broken, hostile or not MySQL at all. Here
//! a thread plays the server from a script: it sends exactly the bytes a test
//! chooses and checks exactly the bytes the client sends back. Every test name
//! starts with `scripted_server_` so that a reader knows no real server was
//! involved.
//!
//! A failed check inside a script is reported before whatever the client saw,
//! so a wrong scramble reads as a wrong scramble, not as a closed connection.

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use mysql_common::auth::plugins::caching_sha2_password::scramble_sha256;
use mysql_common::auth::plugins::mysql_native_password::scramble_native;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use sera::dsn::Dsn;
use sera::mysql::{Conn, Error};
use support::sera::Setup;
use support::TempDir;

const PASSWORD: &str = "secret";
const NONCE: [u8; 20] = *b"0123456789abcdefghij";
/// The DSN says `timeout=1s`; every failure must come well within this.
const BOUND: Duration = Duration::from_secs(2);
/// The longest a script waits for the client, so that a broken client fails
/// the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(5);
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

// ---- the fake server -------------------------------------------------------

/// Run `script` as the server of one connection, and `client` against it with
/// the server's port. The script's failures are reported first. `client` must
/// not return a live `Conn`: the script may be waiting for it to hang up.
fn with_server<T>(
    script: impl FnOnce(&mut TcpStream) + Send + 'static,
    client: impl FnOnce(u16) -> T,
) -> T {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && started.elapsed() < PATIENCE => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("fake server: the client never connected: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        // Each scripted packet goes out as it is written, like a server's.
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        script(&mut stream);
    });
    let outcome = client(port);
    if let Err(panic) = server.join() {
        std::panic::resume_unwind(panic);
    }
    outcome
}

fn dsn(port: u16, params: &str) -> Dsn {
    Dsn::parse(&format!(
        "u:{PASSWORD}@tcp(127.0.0.1:{port})/?timeout=1s{params}"
    ))
    .unwrap()
}

fn write_packet(s: &mut TcpStream, seq: u8, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    frame.push(seq);
    frame.extend_from_slice(payload);
    s.write_all(&frame).expect("fake server: write");
}

/// One packet from the client, which must carry sequence id `seq`.
fn read_packet(s: &mut TcpStream, seq: u8) -> Vec<u8> {
    let mut head = [0; 4];
    s.read_exact(&mut head)
        .expect("fake server: a packet from the client");
    assert_eq!(head[3], seq, "sequence id of the client's packet");
    let mut payload = vec![0; u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize];
    s.read_exact(&mut payload)
        .expect("fake server: a packet from the client");
    payload
}

/// Keep the connection open until the client hangs up; returns what it sent.
fn hold(s: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    rest
}

fn capabilities(deprecate_eof: bool) -> CapabilityFlags {
    let mut caps = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    if deprecate_eof {
        caps |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
    }
    caps
}

/// A MySQL 8 greeting (protocol 10) offering `plugin` with `nonce`.
fn greeting(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    greeting_with(10, plugin, nonce, capabilities(true))
}

fn greeting_with(version: u8, plugin: &str, nonce: &[u8; 20], caps: CapabilityFlags) -> Vec<u8> {
    greeting_of("8.0.36", version, plugin, nonce, caps)
}

/// A greeting from a server that calls itself `server_version`.
fn greeting_of(
    server_version: &str,
    version: u8,
    plugin: &str,
    nonce: &[u8; 20],
    caps: CapabilityFlags,
) -> Vec<u8> {
    // Like MySQL: the second part of the nonce ends with a NUL.
    let mut scramble_2 = nonce[8..].to_vec();
    scramble_2.push(0);
    let packet = HandshakePacket::new(
        version,
        server_version.as_bytes(),
        7,
        nonce[..8].try_into().unwrap(),
        Some(scramble_2),
        caps,
        255,
        StatusFlags::SERVER_STATUS_AUTOCOMMIT,
        Some(plugin.as_bytes()),
    );
    let mut bytes = Vec::new();
    packet.serialize(&mut bytes);
    bytes
}

fn ok_packet() -> Vec<u8> {
    vec![0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]
}

fn eof_packet() -> Vec<u8> {
    vec![0xfe, 0x00, 0x00, 0x02, 0x00]
}

fn err_packet(code: u16, state: Option<&str>, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    if let Some(state) = state {
        p.push(b'#');
        p.extend_from_slice(state.as_bytes());
    }
    p.extend_from_slice(message.as_bytes());
    p
}

/// `0xFE plugin\0 data`: switch the client to another auth plugin.
fn auth_switch(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(data);
    p
}

/// The definition of a BIGINT column named `name`: sera skips it, but a real
/// server sends one.
fn column_def(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for field in ["def", "", "", "", name, ""] {
        p.push(field.len() as u8);
        p.extend_from_slice(field.as_bytes());
    }
    p.extend_from_slice(&[
        0x0c, 0x3f, 0x00, 1, 0, 0, 0, 0x08, 0x81, 0x00, 0x00, 0x00, 0x00,
    ]);
    p
}

/// A one-column text result set with `rows` (raw row packets), shaped by
/// whether the client asked for CLIENT_DEPRECATE_EOF.
fn send_result(s: &mut TcpStream, client: CapabilityFlags, rows: &[&[u8]]) {
    send_result_of(s, 1, client, 1, rows)
}

/// A text result set of `columns` columns, its first packet numbered `seq`.
fn send_result_of(
    s: &mut TcpStream,
    seq: u8,
    client: CapabilityFlags,
    columns: u8,
    rows: &[&[u8]],
) {
    let deprecate_eof = client.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    let mut packets = vec![vec![columns]];
    packets.extend((0..columns).map(|i| column_def(&i.to_string())));
    if !deprecate_eof {
        packets.push(eof_packet());
    }
    packets.extend(rows.iter().map(|row| row.to_vec()));
    packets.push(if deprecate_eof {
        vec![0xfe, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]
    } else {
        eof_packet()
    });
    for (i, packet) in packets.iter().enumerate() {
        write_packet(s, seq + i as u8, packet);
    }
}

/// A text row of short values.
fn row(values: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for value in values {
        p.push(value.len() as u8);
        p.extend_from_slice(value.as_bytes());
    }
    p
}

/// What the client said in its HandshakeResponse.
struct Hello {
    capabilities: CapabilityFlags,
    user: Vec<u8>,
    auth_data: Vec<u8>,
    plugin: Vec<u8>,
    attributes: HashMap<String, String>,
}

fn read_hello(s: &mut TcpStream) -> Hello {
    let payload = read_packet(s, 1);
    let r = ParseBuf(&payload)
        .parse::<HandshakeResponse>(())
        .expect("fake server: the client's HandshakeResponse");
    Hello {
        capabilities: r.capabilities(),
        user: r.user().to_vec(),
        auth_data: r.scramble_buf().to_vec(),
        plugin: r
            .auth_plugin()
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
        attributes: r.connect_attributes().unwrap_or_default(),
    }
}

/// Greet with caching_sha2_password, check the scramble, accept it by fast
/// auth, and read the client's first query. Returns the client's capabilities.
fn fast_auth_then_query(s: &mut TcpStream) -> CapabilityFlags {
    write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
    let hello = read_hello(s);
    assert_eq!(
        hello.auth_data,
        scramble_sha256(&NONCE, PASSWORD.as_bytes()).unwrap()
    );
    write_packet(s, 2, &[0x01, 0x03]);
    write_packet(s, 3, &ok_packet());
    assert_eq!(read_packet(s, 0), b"\x03SELECT 1");
    hello.capabilities
}

/// Connect to a server playing `script`; connecting must fail within BOUND.
/// Returns the error and how long it took.
fn connect_error(
    params: &str,
    script: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (Error, Duration) {
    let params = params.to_string();
    let (result, elapsed) = with_server(script, move |port| {
        let started = Instant::now();
        let result = Conn::connect(&dsn(port, &params)).map(drop);
        (result, started.elapsed())
    });
    let error = result.expect_err("connect must fail");
    assert!(elapsed < BOUND, "took {elapsed:?} to fail with: {error}");
    (error, elapsed)
}

/// Authenticate, then send `SELECT 1` to a server that answers with `reply`;
/// the query must fail within BOUND. Returns the error.
fn query_error(reply: impl FnOnce(&mut TcpStream, CapabilityFlags) + Send + 'static) -> Error {
    query_error_within(BOUND, reply)
}

/// `query_error` for a script whose failure takes work to reach: the bound
/// only guards against a hang there.
fn query_error_within(
    bound: Duration,
    reply: impl FnOnce(&mut TcpStream, CapabilityFlags) + Send + 'static,
) -> Error {
    let (result, elapsed) = with_server(
        move |s| {
            let caps = fast_auth_then_query(s);
            reply(s, caps);
        },
        |port| {
            let mut conn = Conn::connect(&dsn(port, "")).expect("connect");
            let started = Instant::now();
            let result = conn.query_row("SELECT 1", QUERY_TIMEOUT);
            (result, started.elapsed())
        },
    );
    let error = result.expect_err("the query must fail");
    assert!(elapsed < bound, "took {elapsed:?} to fail with: {error}");
    error
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---- caching_sha2_password and auth switches -----------------------------

#[test]
fn scripted_server_caching_sha2_fast_auth_then_query() {
    // With and without CLIENT_DEPRECATE_EOF on offer: the result set has an
    // EOF after the column definitions only when the client did not ask.
    for deprecate_eof in [true, false] {
        let (one, null) = with_server(
            move |s| {
                let caps = capabilities(deprecate_eof);
                write_packet(
                    s,
                    0,
                    &greeting_with(10, "caching_sha2_password", &NONCE, caps),
                );
                let hello = read_hello(s);
                assert_eq!(hello.user, b"u");
                assert_eq!(hello.plugin, b"caching_sha2_password");
                assert_eq!(
                    hello.auth_data,
                    scramble_sha256(&NONCE, PASSWORD.as_bytes()).unwrap()
                );
                assert_eq!(
                    hello.attributes.get("program_name").map(String::as_str),
                    Some("sera")
                );
                let client_eof = hello
                    .capabilities
                    .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
                assert_eq!(
                    client_eof, deprecate_eof,
                    "CLIENT_DEPRECATE_EOF only when offered"
                );
                write_packet(s, 2, &[0x01, 0x03]);
                write_packet(s, 3, &ok_packet());

                assert_eq!(read_packet(s, 0), b"\x03SELECT 1");
                send_result(s, hello.capabilities, &[b"\x011"]);
                assert_eq!(read_packet(s, 0), b"\x03SELECT NULL");
                send_result(s, hello.capabilities, &[b"\xfb"]);
                assert_eq!(read_packet(s, 0), b"\x03SET SESSION wait_timeout=60");
                write_packet(s, 1, &ok_packet());
                hold(s);
            },
            |port| -> Result<_, Error> {
                let mut conn = Conn::connect(&dsn(port, ""))?;
                let one = conn.query_row("SELECT 1", QUERY_TIMEOUT)?;
                let null = conn.query_row("SELECT NULL", QUERY_TIMEOUT)?;
                conn.send_query("SET SESSION wait_timeout=60")?;
                conn.read_done(QUERY_TIMEOUT)?;
                Ok((one, null))
            },
        )
        .unwrap_or_else(|e| panic!("deprecate_eof={deprecate_eof}: {e}"));
        assert_eq!(one, Some(vec![Some("1".to_string())]));
        assert_eq!(null, Some(vec![None]));
    }
}

#[test]
fn scripted_server_without_connection_attributes_gets_none() {
    // An old or minimal server that does not offer CLIENT_CONNECT_ATTRS
    // must get a login packet without them, or it would misread it.
    let one = with_server(
        |s| {
            let caps = capabilities(true) - CapabilityFlags::CLIENT_CONNECT_ATTRS;
            write_packet(
                s,
                0,
                &greeting_with(10, "caching_sha2_password", &NONCE, caps),
            );
            let hello = read_hello(s);
            assert!(
                !hello
                    .capabilities
                    .contains(CapabilityFlags::CLIENT_CONNECT_ATTRS),
                "attributes announced to a server without them"
            );
            assert!(hello.attributes.is_empty());
            assert_eq!(
                hello.user, b"u",
                "the packet was read as the server reads it"
            );
            write_packet(s, 2, &[0x01, 0x03]);
            write_packet(s, 3, &ok_packet());
            assert_eq!(read_packet(s, 0), b"\x03SELECT 1");
            send_result(s, hello.capabilities, &[b"\x011"]);
            hold(s);
        },
        |port| -> Result<_, Error> {
            let about = [("sera_lock", "nightly".to_string())];
            let mut conn = Conn::connect_as(&dsn(port, ""), &about)?;
            conn.query_row("SELECT 1", QUERY_TIMEOUT)
        },
    )
    .unwrap();
    assert_eq!(one, Some(vec![Some("1".to_string())]));
}

#[test]
fn scripted_server_caching_sha2_full_auth_over_tcp() {
    let dir = TempDir::new();
    let key = dir.join("key.pem");
    let key_arg = key.to_str().unwrap();
    openssl(&["genrsa", "-out", key_arg, "2048"]);
    let spki = openssl(&["rsa", "-in", key_arg, "-pubout"]);
    let pkcs1 = openssl(&["rsa", "-in", key_arg, "-RSAPublicKey_out"]);
    assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PUBLIC KEY"));

    // Both key formats a server may send; the longer password is longer than
    // the nonce, so the XOR has to cycle through it.
    let long = "a-password-longer-than-the-20-byte-nonce";
    for (pem, password) in [(spki, PASSWORD), (pkcs1, long)] {
        let key = key.clone();
        let blob = dir.join("blob");
        let result = with_server(
            move |s| {
                write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
                let hello = read_hello(s);
                assert_eq!(
                    hello.auth_data,
                    scramble_sha256(&NONCE, password.as_bytes()).unwrap()
                );
                write_packet(s, 2, &[0x01, 0x04]);
                assert_eq!(
                    read_packet(s, 3),
                    [0x02],
                    "the client asks for the public key"
                );
                write_packet(s, 4, &[&[0x01][..], &pem].concat());
                let encrypted = read_packet(s, 5);
                std::fs::write(&blob, encrypted).unwrap();
                let decrypted = openssl(&[
                    "pkeyutl",
                    "-decrypt",
                    "-inkey",
                    key.to_str().unwrap(),
                    "-pkeyopt",
                    "rsa_padding_mode:oaep",
                    "-in",
                    blob.to_str().unwrap(),
                ]);
                let expected: Vec<u8> = password
                    .bytes()
                    .chain([0])
                    .zip(NONCE.iter().cycle())
                    .map(|(p, n)| p ^ n)
                    .collect();
                assert_eq!(decrypted, expected, "(password + NUL) XOR nonce");
                write_packet(s, 6, &ok_packet());
                hold(s);
            },
            |port| {
                let dsn =
                    Dsn::parse(&format!("u:{password}@tcp(127.0.0.1:{port})/?timeout=1s")).unwrap();
                Conn::connect(&dsn).map(drop)
            },
        );
        result.unwrap_or_else(|e| panic!("full auth with password {password:?}: {e}"));
    }
}

#[test]
fn scripted_server_auth_switch_to_caching_sha2() {
    let new_nonce: [u8; 20] = *b"ABCDEFGHIJKLMNOPQRST";
    with_server(
        move |s| {
            write_packet(s, 0, &greeting("mysql_native_password", &NONCE));
            let hello = read_hello(s);
            assert_eq!(hello.plugin, b"mysql_native_password");
            assert_eq!(
                hello.auth_data,
                scramble_native(&NONCE, PASSWORD.as_bytes()).unwrap()
            );
            let mut data = new_nonce.to_vec();
            data.push(0);
            write_packet(s, 2, &auth_switch("caching_sha2_password", &data));
            let answer = read_packet(s, 3);
            assert_eq!(
                answer,
                scramble_sha256(&new_nonce, PASSWORD.as_bytes()).unwrap()
            );
            write_packet(s, 4, &ok_packet());
            hold(s);
        },
        |port| Conn::connect(&dsn(port, "")).map(drop),
    )
    .expect("connect after the auth switch");
}

#[test]
fn scripted_server_auth_switch_to_cleartext_or_unknown_plugin_is_refused() {
    // Whether cleartext is not allowed, or allowed but this is TCP, the
    // password goes neither into the error nor onto the wire.
    let cases = [
        ("", "mysql_clear_password", "allowCleartextPasswords"),
        (
            "&allowCleartextPasswords=true",
            "mysql_clear_password",
            "unix socket",
        ),
        ("", "dialog", "dialog"),
    ];
    for (params, plugin, expected) in cases {
        let (error, _) = connect_error(params, move |s| {
            write_packet(s, 0, &greeting("mysql_native_password", &NONCE));
            read_hello(s);
            write_packet(s, 2, &auth_switch(plugin, b"Password: "));
            let rest = hold(s);
            assert!(
                !rest
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes()),
                "the client sent the password in clear to {plugin}"
            );
        });
        let text = error.to_string();
        assert!(
            matches!(error, Error::Protocol(_)),
            "{plugin}{params}: {error:?}"
        );
        assert!(text.contains(expected), "{plugin}{params}: {text}");
        assert!(!text.contains(PASSWORD), "{plugin}{params}: {text}");
    }
}

// ---- hostile peers during the handshake -----------------------------------

#[test]
fn scripted_server_silent_peer() {
    let (error, _) = connect_error("", |s| {
        hold(s);
    });
    assert!(error.to_string().contains("no greeting"), "{error}");
}

#[test]
fn scripted_server_http_server() {
    let (error, _) = connect_error("", |s| {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        hold(s);
    });
    assert!(error.to_string().contains("not a MySQL server"), "{error}");
}

/// `len` bytes of a fixed pseudo-random sequence (xorshift64).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn scripted_server_random_bytes() {
    // Noise where the greeting should be; noise after the server version of
    // a protocol-10 greeting, for the greeting parser; and a packet of noise
    // in answer to the client's HandshakeResponse. Each connection then
    // stays open.
    let shapes: [fn(&mut TcpStream, u64); 3] = [
        |s, seed| s.write_all(&noise(seed, 512)).unwrap(),
        |s, seed| write_packet(s, 0, &[&b"\x0a8.0.36\0"[..], &noise(seed, 80)].concat()),
        |s, seed| {
            write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
            read_hello(s);
            write_packet(s, 2, &noise(seed, 64));
        },
    ];
    thread::scope(|scope| {
        for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 42] {
            for (i, shape) in shapes.into_iter().enumerate() {
                scope.spawn(move || {
                    let (error, _) = connect_error("", move |s| {
                        shape(s, seed);
                        hold(s);
                    });
                    assert!(!error.to_string().is_empty(), "shape {i}, seed {seed}");
                });
            }
        }
    });
}

#[test]
fn scripted_server_closes_at_once() {
    let (error, _) = connect_error("", |_| {});
    assert!(
        error
            .to_string()
            .contains("closed the connection before greeting"),
        "{error}"
    );
}

#[test]
fn scripted_server_packet_claims_16_mib() {
    let (error, elapsed) = connect_error("", |s| {
        s.write_all(&[0xff, 0xff, 0xff, 0x00]).unwrap();
        hold(s);
    });
    let text = error.to_string();
    assert!(
        text.contains("16777215") && text.contains("bytes"),
        "{text}"
    );
    // Decided on the header, not after waiting for the bytes to come.
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn scripted_server_protocol_version_9() {
    let (error, _) = connect_error("", |s| {
        write_packet(
            s,
            0,
            &greeting_with(9, "mysql_native_password", &NONCE, capabilities(true)),
        );
        hold(s);
    });
    assert!(error.to_string().contains("protocol version 9"), "{error}");
}

#[test]
fn scripted_server_greeting_with_odd_auth_data_lengths() {
    // The greeting's auth-plugin-data length, on which mysql_common does i8
    // arithmetic: 0x80..=0x87 overflowed (a panic in debug and fuzz builds).
    // Servers send 21, or 0; anything over 127 is refused.
    for len in [0x80, 0x87, 0x88, 0xff, 0x00, 0x15] {
        let result = with_server(
            move |s| {
                let mut packet = greeting("caching_sha2_password", &NONCE);
                // version, "8.0.36\0", id, nonce part 1, filler, caps, collation, status, caps
                let at = 1 + 7 + 4 + 8 + 1 + 2 + 1 + 2 + 2;
                assert_eq!(packet[at], 21, "the length byte is where we think");
                packet[at] = len;
                write_packet(s, 0, &packet);
                // Accept whatever the client answers, if it answers.
                let mut head = [0; 4];
                if s.read_exact(&mut head).is_ok() {
                    write_packet(s, 2, &[0x01, 0x03]);
                    write_packet(s, 3, &ok_packet());
                }
                hold(s);
            },
            |port| {
                let started = Instant::now();
                let result = Conn::connect(&dsn(port, "")).map(drop);
                assert!(started.elapsed() < BOUND, "length {len:#x}");
                result
            },
        );
        match result {
            Err(Error::Protocol(why)) if len >= 0x80 => {
                assert!(why.contains("greeting"), "length {len:#x}: {why}")
            }
            Ok(()) if len < 0x80 => {}
            other => panic!("length {len:#x}: {other:?}"),
        }
    }
}

#[test]
fn scripted_server_access_denied_after_greeting() {
    let (error, _) = connect_error("", |s| {
        write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
        read_hello(s);
        let message = "Access denied for user 'u'@'localhost' (using password: YES)";
        write_packet(s, 2, &err_packet(1045, Some("28000"), message));
        hold(s);
    });
    match &error {
        Error::Server {
            code: 1045,
            state,
            message,
        } => {
            assert_eq!(state, "28000");
            assert_eq!(
                message,
                "Access denied for user 'u'@'localhost' (using password: YES)"
            );
        }
        other => panic!("expected server error 1045, got {other:?}"),
    }
}

#[test]
fn scripted_server_too_many_connections_instead_of_greeting() {
    let (error, _) = connect_error("", |s| {
        write_packet(s, 0, &err_packet(1040, None, "Too many connections"));
        hold(s);
    });
    match &error {
        Error::Server {
            code: 1040,
            state,
            message,
        } => {
            assert_eq!(state, "");
            assert_eq!(message, "Too many connections");
        }
        other => panic!("expected server error 1040, got {other:?}"),
    }
    assert_eq!(error.to_string(), "server error 1040: Too many connections");
}

#[test]
fn scripted_server_wrong_sequence_ids() {
    // The greeting itself out of order.
    let (error, _) = connect_error("", |s| {
        write_packet(s, 1, &greeting("caching_sha2_password", &NONCE));
        hold(s);
    });
    assert!(error.to_string().contains("out of order"), "{error}");

    // The OK that ends the authentication out of order.
    let (error, _) = connect_error("", |s| {
        write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
        read_hello(s);
        write_packet(s, 2, &[0x01, 0x03]);
        write_packet(s, 9, &ok_packet());
        hold(s);
    });
    assert!(
        error.to_string().contains("expected sequence 3, got 9"),
        "{error}"
    );
}

#[test]
fn scripted_server_endless_auth_packets() {
    // "Fast auth succeeded", again and again, in order: the client gives up
    // after a few rounds instead of following for ever.
    let (error, _) = connect_error("", |s| {
        write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
        read_hello(s);
        for seq in 2..=255 {
            let frame = [2, 0, 0, seq, 0x01, 0x03];
            if s.write_all(&frame).is_err() {
                return;
            }
        }
        hold(s);
    });
    assert!(
        error.to_string().contains("authentication did not finish"),
        "{error}"
    );
}

// ---- hostile peers after authentication -----------------------------------

#[test]
fn scripted_server_result_claims_2_pow_40_columns() {
    let error = query_error(|s, _| {
        let mut header = vec![0xfe];
        header.extend_from_slice(&(1u64 << 40).to_le_bytes());
        write_packet(s, 1, &header);
        write_packet(s, 2, &column_def("a"));
        write_packet(s, 3, &column_def("b"));
        hold(s);
    });
    assert!(matches!(error, Error::Timeout), "{error:?}");
}

#[test]
fn scripted_server_row_value_longer_than_its_packet() {
    for row in [&b"\x05ab"[..], b"\xfc\xff\xff1", b"\xfd\xff\xff\xff", b""] {
        let error = query_error(move |s, caps| {
            send_result(s, caps, &[row]);
            hold(s);
        });
        assert!(
            error.to_string().contains("unreadable row"),
            "row {row:?}: {error}"
        );
    }
}

#[test]
fn scripted_server_endless_rows_hit_the_reply_cap() {
    // A MiB of 6-byte rows is 170,000 packets, parsed by the test's debug
    // build on a machine that may be busy: the message, not the time, says
    // the client stopped at the cap (one that read on would time out).
    let error = query_error_within(Duration::from_secs(15), |s, caps| {
        let mut seq = 1u8;
        let mut next = |payload: &[u8]| {
            let mut frame = (payload.len() as u32).to_le_bytes()[..3].to_vec();
            frame.push(seq);
            frame.extend_from_slice(payload);
            seq = seq.wrapping_add(1);
            frame
        };
        let mut head = [next(&[1]), next(&column_def("1"))].concat();
        if !caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF) {
            head.extend(next(&eof_packet()));
        }
        s.write_all(&head).unwrap();
        // Rows and never a terminator, in batches, up to 64 MiB: far past
        // the cap, yet finite should the client not stop reading.
        for _ in 0..(64 << 20) / (6 * 4096) {
            let batch: Vec<u8> = (0..4096).flat_map(|_| next(b"\x011")).collect();
            if s.write_all(&batch).is_err() {
                return;
            }
        }
        hold(s);
    });
    assert!(error.to_string().contains("over 1048576 bytes"), "{error}");
}

// ---- the same peers through the sera binary -------------------------------

/// Run `sera --config FILE 0 true` against a server playing `script`, with a
/// config file that points at it. Returns (exit code, stdout, stderr).
fn run_sera(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> (Option<i32>, String, String) {
    run_sera_with(&["0", "true"], script)
}

/// `run_sera` with these arguments instead of `0 true`.
fn run_sera_with(
    args: &[&str],
    script: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (Option<i32>, String, String) {
    let (output, elapsed) = with_server(script, |port| {
        let setup = Setup::new(&format!("u:{PASSWORD}@tcp(127.0.0.1:{port})/?timeout=1s"));
        let started = Instant::now();
        let output = setup
            .command(args)
            .env_remove("SERA_PASSWORD")
            .output()
            .expect("run sera");
        (output, started.elapsed())
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(elapsed < BOUND, "took {elapsed:?}; stderr: {stderr}");
    (output.status.code(), stdout, stderr)
}

/// Exit 202, nothing on stdout, one `sera: ` line on stderr (and perhaps one
/// hint), and never the password.
fn assert_connect_failure(code: Option<i32>, stdout: &str, stderr: &str) -> String {
    assert_eq!(code, Some(202), "stderr: {stderr}");
    assert_eq!(stdout, "");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() == 1 || lines.len() == 2, "stderr: {stderr}");
    assert!(lines[0].starts_with("sera: "), "stderr: {stderr}");
    assert!(!lines[0].starts_with("sera: hint: "), "stderr: {stderr}");
    if let Some(hint) = lines.get(1) {
        assert!(hint.starts_with("sera: hint: "), "stderr: {stderr}");
    }
    assert!(!stderr.contains(PASSWORD), "stderr: {stderr}");
    lines[0].to_string()
}

#[test]
fn scripted_server_binary_silent_listener() {
    let (code, stdout, stderr) = run_sera(|s| {
        hold(s);
    });
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.contains("no greeting"), "{line}");
}

#[test]
fn scripted_server_binary_http_server() {
    let (code, stdout, stderr) = run_sera(|s| {
        s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        hold(s);
    });
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.contains("not a MySQL server"), "{line}");
}

#[test]
fn scripted_server_binary_access_denied_hint_hides_the_password() {
    let (code, stdout, stderr) = run_sera(|s| {
        write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
        read_hello(s);
        write_packet(
            s,
            2,
            &err_packet(1045, Some("28000"), "Access denied for user 'u'"),
        );
        hold(s);
    });
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.contains("1045"), "{line}");
    assert!(
        stderr.contains("sera: hint: ") && stderr.contains("(u@127.0.0.1:"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// Authenticate by fast auth, then answer the client's GET_LOCK with `error`:
/// the first try with the server's variables, and the bare GET_LOCK that
/// sera falls back to (a proxy may refuse only the columns).
fn refuse_get_lock(error: Vec<u8>) -> impl FnOnce(&mut TcpStream) + Send + 'static {
    move |s| {
        write_packet(s, 0, &greeting("caching_sha2_password", &NONCE));
        read_hello(s);
        write_packet(s, 2, &[0x01, 0x03]);
        write_packet(s, 3, &ok_packet());
        // The session's idle timeout is raised in the same write.
        let with_columns = read_first_try(s);
        assert!(
            with_columns.starts_with("SELECT GET_LOCK(CONVERT(X'")
                && with_columns.ends_with(", 0), @@global.read_only, @@global.super_read_only"),
            "{with_columns}"
        );
        write_packet(s, 1, &error);
        let bare = read_first_try(s);
        assert!(
            bare.starts_with("SELECT GET_LOCK(CONVERT(X'") && bare.ends_with(", 0)"),
            "{bare}"
        );
        write_packet(s, 1, &error);
        hold(s);
    }
}

#[test]
fn scripted_server_binary_get_lock_refused_by_a_galera_node() {
    // What MariaDB with wsrep_on=ON answers; no single server says this.
    let error = err_packet(
        1235,
        Some("42000"),
        "This version of MariaDB doesn't yet support 'GET_LOCK in cluster (WSREP_ON=ON)'",
    );
    let (code, stdout, stderr) = run_sera(refuse_get_lock(error));
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.starts_with("sera: cannot take the lock: "), "{line}");
    assert!(line.contains("1235") && line.contains("WSREP_ON"), "{line}");
    assert!(
        stderr.contains("Galera"),
        "the hint names the cause: {stderr}"
    );
}

#[test]
fn scripted_server_binary_get_lock_refused_for_its_name() {
    // MySQL 5.7+ refuses names over 64 characters (sera's are 32).
    let error = err_packet(3057, Some("42000"), "Incorrect user-level lock name 'x'.");
    let (code, stdout, stderr) = run_sera(refuse_get_lock(error));
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.starts_with("sera: cannot take the lock: "), "{line}");
    assert!(
        line.contains("3057") && line.contains("lock name"),
        "{line}"
    );
}

/// Authenticate by fast auth as a server calling itself `version`. Returns
/// the client's capabilities.
fn greet_as(s: &mut TcpStream, version: &str) -> CapabilityFlags {
    let caps = capabilities(true);
    write_packet(
        s,
        0,
        &greeting_of(version, 10, "caching_sha2_password", &NONCE, caps),
    );
    let hello = read_hello(s);
    write_packet(s, 2, &[0x01, 0x03]);
    write_packet(s, 3, &ok_packet());
    hello.capabilities & caps
}

/// Read the setup and the first try sent in one write, answer the setup;
/// returns the first try's SQL (without the command byte).
fn read_first_try(s: &mut TcpStream) -> String {
    let setup = read_packet(s, 0);
    assert!(
        setup.starts_with(b"\x03SET SESSION wait_timeout="),
        "{setup:?}"
    );
    let query = read_packet(s, 0);
    assert_eq!(query[0], 0x03, "a COM_QUERY");
    write_packet(s, 1, &ok_packet());
    String::from_utf8(query[1..].to_vec()).unwrap()
}

/// GET_LOCK's part of the first try, as sera writes it for the lock `ran`.
const GET_LOCK_RAN: &str = "SELECT GET_LOCK(CONVERT(X'72616e' USING utf8mb4), 0)";

#[test]
fn scripted_server_binary_without_super_read_only_or_read_only_still_takes_the_lock() {
    // A MySQL-flavoured server that knows neither variable (MariaDB knows
    // read_only, and a MySQL 8 knows both): each form that names one is
    // refused with 1193, before GET_LOCK runs, and the bare form works.
    let (code, stdout, stderr) = run_sera_with(&["--name", "ran", "0", "echo", "ran"], |s| {
        let caps = greet_as(s, "8.0.36-compatible");
        let unknown = |s: &mut TcpStream, name: &str| {
            let message = format!("Unknown system variable '{name}'");
            write_packet(s, 1, &err_packet(1193, Some("HY000"), &message));
        };
        assert_eq!(
            read_first_try(s),
            format!("{GET_LOCK_RAN}, @@global.read_only, @@global.super_read_only")
        );
        unknown(s, "super_read_only");
        assert_eq!(
            read_first_try(s),
            format!("{GET_LOCK_RAN}, @@global.read_only")
        );
        unknown(s, "read_only");
        assert_eq!(read_first_try(s), GET_LOCK_RAN);
        send_result_of(s, 1, caps, 1, &[&row(&["1"])]);
        // Then nothing but the goodbye: the fallbacks took no lock.
        assert_eq!(hold(s), b"\x01\x00\x00\x00\x01");
    });
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "ran\n", "the command ran: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn scripted_server_binary_galera_node_with_wsrep_on_is_refused_and_the_command_not_run() {
    // What a MariaDB Galera node answers (a real one: tests/galera.rs).
    let (code, stdout, stderr) = run_sera_with(&["--name", "ran", "0", "echo", "ran"], |s| {
        let caps = greet_as(s, "5.5.5-10.11.6-MariaDB-log");
        assert_eq!(
            read_first_try(s),
            format!("{GET_LOCK_RAN}, @@global.read_only, @@global.wsrep_on")
        );
        send_result_of(s, 1, caps, 3, &[&row(&["1", "0", "1"])]);
        assert_eq!(hold(s), b"\x01\x00\x00\x00\x01", "the session ends");
    });
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(
        line.starts_with("sera: cannot take the lock: the server 127.0.0.1:")
            && line.contains("Galera")
            && line.contains("wsrep_on=ON"),
        "{line}"
    );
    assert!(stderr.contains("--lock-table"), "{stderr}");
    assert_eq!(stdout, "", "the command did not run");
}

#[test]
fn scripted_server_binary_mysql_with_super_read_only_is_refused() {
    // MySQL's super_read_only, which MariaDB lacks (its read_only is tested
    // against a real server in tests/run_once.rs).
    let (code, stdout, stderr) = run_sera_with(&["--name", "ran", "0", "echo", "ran"], |s| {
        let caps = greet_as(s, "8.0.36");
        read_first_try(s);
        send_result_of(s, 1, caps, 3, &[&row(&["0", "0", "1"])]);
        hold(s);
    });
    let line = assert_connect_failure(code, &stdout, &stderr);
    assert!(line.contains("is read-only (super_read_only=ON)"), "{line}");
    assert!(stderr.contains("allow_read_only"), "{stderr}");
}
