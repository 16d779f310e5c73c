//! sera: run a command only while holding a MySQL/MariaDB `GET_LOCK()`.
//!
//! `src/main.rs` tells the story of a run; each module here is one mechanism.

pub mod args;
pub mod child;
pub mod config;
pub mod dsn;
pub mod duration;
pub mod failure;
mod json_error;
pub mod keeper;
pub mod lock;
pub mod md5;
pub mod mysql;
pub mod plan;
pub mod report;
pub mod room;
mod server_key;
pub mod settings;
pub mod sql;
pub mod status;
pub mod syslog;
pub mod table;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tree;
pub mod version;
pub mod watch;
