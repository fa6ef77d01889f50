//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed,
//! and writes the descriptor set that the servers offer through reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "lacnet/common/v1/common.proto",
        "lacnet/site/v1/site_agent.proto",
        "lacnet/hub/v1/submissions.proto",
        "lacnet/hub/v1/reports.proto",
        "google/rpc/status.proto",
    ];
    let fds = protox::compile(files, [&root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("lacnet_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        // Our codec: a request that does not decode is INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::LacnetCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    Ok(())
}
