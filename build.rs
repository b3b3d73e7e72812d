//! Embeds an rpath to libtorch so `isoclr` runs without LD_LIBRARY_PATH (scripts/setup.sh sets LIBTORCH).

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-env=ISOCLR_LIBTORCH_LIB={}", lib.display());
    }
}
