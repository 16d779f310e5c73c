//! The server's RSA key, for caching_sha2_password full auth over plain TCP.
//!
//! A MySQL 8 server that has no cached hash for the account asks for the
//! password itself; over plain TCP it is sent RSA-encrypted with a key the
//! server hands over. That key comes from a peer sera does not yet trust, so
//! it is read here with bounds on everything: mysql_common's own PEM parser
//! would pull a regex engine into the binary, and its DER parser panics on a
//! garbled key.

/// The NUL-terminated password XORed with the nonce, RSA-OAEP encrypted with
/// the server's key (`pem`, as the server sent it). The error says what is
/// wrong with the key, for the caller to report.
pub fn encrypt_password(password: &[u8], nonce: &[u8], pem: &[u8]) -> Result<Vec<u8>, String> {
    use mysql_common::crypto::der::PubKeyFileType;
    use mysql_common::crypto::rsa::{GetRandom, Pkcs1OaepPadding, PublicKey};
    use mysql_common::num_bigint::BigUint;

    if nonce.is_empty() {
        return Err("the server sent an empty auth challenge".into());
    }
    let bad_key = || "the server's public key is unreadable".to_string();
    let text = std::str::from_utf8(pem).map_err(|_| bad_key())?;
    let kind = if text.contains("BEGIN RSA PUBLIC KEY") {
        PubKeyFileType::Pkcs1
    } else if text.contains("BEGIN PUBLIC KEY") {
        PubKeyFileType::Pkcs8
    } else {
        return Err(bad_key());
    };
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = base64_decode(body.trim()).ok_or_else(bad_key)?;
    let (modulus, exponent) = rsa_key_from_der(&der, kind).ok_or_else(bad_key)?;
    // Real keys have e = 65537 and at most 16384 bits. Without bounds a
    // hostile server makes the encryption below run for minutes or hours (a
    // 16384-bit exponent alone costs seconds), far past any timeout.
    let significant = |n: &[u8]| n.len() - n.iter().take_while(|&&b| b == 0).count();
    if significant(modulus) > MAX_RSA_MODULUS_BYTES
        || significant(exponent) > MAX_RSA_EXPONENT_BYTES
    {
        return Err(format!(
            "the server's public key is larger than sera accepts (over {} bits, \
             or an exponent over {} bits)",
            MAX_RSA_MODULUS_BYTES * 8,
            MAX_RSA_EXPONENT_BYTES * 8
        ));
    }
    let key = PublicKey::new(
        BigUint::from_bytes_be(modulus),
        BigUint::from_bytes_be(exponent),
    );
    let mixed: Vec<u8> = password
        .iter()
        .zip(nonce.iter().cycle())
        .map(|(p, n)| p ^ n)
        .collect();
    // OAEP with SHA-1 carries at most key size - 42 bytes.
    if mixed.len() + 42 > key.num_octets() {
        return Err("the password is too long for the server's RSA key".into());
    }
    key.encrypt_block(&mixed, Pkcs1OaepPadding::new(GetRandom))
        .map_err(|e| format!("RSA encryption of the password failed: {e}"))
}

/// The largest RSA key sera encrypts with: 16384 bits, as OpenSSL allows.
const MAX_RSA_MODULUS_BYTES: usize = 2048;
/// The largest public exponent: 256 bits, the bound of FIPS 186-4. Servers
/// use 65537.
const MAX_RSA_EXPONENT_BYTES: usize = 32;

/// The modulus and exponent (big-endian bytes) of an RSA public key in DER:
/// PKCS#1 `SEQUENCE { INTEGER n, INTEGER e }`, or PKCS#8 `SEQUENCE {
/// SEQUENCE { algorithm }, BIT STRING { the PKCS#1 key } }`. None for anything
/// malformed: mysql_common's own parser indexes without checking and panics
/// on a truncated or garbled key (found by the client fuzz target).
fn rsa_key_from_der(
    der: &[u8],
    kind: mysql_common::crypto::der::PubKeyFileType,
) -> Option<(&[u8], &[u8])> {
    use mysql_common::crypto::der::PubKeyFileType;

    let pkcs1 = match kind {
        PubKeyFileType::Pkcs1 => der,
        PubKeyFileType::Pkcs8 => {
            let (info, _) = der_item(der, 0x30)?;
            let (_algorithm, rest) = der_item(info, 0x30)?;
            let (bits, _) = der_item(rest, 0x03)?;
            match bits.split_first()? {
                (0, key) => key,
                _ => return None,
            }
        }
    };
    let (fields, _) = der_item(pkcs1, 0x30)?;
    let (modulus, rest) = der_item(fields, 0x02)?;
    let (exponent, _) = der_item(rest, 0x02)?;
    Some((modulus, exponent))
}

