//! `prep` with a fuzzed homology.tsv beside valid companions: no panic, no hang; an error names a file.
#![no_main]

mod prep_input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| prep_input::run("homology.tsv", data));
