//! `lacnet-cli`: the `lacnet` command for operators and analysts of the LAC
//! Network.
//!
//! ```text
//! case system CSV ──lacnet import (mTLS, council cert)──▶ site agent ──▶ hub ──lacnet report (mTLS, analyst cert)──▶ table/CSV/JSON/HTML
//! lacnet keygen, lacnet certs: keys and a development PKI;  lacnet demo: the whole network in one process
//! ```
//!
//! Modules are named after the command they serve. `main.rs` only parses
//! arguments and calls them. Only `demo` and `bench` run the servers
//! (`lacnet-hub`, `lacnet-site-agent`) in this process; they are behind the
//! default `demo` feature, and nothing else links a server. Formats shared
//! with the servers (the key file, periods, records) live in `lacnet-core`.
//! No CLI code reads the wall clock itself: `main.rs` passes a
//! `lacnet_clock::Clock` down, so a test can set the date (the servers that
//! `demo` runs keep their own clocks).

#[cfg(feature = "demo")]
pub mod bench;
pub mod certs;
pub mod client;
pub mod columns;
pub mod config;
pub mod csv_format;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod generate;
pub mod import;
pub mod keygen;
pub mod mapping;
pub mod report;
pub mod site_ops;

pub use error::CliError;

/// How a command ended when it did not fail; `main` turns each into its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was done (exit 0).
    Done,
    /// An import finished, but some rows were rejected (exit 3).
    RowsRejected,
    /// `lacnet erase` found no record with the id it was given (exit 4).
    NotFound,
    /// A report found no published figure for what was asked (exit 5).
    NothingPublished,
}
