//! A container's plan: what `prepare` parses out of a [`RunRequest`] once, at the edge, before
//! anything exists — restart policy, log options, published ports, stop signal — and hands on
//! typed (the foreground run uses it as is, the monitor gets it in monitor.json). A bad value
//! is refused here, so nothing later parses a request's strings again.
//!
//! Resource limits are checked by `spec::resources` at the same point and travel in the OCI
//! spec (`linux.resources`), which is already typed.

use crate::logs::LogOpts;
use crate::request::{NetMode, RunRequest};
use crate::{Error, Result};
use cove_net::portmap::PortSpec;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Invalid(format!("invalid signal: {s}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<Signal>().map_err(|_| Error::Invalid(format!("invalid signal: {s}")))
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<u32>),
}

impl Restart {
    pub fn parse(s: &str) -> Result<Restart> {
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => Restart::No,
            None if s == "always" => Restart::Always,
            None if s == "unless-stopped" => Restart::UnlessStopped,
            None if s == "on-failure" => Restart::OnFailure(None),
            Some(("on-failure", n)) => Restart::OnFailure(Some(n.parse().map_err(|_| {
                Error::Invalid(format!("invalid restart policy {s:?}: maximum retry count must be a number"))
            })?)),
            _ => {
                return Err(Error::Invalid(format!(
                    "invalid restart policy {s:?} (no, always, unless-stopped, on-failure[:N])"
                )))
            }
        })
    }

    /// Whether to start again after an exit with `code`, having restarted `count` times.
    pub fn again(self, code: i32, count: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Restart::No => false,
            Restart::Always | Restart::UnlessStopped => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| count < m),
        }
    }
}

/// The parsed, checked options of one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub restart: Restart,
    pub log: LogOpts,
    /// `-p`, and `-P`'s exposed ports on random host ports. Empty when the network mode has
    /// nothing to publish into (`host`, `none`: see `ports_discarded`).
    pub ports: Vec<PortSpec>,
    /// Published ports were asked for with `--network host|none`: dropped (a warning), as
    /// Docker and podman do.
    pub ports_discarded: bool,
    /// `--stop-signal`, else the image's StopSignal when it names one; SIGTERM when none.
    pub stop_signal: Option<Signal>,
}

