//! Generates the HStream gRPC client and server from `proto/hstream.proto`
//! with protox (pure Rust, no `protoc` needed) and tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/hstream.proto");
    let fds = protox::compile(["proto/hstream.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs the server does not implement answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Batch payloads as `bytes::Bytes`: zero-copy decode, cheap clones on retry.
        .bytes(".hstream.server.BatchedRecord.payload")
        .compile_fds(fds)?;
    Ok(())
}