/// The DER item at the start of `der`, if it has tag `tag`: its contents and
/// what follows it.
fn der_item(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length's bytes. Zero (BER's
        // indefinite length) is not DER, and no key needs more than four.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| len << 8 | usize::from(b));
        (len, rest)
    };
    rest.split_at_checked(len)
}

/// Standard base64 with padding, whitespace ignored.
///
/// The `base64` crate is in the tree (through mysql_common) but not in the
/// binary, and decoding this one key with it would put it there: it made the
/// small static build 4 KiB larger (631416 to 635512 bytes, measured), more
/// than these lines are worth. The tests check this against the crate.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use std::time::{Duration, Instant};

    #[test]
    fn base64_decodes_standard_text() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a*b").is_none());
        // What the crate encodes, every length and byte value.
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..bytes.len() {
            let text = STANDARD.encode(&bytes[len..]);
            assert_eq!(base64_decode(&text).unwrap(), &bytes[len..], "{text}");
        }
    }

    /// Public keys made with openssl (genrsa, then rsa -pubout and
    /// rsa -RSAPublicKey_out).
    const PKCS8_2048: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAy2hyA5XiV390erdgwneR
F7Ksvj7c+pByeaIkdLI9NlfuzSgpJu7+/fztz9Ao0LRylph43acBI9kR2EbY4v01
q87V39dAW8JRHmu4n0v8iZ8enQKAPu0FBkIUFRgRHOf/lwXOptQTZszw3gGDQ8xN
yDWwl6DQzEa4wl2cBk2jFaLdrLmNUp73JkbmY8mN176nxgq+/THFRMD65prMCqqt
efKCTeacB8oRnPa7q5poiWWM3sQyZhum1HoeX5vTwBHhzIvmsAOmQHDIZhuU5bCn
s2BWSkIXkJXWv4Yjo9/P/giVlaY11FyLgIrFgMU2aoVw/s33qPiS7VrMGOU3Zy8+
xwIDAQAB
-----END PUBLIC KEY-----
";
    const PKCS1_1024: &str = "-----BEGIN RSA PUBLIC KEY-----