impl Plan {
    /// Parses the request's options. `image_stop_signal` is the image's StopSignal (ignored
    /// when it names no signal, as before), `exposed` the container's exposed ports (image's
    /// and `--expose`, for `-P`).
    pub fn parse(req: &RunRequest, image_stop_signal: Option<&str>, exposed: &[String], net: &NetMode) -> Result<Plan> {
        // A bad --stop-signal used to be stored and only failed at `stop`, leaving a container
        // that could only be killed.
        let stop_signal = match &req.stop_signal {
            Some(s) => Some(
                parse_signal(s)
                    .map_err(|_| Error::Invalid(format!("invalid --stop-signal {s:?}: not a signal name or number")))?,
            ),
            None => image_stop_signal.and_then(|s| parse_signal(s).ok()),
        };
        let restart = match &req.restart {
            Some(r) => {
                let p = Restart::parse(r)?;
                if req.rm && r != "no" {
                    return Err(Error::Invalid("conflicting options: --restart and --rm".into()));
                }
                p
            }
            None => Restart::No,
        };
        let log = LogOpts::parse(&req.log_opts)?;
        // Bad or privileged port specs fail here, before anything exists.
        let ports = crate::ports::specs(&req.publish, req.publish_all, exposed)?;
        let (ports, ports_discarded) = match net {
            NetMode::Bridge(_) => (ports, false),
            // Another container's namespace: publish them on that one.
            NetMode::Container(..) if !ports.is_empty() => {
                return Err(Error::Invalid(
                    "conflicting options: published ports and --network container:NAME (publish them on NAME)".into(),
                ));
            }
            _ => (vec![], !ports.is_empty()),
        };
        Ok(Plan { restart, log, ports, ports_discarded, stop_signal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> NetMode {
        NetMode::Bridge(vec!["cove".into()])
    }

    fn req(f: impl FnOnce(&mut RunRequest)) -> RunRequest {
        let mut r = RunRequest::default();
        f(&mut r);
        r
    }

    #[test]
    fn restart_policies() {
        assert_eq!(Restart::parse("no").unwrap(), Restart::No);
        assert_eq!(Restart::parse("on-failure:3").unwrap(), Restart::OnFailure(Some(3)));
        assert!(Restart::parse("sometimes").is_err());
        assert!(Restart::parse("on-failure:x").is_err());
        let p = Restart::OnFailure(Some(2));
        assert!(p.again(1, 0, false) && p.again(1, 1, false) && !p.again(1, 2, false) && !p.again(0, 0, false));
        assert!(Restart::Always.again(0, 100, false));
        assert!(!Restart::Always.again(1, 0, true));
        assert!(!Restart::No.again(1, 0, false));
    }

    #[test]
    fn a_good_request_is_parsed_once_into_typed_values() {
        let r = req(|r| {
            r.restart = Some("on-failure:3".into());
            r.log_opts = vec!["max-size=1m".into(), "max-file=2".into()];
            r.publish = vec!["8080:80".into(), "127.0.0.1::53/udp".into()];
            r.publish_all = true;
            r.stop_signal = Some("usr1".into());
        });
        let p = Plan::parse(&r, Some("SIGQUIT"), &["443/tcp".into()], &bridge()).unwrap();
        assert_eq!(p.restart, Restart::OnFailure(Some(3)));
        assert_eq!(p.log, LogOpts { max_size: 1 << 20, max_file: 2 });
        assert_eq!(p.ports.len(), 3);
        assert_eq!(p.ports[0], cove_net::portmap::parse_publish("8080:80").unwrap());
        assert_eq!(p.ports[2], PortSpec::random(443, cove_net::portmap::Protocol::Tcp));
        assert_eq!(p.stop_signal, Some(Signal::SIGUSR1));
        // Defaults: no restart, cove's log rotation, no ports, the image's stop signal.
        let p = Plan::parse(&RunRequest::default(), Some("SIGQUIT"), &[], &bridge()).unwrap();
        assert_eq!(p, Plan { stop_signal: Some(Signal::SIGQUIT), ..Plan::default() });
        // An image's StopSignal that names nothing is ignored, as before.
        assert_eq!(Plan::parse(&RunRequest::default(), Some("SIGNOPE"), &[], &bridge()).unwrap().stop_signal, None);
    }

    #[test]
    fn bad_options_are_refused_before_anything_exists() {
        let bad = |f: fn(&mut RunRequest), what: &str| {
            let e = Plan::parse(&req(f), None, &[], &bridge()).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e:?}");
            assert!(e.to_string().contains(what), "{e} should mention {what}");
        };
        bad(|r| r.publish = vec!["80:80:80:80".into()], "80:80:80:80");
        bad(|r| r.publish = vec!["99999:80".into()], "99999");
        bad(|r| r.restart = Some("sometimes".into()), "restart policy");
        bad(|r| r.restart = Some("on-failure:x".into()), "restart policy");
        bad(
            |r| {
                r.restart = Some("always".into());
                r.rm = true;
            },
            "--restart and --rm",
        );
        bad(|r| r.log_opts = vec!["max-file=0".into()], "max-file");
        bad(|r| r.log_opts = vec!["bogus=1".into()], "bogus");
        bad(|r| r.log_opts = vec!["max-size=lots".into()], "lots");
        bad(|r| r.stop_signal = Some("SIGNOPE".into()), "--stop-signal");
        // `-P` with an image port that is no port.
        let e = Plan::parse(&req(|r| r.publish_all = true), None, &["http/tcp".into()], &bridge()).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    }

    #[test]
    fn ports_follow_the_network_mode() {
        let r = req(|r| r.publish = vec!["8080:80".into()]);
        for net in [NetMode::Host, NetMode::None] {
            let p = Plan::parse(&r, None, &[], &net).unwrap();
            assert!(p.ports.is_empty() && p.ports_discarded);
        }
        assert!(!Plan::parse(&RunRequest::default(), None, &[], &NetMode::Host).unwrap().ports_discarded);
        let e = Plan::parse(&r, None, &[], &NetMode::Container("db".into(), Default::default())).unwrap_err();
        assert!(e.to_string().contains("container:NAME"), "{e}");
        assert!(Plan::parse(&RunRequest::default(), None, &[], &NetMode::Container("db".into(), Default::default()))
            .is_ok());
    }
}
