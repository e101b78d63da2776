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

/// One campaign's figures, for `bench/faults`: printed (`FAULTS campaign=… injected=N
/// survived=N leaked=N`) and, when `COVE_FAULTS_REPORT` names a file, appended to it as one
/// JSON line. `extra`: further figures of the campaign (name, value), printed the same way.
/// The test itself still asserts what must hold (leaked == 0): the report only counts.
#[allow(dead_code)]
pub fn report(campaign: &str, injected: usize, survived: usize, leaked: usize, extra: &[(&str, String)]) {
    let mut line = format!("FAULTS campaign={campaign} injected={injected} survived={survived} leaked={leaked}");
    let mut j =
        serde_json::json!({ "campaign": campaign, "injected": injected, "survived": survived, "leaked": leaked });
    for (k, v) in extra {
        line.push_str(&format!(" {k}={v}"));
        j[*k] = serde_json::Value::String(v.clone());
    }
    println!("{line}");
    if let Ok(path) = std::env::var("COVE_FAULTS_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{j}");
        }
    }
}

/// Whether the long form was asked for (`COVE_FAULTS_LONG=1`, set by `bench/faults --long`):
/// campaigns then run every step and more rounds; CI runs the short, bounded form.
#[allow(dead_code)]
pub fn long_form() -> bool {
    std::env::var("COVE_FAULTS_LONG").is_ok_and(|v| v == "1")
}
