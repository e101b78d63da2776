//! `cove`: the command line. Parses Docker-compatible verbs and flags, joins the rootless
//! user namespace, and calls the engine. The only crate that uses `anyhow`.
#![forbid(unsafe_code)]

mod args;
mod docker;
mod format;
mod table;
mod verbs;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cove_sys::default_sigpipe();
    // The per-container monitor: `cove __monitor DIR RUNDIR FD [exited=CODE:RESTARTS]`, kept
    // off clap's path (it execs the small `cove-monitor` once the container runs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(6).collect();
    // Every fault point (test-only, see cove_sys::fault), for the crash campaign.
    if args.len() == 2 && args[1] == "__fault-points" {
        for p in cove_sys::fault::FAULT_POINTS {
            println!("{p}");
        }
        return ExitCode::SUCCESS;
    }
    if args.len() == 5 && args[1] == "__netd" {
        init_tracing(None);
        let fd = args[4].to_str().and_then(|s| s.parse::<i32>().ok()).map(cove_sys::own_fd);
        if let Some(f) = &fd {
            let _ = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        }
        let config = Some(std::path::Path::new(&args[3])).filter(|p| !p.as_os_str().is_empty());
        cove_engine::netd::main(std::path::Path::new(&args[2]), config, fd);
    }
    // Started by a container's pump when the network helper ended (cove_monitor::watch).
    if args.len() == 3 && args[1] == "__rewire" {
        init_tracing(None);
        cove_engine::monitor::rewire_main(std::path::Path::new(&args[2]));
    }
    if (args.len() == 5 || args.len() == 6) && args[1] == "__monitor" {
        let fd = args[4].to_str().and_then(|s| s.parse::<i32>().ok()).map(cove_sys::own_fd);
        // With --init the container's PID 1, cloned by the monitor, stays cove code: from a
        // sealed copy of this binary, never the installed file (see cove_engine::exe). The
        // report pipe stays open across this exec.
        let sealed = match cove_engine::monitor::pid1_stays_cove(std::path::Path::new(&args[2])) {
            true => cove_engine::exe::run_sealed(),
            false => Ok(()),
        };
        if let Err(e) = sealed {
            if let Some(f) = fd {
                let _ = std::io::Write::write_all(&mut std::fs::File::from(f), format!("E125 {e}").as_bytes());
            }
            eprintln!("cove: error: {e}");
            return ExitCode::from(125);
        }
        init_tracing(None);
        // The report pipe came without close-on-exec (to survive our exec); anything we start
        // (the network helper) must not inherit it, or the CLI would wait for its EOF forever.
        if let Some(f) = &fd {
            let _ = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        }
        cove_engine::monitor::main(
            std::path::Path::new(&args[2]),
            std::path::Path::new(&args[3]),
            fd,
            args.get(5).map(|s| s.as_os_str()),
        );
    }
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        125
                    } else {
                        0
                    });
                }
                _ => {
                    // One line, as Docker: the error itself, then where to look.
                    let text = e.render().to_string();
                    eprintln!("cove: error: {}", one_line_error(&text));
                    eprintln!("See 'cove --help'.");
                    return ExitCode::from(125);
                }
            }
        }
    };
    // Verbs that put cove code where a container can see it (an --init PID 1, a process
    // joining a running container) re-execute from a sealed copy of this binary first (see
    // cove_engine::exe); the others stay fast.
    if cli.command.enters_containers() {
        if let Err(e) = cove_engine::exe::run_sealed() {
            eprintln!("cove: error: {e}");
            return ExitCode::from(125);
        }
    }
    init_tracing(cli.log_level.as_deref());
    tracing::debug!("parsed arguments");
    match verbs::dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let code = e.downcast_ref::<cove_engine::Error>().map(|e| e.exit_code()).unwrap_or(125);
            eprintln!("cove: error: {}", error_text(&e));
            ExitCode::from(code.clamp(0, 255) as u8)
        }
    }
}

/// The error and its causes on one line, each cause once: most of cove's errors already say
/// their cause (`create DIR: Permission denied`) and also name it as their source, which
/// anyhow's `{:#}` would print a second time.
fn error_text(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// clap's error as one line: its first line, and when that ends with a colon (a list follows,
/// as for missing arguments) the listed items too.
fn one_line_error(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments").trim_start_matches("error: ").trim_end();
    match first.strip_suffix(':') {
        Some(head) => {
            let items: Vec<&str> = lines.take_while(|l| l.starts_with("  ")).map(str::trim).collect();
            if items.is_empty() {
                head.to_string()
            } else {
                format!("{head}: {}", items.join(", "))
            }
        }
        None => first.to_string(),
    }
}

/// Installs the process's subscriber: tracing output at `level` (or `COVE_LOG`, default warn),
/// and the engine's warnings for the user (target [`cove_engine::WARNING_TARGET`]) printed as
/// `cove: warning: MSG` whatever the level.
fn init_tracing(level: Option<&str>) {
    use tracing_subscriber::prelude::*;
    let filter = level.map(String::from).or_else(|| std::env::var("COVE_LOG").ok()).unwrap_or_else(|| "warn".into());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_filter(filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() != cove_engine::WARNING_TARGET));
    let warnings =
        UserWarnings.with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() == cove_engine::WARNING_TARGET));
    tracing_subscriber::registry().with(log).with(warnings).init();
}

/// Prints the message of each event it sees as `cove: warning: MSG`.
struct UserWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for UserWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        eprintln!("cove: warning: {}", m.0);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn go_durations() {
        use crate::args::parse_duration;
        use std::time::Duration;
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "m", "10x", "-1s", "1h-2m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn causes_already_said_are_not_repeated() {
        use super::error_text;
        let io = std::io::Error::from_raw_os_error(13);
        let e: anyhow::Error = cove_engine::Error::Io { what: "create /x".into(), source: io }.into();
        assert_eq!(error_text(&e), "create /x: Permission denied (os error 13)");
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(2)).context("open /y");
        assert_eq!(error_text(&e), "open /y: No such file or directory (os error 2)");
    }

    use super::one_line_error;

    #[test]
    fn clap_errors_become_one_line() {
        let missing = "error: the following required arguments were not provided:\n  --mdns\n\nUsage: cove network create --mdns-interface <IFACE> --mdns <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line_error(missing), "the following required arguments were not provided: --mdns");
        assert_eq!(
            one_line_error("error: unexpected argument '--bogus' found\n\n  tip: ...\n"),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(one_line_error(""), "invalid arguments");
    }
}
