//! `lacnet-e2e`: the whole-network tests (`tests/tests/`), the fault suite
//! and the scale benches. Their harness is `lacnet-testkit`
//! (`tests/testkit`, module `network`), which every test suite shares.
