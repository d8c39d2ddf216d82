//! Fuzz target: the config reader on YAML text. The checks live in `postee::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postee::fuzzing::config(data));
