//! Benchmarks of the director's hot paths; the benchmarks themselves are under `[[bench]]`
//! targets (`cargo bench -p lvs-benches`). This library is intentionally empty.
#![forbid(unsafe_code)]
