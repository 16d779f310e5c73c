//! Integration-test support, one job per file:
//!
//! - `mariadb`: private MariaDB servers ([`Server`], [`shared_dsn`]), with the
//!   options in `mariadb.cnf` and the setup in `setup.sql` that
//!   `scripts/mariadb-throwaway.sh` reads too;
//! - `galera`: a private three-node Galera cluster ([`Cluster`]), its nodes
//!   made like `mariadb`'s servers;
//! - `netns`: a far host in network namespaces, whose wire a test can cut
//!   ([`FarHost`]);
//! - `relay`: a TCP relay that can cut or stall the link, or send each new
//!   connection to the first live node of a list ([`Relay`]);
//! - `sera`: running the sera binary as a user would ([`sera::Setup`]);
//! - `tempdir`, `port`, `wait`: [`TempDir`], [`ClosedPort`], [`wait_until`]
//!   with its one deadline, [`LONG`].
//!
//! Every test binary compiles this module for itself and uses part of it, so
//! what one binary leaves unused would warn there. Each public item is
//! therefore marked `#[allow(dead_code)]` where it is defined, and the
//! re-exports below `#[allow(unused_imports)]`; private helpers are not, so
//! one that nothing uses still warns.

mod galera;
mod mariadb;
pub mod netns;
mod port;
mod relay;
pub mod sera;
mod tempdir;
mod wait;

#[allow(unused_imports)]
pub use self::{
    galera::{Cluster, Node},
    mariadb::{shared_dsn, Server},
    netns::FarHost,
    port::ClosedPort,
    relay::Relay,
    tempdir::TempDir,
    wait::{wait_until, LONG},
};
