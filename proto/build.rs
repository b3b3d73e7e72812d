//! Generates the gRPC code of `isoclr.proto` with tonic-prost-build. protoc comes from `PROTOC` when set,
//! else from the `protoc-bin-vendored` crate, so a build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=isoclr.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; the variable is read by prost-build below.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    tonic_prost_build::configure()
        .bytes(".isoclr.v1.View")
        .compile_protos(&["isoclr.proto"], &["."])?;
    Ok(())
}