MIGJAoGBAOBF0nPjbxtg9dWPsVEOmuTPEoGbWONUeStIK1Hiz2c8JOg5E/mNo1jE
uEoogcwXHbGn5UkJhNK9agdxtKTGnPpL/3iq3fJmpaISFpLFc5/Yhy0U8Wgbn1b6
ZoqXs0jrkLuu20rWyZZoPnopwKR9Rbxst8M6sZPF3YtUQ9Il1R7TAgMBAAE=
-----END RSA PUBLIC KEY-----
";
    const NONCE: &[u8] = b"abcdefghijklmnopqrst";

    fn der_of(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&body).unwrap()
    }

    #[test]
    fn password_encrypted_with_the_servers_key() {
        let out = encrypt_password(b"pw\0", NONCE, PKCS8_2048.as_bytes()).unwrap();
        assert_eq!(out.len(), 256);
        let out = encrypt_password(b"pw\0", NONCE, PKCS1_1024.as_bytes()).unwrap();
        assert_eq!(out.len(), 128);
        let der = der_of(PKCS1_1024);
        let pkcs1 = mysql_common::crypto::der::PubKeyFileType::Pkcs1;
        let (modulus, exponent) = rsa_key_from_der(&der, pkcs1).unwrap();
        assert_eq!((modulus.len(), exponent), (129, &[1u8, 0, 1][..]));
    }

    /// Found by the client fuzz target: a key whose DER lengths overrun the
    /// data made mysql_common's DER parser index out of bounds (a panic, so
    /// an abort in release builds). It must be an error naming the key.
    #[test]
    fn garbled_server_key_is_an_error_not_a_panic() {
        use mysql_common::crypto::der::PubKeyFileType::{Pkcs1, Pkcs8};

        // The fuzzer's input: one base64 character of a good key replaced.
        let garbled = PKCS8_2048.replacen("MIIBIjAN", "MIIB\tjAN", 1);
        let e = encrypt_password(b"pw\0", NONCE, garbled.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "the server's public key is unreadable");
        // Every truncation of a good key.
        for (pem, kind) in [(PKCS8_2048, Pkcs8), (PKCS1_1024, Pkcs1)] {
            let der = der_of(pem);
            assert!(rsa_key_from_der(&der, kind).is_some());
            for n in 0..der.len() {
                assert!(rsa_key_from_der(&der[..n], kind).is_none(), "{n}");
            }
        }
        // Lengths: indefinite, more than four bytes, beyond the data.
        assert!(der_item(&[0x30, 0x80, 0, 0], 0x30).is_none());
        assert!(der_item(&[0x30, 0x85, 0, 0, 0, 0, 1, 0], 0x30).is_none());
        assert!(der_item(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0], 0x30).is_none());
        assert!(der_item(&[0x30, 0x81], 0x30).is_none());
        assert_eq!(
            der_item(&[0x30, 0x81, 1, 7, 8], 0x30),
            Some((&[7u8][..], &[8u8][..]))
        );
        // A BIT STRING with unused bits, or empty, is no key.
        assert!(
            rsa_key_from_der(&[0x30, 0x06, 0x30, 0x00, 0x03, 0x02, 0x01, 0x00], Pkcs8).is_none()
        );
        assert!(rsa_key_from_der(&[0x30, 0x04, 0x30, 0x00, 0x03, 0x00], Pkcs8).is_none());
    }

    /// Found by review, confirmed with the client fuzz target: a server key
    /// of 2048 bytes with an exponent as long made the client spend 48 s of
    /// CPU in the fuzz build (a reply may hold 1 MiB: hours). Keys beyond
    /// 16384 bits or exponents beyond 256 bits are refused before any math.
    #[test]
    fn oversized_server_key_is_refused_quickly() {
        fn der(tag: u8, body: &[u8]) -> Vec<u8> {
            let len = body.len() as u32;
            let mut out = vec![tag, 0x84];
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(body);
            out
        }
        fn pem(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
            let mut fields = der(0x02, modulus);
            fields.extend(der(0x02, exponent));
            let key = der(0x30, &fields);
            let mut text = b"-----BEGIN RSA PUBLIC KEY-----\n".to_vec();
            text.extend(STANDARD.encode(&key).into_bytes());
            text.extend_from_slice(b"\n-----END RSA PUBLIC KEY-----\n");
            text
        }
        let started = Instant::now();
        let big = |len: usize| {
            let mut n = vec![0xc3; len];
            n[len - 1] = 1;
            n
        };
        let long_exponent = pem(&big(2048), &[0xff; 2048]);
        let e = encrypt_password(b"pw\0", NONCE, &long_exponent).unwrap_err();
        assert!(e.to_string().contains("larger than sera accepts"), "{e}");
        let long_modulus = pem(&big(2049), &[1, 0, 1]);
        assert!(encrypt_password(b"pw\0", NONCE, &long_modulus).is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
        // At the limits (leading zeros do not count), it still works.
        let mut modulus = vec![0];
        modulus.extend(big(2048));
        let out = encrypt_password(b"pw\0", NONCE, &pem(&modulus, &[1, 0, 1])).unwrap();
        assert_eq!(out.len(), 2048);
        let mut exponent = vec![0; 4];
        exponent.extend([0xff; 32]);
        let out = encrypt_password(b"pw\0", NONCE, &pem(&big(256), &exponent)).unwrap();
        assert_eq!(out.len(), 256);
    }
}
