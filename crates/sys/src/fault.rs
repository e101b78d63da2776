//! Fault points: a test-only way to stop any cove process at a named step, as a crash or a
//! `kill -9` would. When the environment variable `COVE_FAULT` equals a point's name, the
//! process kills itself with SIGKILL at that point (no destructor, no cleanup, no exit
//! status: exactly what a power cut leaves of this process). Unset, a point costs one string
//! comparison (the variable is read once). Compiled into release builds too, so the binary
//! users run is the one the crash campaign tests (crates/cli/tests/reliability/crash.rs).

use std::sync::OnceLock;

/// Every fault point, so the campaign iterates over all of them (a point missing here is
/// refused by [`point`] in debug builds, and the campaign checks it covers each one).
pub const FAULT_POINTS: &[&str] = &[
    // create / run / run -d: prepare (engine::container)
    "create.after-insert",
    "create.after-etc",
    "create.after-rootfs",
    "create.after-config",
    "create.after-monitor-config",
    // start / run -d (engine::lifecycle::start)
    "start.before-monitor",
    "start.after-monitor",
    "start.after-state",
    // the detached container's monitor (`cove __monitor`)
    "monitor.after-pid",
    "monitor.before-report",
    "monitor.after-report",
    // foreground run (engine::run)
    "run.after-monitor-pid",
    "run.after-create",
    "run.after-state",
    "run.before-cleanup",
    // the container's setup, between clone and exec (runtime)
    "runtime.after-rootfs",
    // rm -f (engine::lifecycle::remove, reconcile::delete)
    "rm.after-kill",
    "rm.mid-files",
    "rm.after-files",
    // layers (image::Store): pull, load, import
    "layer.mid-unpack",
    "layer.after-rename",
    "layer.after-blob",
    // pull / load / import (engine)
    "pull.after-layers",
    "pull.after-config",
    "image.before-record",
    "image.after-record",
    // networks (engine::network)
    "network.create.after-row",
    "network.rm.after-row",
    "network.connect.after-lease",
    "network.connect.after-attach",
    // wiring a container (foreground run, the monitor, network connect)
    "network.attach.after-bridge",
    "network.attach.before-sync",
];

fn armed() -> &'static str {
    static FAULT: OnceLock<String> = OnceLock::new();
    FAULT.get_or_init(|| std::env::var("COVE_FAULT").unwrap_or_default())
}

/// Kills this process with SIGKILL when `COVE_FAULT` names this point.
#[inline]
pub fn point(name: &'static str) {
    debug_assert!(FAULT_POINTS.contains(&name), "fault point {name} is not in FAULT_POINTS");
    let a = armed();
    if !a.is_empty() && a == name {
        die(name);
    }
}

#[cold]
fn die(name: &str) -> ! {
    // One line on stderr (if it is still open) so a test's log tells which point fired.
    let _ =
        std::io::Write::write_all(&mut std::io::stderr(), format!("cove: fault point {name}: SIGKILL\n").as_bytes());
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // Still here: PID 1 of a new pid namespace (a container's setup) ignores signals it sends
    // itself, SIGKILL too. Ending without any cleanup is the nearest to it.
    crate::exit_now(128 + 9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn points_are_unique_and_named_verb_dot_step() {
        let mut seen = std::collections::HashSet::new();
        for p in super::FAULT_POINTS {
            assert!(seen.insert(p), "{p} listed twice");
            assert!(p.contains('.') && !p.contains(' '), "{p}");
        }
    }

    #[test]
    fn an_unarmed_point_returns() {
        // COVE_FAULT is not set in unit tests.
        super::point("create.after-insert");
    }
}
