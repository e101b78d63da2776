//! See mod.rs.

#[allow(unused_imports)]
use super::*;
