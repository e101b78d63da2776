//! Reliability (issue 18): what happens when a cove process is killed at the worst moment, a
//! helper dies under running containers, the disk fills, many containers churn at once, or an
//! image, a container or another user attacks. One file per campaign; each test checks that the
//! database and the kernel (bridges, veths, mounts, processes) agree afterwards.

mod crash;
mod escapes;
mod killed;
mod load;
mod recovery;
mod users;

#[allow(unused_imports)]
use super::*;
