//! Fuzz target: the simple route-condition parser against the Rego interpreter. The checks live in `postee::fuzzing::simple_condition`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| postee::fuzzing::simple_condition(data));
