//! A dataset directory whose manifest.json is fuzzed: no panic, nothing read outside the directory; an
//! error names the dataset.
#![no_main]

use isoclr_core::data::Dataset;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("manifest.json"), data).expect("writable temporary directory");
    if let Err(e) = Dataset::open(dir.path()) {
        let e = e.to_string();
        assert!(e.contains(&*dir.path().to_string_lossy()), "{e}");
    }
});
