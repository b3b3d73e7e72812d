//! A fuzzed probe task file: no panic; an error names the file.
#![no_main]

use isoclr_core::probe::task::ProbeTask;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("/fuzz/task.toml");
    if let Err(e) = ProbeTask::from_toml_str(text, path) {
        assert!(e.to_string().contains("task.toml"), "{e}");
    }
});
