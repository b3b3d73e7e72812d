//! A fuzzed transcript table (probe and `prep --table` input): no panic; an error names the file.
#![no_main]

use isoclr_core::data::table::TranscriptTable;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzzed.tsv");
    if let Err(e) = TranscriptTable::from_reader(data, b'\t', path, &["y"]) {
        assert!(e.to_string().contains("fuzzed.tsv"), "{e}");
    }
});
