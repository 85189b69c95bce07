//! The behaviour tests' shared parts: the one in-process cluster and seed helper from the test
//! kit (`crates/needle-testkit`), and the linearizability checker.
#![allow(dead_code)]

pub mod linearizability;

#[allow(unused_imports)]
pub use needle_testkit::cluster::*;
#[allow(unused_imports)] // Not every test binary is random.
pub use needle_testkit::seed;
