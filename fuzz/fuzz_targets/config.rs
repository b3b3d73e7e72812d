//! A fuzzed run configuration file: no panic; an error names the file or the key.
#![no_main]

use isoclr_core::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("run.toml");
    std::fs::write(&path, data).expect("writable temporary directory");
    if let Err(e) = Config::load(Some(&path), &[]) {
        let e = e.to_string();
        assert!(e.contains("run.toml") || e.contains("configuration key"), "{e}");
    }
});
