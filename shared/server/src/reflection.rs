//! gRPC server reflection, v1 and v1alpha, listing only what a server serves.
//!
//! Standard tools (grpcurl, grpcio's reflection client, Postman) discover a
//! server's API through reflection; older ones still speak only v1alpha, so
//! both are offered. Each server names its own services: with every
//! descriptor of `lacnet-proto` advertised, the hub listed the site agent's
//! service and the agent the hub's, and a tool then offered calls that could
//! only fail with UNIMPLEMENTED. `grpc.health.v1.Health` and the two
//! reflection services are listed too, since every lacnet server serves them.

use tonic::server::NamedService;
use tonic_reflection::server::v1::{ServerReflection as V1, ServerReflectionServer as V1Server};
use tonic_reflection::server::v1alpha::{
    ServerReflection as V1Alpha, ServerReflectionServer as V1AlphaServer,
};

/// Why the reflection services could not be built (a descriptor set that does not decode).
pub type ReflectionError = tonic_reflection::server::Error;

/// The health service's fully qualified name.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The services every lacnet server offers besides its own: health and reflection.
pub fn standard_services() -> [&'static str; 3] {
    [
        HEALTH_SERVICE,
        <V1Server<()> as NamedService>::NAME,
        <V1AlphaServer<()> as NamedService>::NAME,
    ]
}

/// Reflection v1 and v1alpha over `descriptors` (encoded `FileDescriptorSet`s
/// holding `own_services`), advertising exactly `own_services` plus
/// [`standard_services`].
pub fn services(
    descriptors: &[&'static [u8]],
    own_services: &[&str],
) -> Result<
    (
        V1Server<impl V1 + use<>>,
        V1AlphaServer<impl V1Alpha + use<>>,
    ),
    ReflectionError,
> {
    let names: Vec<&str> = own_services
        .iter()
        .copied()
        .chain(standard_services())
        .collect();
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both reflection packages, so each version can describe the other.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for set in descriptors {
            b = b.register_encoded_file_descriptor_set(set);
        }
        for name in &names {
            b = b.with_service_name(*name);
        }
        b
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_names_are_the_wire_names() {
        assert_eq!(
            standard_services(),
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        );
        assert!(services(&[], &["x.y.Z"]).is_ok());
        assert!(services(&[b"\xff\xff not a descriptor set"], &[]).is_err());
    }
}
