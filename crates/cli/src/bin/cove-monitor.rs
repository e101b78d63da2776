//! `cove-monitor`: the per-container monitor once its container runs (see the `cove-monitor`
//! crate). A target of the cove package so that every build of `cove` puts it next to it;
//! it links only the monitor crate.
#![forbid(unsafe_code)]

fn main() {
    cove_monitor::main()
}
