//! Replays the inputs `cargo fuzz run csv_rows` kept (its minimized corpus, in
//! `tests/fuzz-corpus/`) through the same property, so what the fuzzer explored stays checked
//! in every test run.

#![allow(clippy::unwrap_used)]

mod roundtrip;

#[test]
fn every_input_the_fuzzer_kept_still_round_trips() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| roundtrip::check_input(&data));
        assert!(r.is_ok(), "{} fails the round trip", path.display());
        n += 1;
    }
    assert!(n >= 10, "only {n} inputs in {}", dir.display());
}
