//! Regression tests for defects found using cove as a Docker user would (issue 13): state and
//! lifecycle.

use super::*;

#[test]
fn a_bad_stop_signal_is_refused_before_anything_exists() {
    let Some(w) = World::new() else { return };
    for verb in ["create", "run"] {
        let mut args = vec![verb];
        if verb == "run" {
            args.push("-d");
        }
        args.extend_from_slice(&["--name", "sig", "--stop-signal", "BOGUS", "bb", "sleep", "100"]);
        let o = w.cove(&args);
        assert_eq!(o.status.code(), Some(125), "{verb} --stop-signal BOGUS: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("BOGUS"), "{err}");
        assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "nothing was created by {verb}");
    }
    // Names and numbers, with or without SIG, are signals; stop uses the one given.
    w.ok(&["run", "-d", "--name", "sig", "--stop-signal", "usr1", "bb", "sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.1; done"]);
    w.ok(&["stop", "-t", "10", "sig"]);
    assert_eq!(w.ok(&["inspect", "-f", "{{.State.ExitCode}}", "sig"]).trim(), "7");
}
