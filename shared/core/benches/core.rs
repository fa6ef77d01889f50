//! Benchmarks for lacnet-core (TODO(helper)).
fn main() {}
