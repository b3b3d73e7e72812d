//! Embeds an rpath to libtorch so `isoclr` runs without LD_LIBRARY_PATH, and
//! compiles the small C++ shim (src/device/shim.cpp: bf16 autocast, CUDA memory statistics, pinned
//! uploads, the fused AdamW kernel) against the same libtorch.
//! LIBTORCH is set by .cargo/config.toml to the venv that scripts/setup.sh makes.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=src/device/shim.cpp");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:warning=LIBTORCH is not set: run scripts/setup.sh first");
        return;
    };
    let root = Path::new(&libtorch);
    let lib = root.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=ISOCLR_LIBTORCH_LIB={}", lib.display());
    cc::Build::new()
        .cpp(true)
        .file("src/device/shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // PyTorch's wheels are built with the C++11 ABI since 2.6.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is inline OpenMP in libtorch's headers: without -fopenmp it runs on one thread.
        .flag("-fopenmp")
        .warnings(false)
        .compile("isoclr_autocast");
    // The OpenMP runtime libtorch itself loads (the libgomp.so.1 beside it), not a second one.
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=gomp");
}
