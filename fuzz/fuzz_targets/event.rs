//! Fuzz target: event parsing (intake). The checks live in `postee::fuzzing::event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postee::fuzzing::event(data));
