//! The config parser: `/etc/sera.json`, JSON with a DSN inside.
//!
//! `sera::config::parse` is everything `load` does after reading the file
//! (size, emptiness and UTF-8 are checked while reading). The path named here
//! does not exist, so the permission check finds nothing to warn about.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sera::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/sera-fuzz.json");
    match config::parse(text, path) {
        Ok(config) => {
            assert_eq!(config.path, path);
            // What main prints for -v and in errors: must not panic either.
            let _ = config.server.address.to_string();
            let _ = config.server.session_sql();
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
