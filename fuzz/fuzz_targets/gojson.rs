//! Fuzz target: Go-JSON serialization. The checks live in `postee::fuzzing::gojson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postee::fuzzing::gojson(data));
