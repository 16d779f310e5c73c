#!/usr/bin/env python3
"""Write the seed inputs of the fuzz targets into seeds/{dsn,config,client}/.

Run from anywhere: `python3 fuzz/seeds/make_seeds.py`. The files are small and
committed; this script says how each was made, and remakes them.

A client seed is one byte of DSN flags (see fuzz_targets/client.rs) and the
server's replies, separated by b"|next|": the peer sends each reply when the
client has answered the previous one.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"|next|"

# DSN flags of the client target.
SESSION_VAR, NO_NATIVE, CLEARTEXT, NO_PASSWORD, TCP, DATABASE, TLS, TLS_PREFERRED = (1 << i for i in range(8))

# Capability flags.
LONG_PASSWORD = 0x1
LONG_FLAG = 0x4
CONNECT_WITH_DB = 0x8
PROTOCOL_41 = 0x200
TRANSACTIONS = 0x2000
SECURE_CONNECTION = 0x8000
PLUGIN_AUTH = 0x80000
CONNECT_ATTRS = 0x100000
PLUGIN_AUTH_LENENC = 0x200000
DEPRECATE_EOF = 0x1000000
SSL = 0x800
CAPS = (LONG_PASSWORD | LONG_FLAG | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS
        | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_ATTRS | PLUGIN_AUTH_LENENC)

NONCE = b"abcdefghijklmnopqrst"

# Public keys only (made with openssl genrsa / rsa -pubout / -RSAPublicKey_out).
# Small keys: the same code paths as 2048 bits, and the fuzzer runs faster.
PKCS8_512 = b"""-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAO40eK5zMPdte07f1OVqzL3+WgTBVU17
eda5QzNYFX5oeuO2S8f2UA9XDKCLbFAsB+lyJzKT1NMIGsQYj+GQhukCAwEAAQ==
-----END PUBLIC KEY-----
"""
PKCS1_640 = b"""-----BEGIN RSA PUBLIC KEY-----
MFgCUQDc4NW192nhWbpXNSsJTgux/A+/AEhxmAmHHv5U+13Kvk9BeNb8s13DvfEp
IvOv/ubX4LfbWzlDjusSRCF7xrWRgf5qTYmyEWHoGHmXEs8GCwIDAQAB
-----END RSA PUBLIC KEY-----
"""


def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def lenenc_str(b):
    assert len(b) < 251
    return bytes([len(b)]) + b


def greeting(version=b"8.0.36", caps=CAPS | DEPRECATE_EOF, plugin=b"mysql_native_password"):
    return packet(0, b"\x0a" + version + b"\0" + struct.pack("<I", 42) + NONCE[:8] + b"\0"
                  + struct.pack("<H", caps & 0xFFFF) + b"\xff" + struct.pack("<H", 2)
                  + struct.pack("<H", caps >> 16) + bytes([21]) + b"\0" * 10
                  + NONCE[8:] + b"\0" + plugin + b"\0")


def ok(seq):
    return packet(seq, b"\x00\x00\x00\x02\x00\x00\x00")


def err(seq, code, message, state=b"HY000"):
    return packet(seq, b"\xff" + struct.pack("<H", code) + (b"#" + state if state else b"") + message)


def column(seq, name):
    return packet(seq, lenenc_str(b"def") + b"\0\0\0" + lenenc_str(name) + b"\0"
                  + b"\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00")


def result(value, deprecate_eof=True, columns=1):
    """A text result set of one row of `columns` times `value` (None: NULL)."""
    seq = 1
    out = packet(seq, bytes([columns]))
    for i in range(columns):
        seq += 1
        out += column(seq, b"c%d" % i)
    if not deprecate_eof:
        seq += 1
        out += packet(seq, b"\xfe\x00\x00\x02\x00")
    seq += 1
    cell = b"\xfb" if value is None else lenenc_str(value)
    out += packet(seq, cell * columns)
    seq += 1
    out += packet(seq, b"\xfe\x00\x00\x02\x00\x00\x00" if deprecate_eof else b"\xfe\x00\x00\x02\x00")
    return out


def der(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def huge_exponent_key():
    """A PKCS#1 key of 4096 bits whose exponent is as long: sera refuses it
    (RSA with it would cost seconds of CPU)."""
    import base64
    modulus = b"\x00" + b"\xc3" * 511 + b"\x01"
    exponent = b"\x00" + b"\xff" * 512
    key = der(0x30, der(0x02, modulus) + der(0x02, exponent))
    return (b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(key)
            + b"-----END RSA PUBLIC KEY-----\n")


def client(flags, *replies):
    return bytes([flags]) + SEP.join(replies)


def after_auth(deprecate_eof=True, lock=b"1"):
    """The check query, GET_LOCK and a SET (answered by OK), all answered."""
    return [result(b"1", deprecate_eof), result(lock, deprecate_eof), ok(1)]


CLIENT = {
    "native_mysql8": client(0, greeting(), ok(2), *after_auth()),
    "native_mariadb_eof": client(SESSION_VAR | DATABASE,
                                 greeting(b"5.5.5-10.11.6-MariaDB", CAPS), ok(2), ok(1),
                                 *after_auth(False)),
    "lock_null_and_two_columns": client(0, greeting(), ok(2), result(b"7", columns=2),
                                        result(None), ok(1)),
    "sha2_fast": client(0, greeting(plugin=b"caching_sha2_password"),
                        packet(2, b"\x01\x03") + ok(3), *after_auth()),
    "sha2_fast_split": client(NO_PASSWORD, greeting(plugin=b"caching_sha2_password"),
                              packet(2, b"\x01\x03"), ok(3), *after_auth()),
    "sha2_full_unix": client(0, greeting(plugin=b"caching_sha2_password"),
                             packet(2, b"\x01\x04"), ok(4), *after_auth()),
    "sha2_full_tcp_pkcs8_512": client(TCP, greeting(plugin=b"caching_sha2_password"),
                                  packet(2, b"\x01\x04"), packet(4, b"\x01" + PKCS8_512),
                                  ok(6), *after_auth()),
    "sha2_full_tcp_pkcs1_640": client(TCP | SESSION_VAR, greeting(plugin=b"caching_sha2_password"),
                                  packet(2, b"\x01\x04"), packet(4, b"\x01" + PKCS1_640),
                                  ok(6), ok(1), *after_auth()),
    "sha2_full_tcp_key_refused": client(TCP, greeting(plugin=b"caching_sha2_password"),
                                        packet(2, b"\x01\x04"),
                                        err(4, 1045, b"Access denied")),
    "switch_to_sha2": client(0, greeting(), packet(2, b"\xfecaching_sha2_password\0" + NONCE + b"\0"),
                             packet(4, b"\x01\x03") + ok(5), *after_auth()),
    "switch_to_native": client(0, greeting(plugin=b"caching_sha2_password"),
                               packet(2, b"\xfemysql_native_password\0" + NONCE + b"\0"),
                               ok(4), *after_auth()),
    "switch_to_clear": client(CLEARTEXT, greeting(),
                              packet(2, b"\xfemysql_clear_password\0"), ok(4), *after_auth()),
    "switch_to_ed25519": client(0, greeting(b"5.5.5-11.4.2-MariaDB", CAPS),
                                packet(2, b"\xfeclient_ed25519\0" + NONCE + NONCE[:12]),
                                ok(4), *after_auth(False)),
    "sha2_full_tcp_huge_exponent": client(TCP, greeting(plugin=b"caching_sha2_password"),
                                          packet(2, b"\x01\x04"),
                                          packet(4, b"\x01" + huge_exponent_key()), ok(6)),
    "switch_to_unknown": client(0, greeting(), packet(2, b"\xfeauth_gssapi_client\0x\0")),
    "switch_old_password": client(0, greeting(), packet(2, b"\xfe")),
    "native_refused": client(NO_NATIVE, greeting()),
    "tls_not_offered": client(TLS | TCP, greeting()),
    "tls_handshake": client(TLS | TCP, greeting(caps=CAPS | DEPRECATE_EOF | SSL),
                            b"\x15\x03\x03\x00\x02\x02\x28"),
    "tls_preferred_not_offered": client(TLS_PREFERRED | TCP, greeting(), ok(2), *after_auth()),
    "access_denied": client(0, greeting(), err(2, 1045, b"Access denied for user 'sera'@'localhost'", b"28000")),
    "unknown_database": client(DATABASE, greeting(), err(2, 1049, b"Unknown database 'locks'", b"42000")),
    "too_many_connections": client(0, err(0, 1040, b"Too many connections", None)),
    "galera_lock_error": client(0, greeting(), ok(2), result(b"1"),
                                err(1, 1235, b"This version of MariaDB doesn't yet support 'GET_LOCK in cluster (WSREP_ON=ON)'", b"42000")),
    "bad_lock_name": client(0, greeting(), ok(2), result(b"1"),
                            err(1, 3057, b"Incorrect user-level lock name ''.", b"42000")),
    "query_ok_no_result": client(0, greeting(), ok(2), ok(1), ok(1), ok(1)),
    "old_protocol": client(0, greeting(caps=CAPS & ~PROTOCOL_41)),
    "http": client(0, b"HTTP/1.1 400 Bad Request\r\n\r\n"),
    "huge_header": client(0, b"\xff\xff\xff\x00"),
    "out_of_order": client(0, greeting(), ok(5)),
}

DSN = {
    "full": b"sera:Zq9#pw@tcp(db1.example.com:3307)/locks?timeout=1s&readTimeout=2.5s&writeTimeout=500ms",
    "unix": b"u:p@unix(/var/run/mysqld/mysqld.sock)/db?allowCleartextPasswords=true",
    "ipv6": b"u@tcp([fe80::1%25eth0]:3307)/d%2Fb?tls=skip-verify&allowNativePasswords=0",
    "vars": b"u:a:b@c@tcp(h)/?wait_timeout=60&sql_mode='ANSI'&x=%27a+b%27&charset=utf8mb4",
    "empty": b"",
    "slash": b"/",
    "duration": b"1h2m3.5s4ms5us6ns",
    "bad_port": b"u:pw@tcp(h:99999)/",
}

CONFIG = {
    "minimal": b'{"server": "sera:pw@tcp(db:3306)/"}',
    "full": b'{"server": "u@unix(/run/mysqld.sock)/?timeout=2s", "syslog": true, "verbose": false,'
            b' "check_interval": "5s", "on_lost": "term", "kill_after": "10s"}',
    "nulls": b'{"server": "/", "syslog": null, "on_lost": null, "kill_after": null}',
    "unknown_key": b'{"server": "/", "sever": "x", "\\u00e9": [1, 2.5e3, {"a": []}]}',
    "wrong_types": b'{"server": 5, "syslog": "yes"}',
    "not_object": b'["server"]',
}

for name, seeds in (("client", CLIENT), ("dsn", DSN), ("config", CONFIG)):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    for seed, data in seeds.items():
        with open(os.path.join(folder, seed), "wb") as f:
            f.write(data)
