//! `lacnet-proto`: the code generated from `proto/`, and the conversions
//! between its shared types and lacnet-core's ([`convert`]). Every generated
//! client and server uses [`codec::LacnetCodec`].
//!
//! `proto/` is the only contract between lacnet processes; every service and
//! the CLI speak it through these modules.

pub mod codec;
pub mod convert;
pub mod status;

/// Types shared by every API: records' vocabulary, periods, policy, submissions.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod common {
    pub mod v1 {
        tonic::include_proto!("lacnet.common.v1");
    }
}

/// The site agent API that council systems call.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod site {
    pub mod v1 {
        tonic::include_proto!("lacnet.site.v1");
    }
}

/// The hub's submission and report APIs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod hub {
    pub mod v1 {
        tonic::include_proto!("lacnet.hub.v1");
    }
}

/// The standard gRPC rich-error messages lacnet sends (see [`status`]).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// Encoded `FileDescriptorSet` of every lacnet proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lacnet_descriptor.bin"));
