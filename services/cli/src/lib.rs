//! `lacnet-cli`: the `lacnet` command for operators and analysts of the LAC
//! Network.
//!
//! ```text
//! case system CSV ──lacnet import (mTLS, council cert)──▶ site agent ──▶ hub ──lacnet report (mTLS, analyst cert)──▶ table/CSV/JSON/HTML
//! lacnet keygen, lacnet certs: keys and a development PKI;  lacnet demo: the whole network in one process
//! ```
//!
//! Modules are named after the command they serve. `main.rs` only parses
//! arguments and calls them.

pub mod bench;
pub mod certs;
pub mod client;
pub mod config;
pub mod csv_format;
pub mod demo;
pub mod error;
pub mod generate;
pub mod import;
pub mod keygen;
pub mod mapping;
pub mod report;
pub mod site_ops;

pub use error::CliError;
