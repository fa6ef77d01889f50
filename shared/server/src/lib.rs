//! `lacnet-server`: the plumbing every lacnet service shares, so the services
//! themselves hold only their domain.
//!
//! - [`grpc`]: the one gRPC-over-mTLS `serve` the hub and the agent share.
//! - [`flags`]: the server flags they share, with defaults written once.
//! - [`telemetry`]: `tracing` with an `EnvFilter`; human output on a terminal,
//!   JSON lines in Kubernetes.
//! - [`metrics`]: Prometheus metrics through `prometheus-client`. Label
//!   values are enums of closed sets, so data can never become a label.
//! - [`admin`]: the admin port (`/metrics`, `/healthz`), separate from gRPC.
//! - [`process`]: process metrics (resident memory, CPU time, open files,
//!   start time) from `/proc`, collected at every `/metrics` scrape.
//! - [`reflection`]: gRPC reflection v1 and v1alpha, listing only the
//!   services a server really serves.
//! - [`shutdown`]: a `CancellationToken` fired by SIGTERM or Ctrl-C.
//! - [`drain`]: shutdown waits for its users: `serve` returns only once every
//!   connection task has dropped the service state it held.
//! - [`run`]: the one bootstrap, [`run_service`]: admin port, control
//!   socket, scheduled backups, the service's `serve`, and one shutdown path.
//! - [`backups`]: the `backup` and `restore` commands and scheduled backups.

#![warn(missing_docs)]

pub mod admin;
pub mod backups;
pub mod drain;
pub mod flags;
pub mod grpc;
pub mod metrics;
pub mod process;
pub mod reflection;
pub mod run;
pub mod shutdown;
pub mod telemetry;

pub use run::{RunError, ServiceParts, bind_nodelay, run_service};
pub use tokio_util::sync::CancellationToken;
