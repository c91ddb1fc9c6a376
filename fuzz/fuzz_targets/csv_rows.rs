//! libFuzzer target: the CSV → message path of the upload service against the csv crate (the
//! property is in `services/upload/tests/roundtrip/mod.rs`, shared with the regression test
//! that replays the inputs found here).

#![no_main]

#[path = "../../services/upload/tests/roundtrip/mod.rs"]
mod roundtrip;

libfuzzer_sys::fuzz_target!(|data: &[u8]| roundtrip::check_input(data));
