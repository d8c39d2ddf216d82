//! Fuzz target: journal record reading on torn and corrupted segments. The checks live in `postee::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postee::fuzzing::journal(data));
