//! `cove mdns ls|browse|resolve`: questions to the network helper's mDNS (crates/netd's mdns
//! module, over the control socket). The helper is started if it does not run (it leaves again
//! once idle), so browsing and resolving work with no container running.

use crate::state::Engine;
use crate::{Error, Result};
pub use cove_netd::proto::{Ask, BrowsedView, Listing, PublishedView, ResolvedView};
use std::time::Duration;

/// The DNS-SD name whose PTR records list the service types on the LAN (RFC 6763 section 9).
const SERVICE_TYPES: &str = "_services._dns-sd._udp.local";

fn ask(eng: &Engine, ask: &Ask) -> Result<Vec<u8>> {
    // Finds or starts the helper (its namespace handle is not needed here).
    crate::network::helper_netns(
        &eng.dirs.run,
        &eng.dirs.db_path(),
        crate::config::path(eng.dirs.rootless).as_deref(),
    )?;
    Ok(cove_netd::client::mdns(&eng.dirs.run, ask)?)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Other(format!("the network helper's mDNS answer: {e}")))
}

/// What this user publishes, on which interfaces, and the renames seen.
pub fn list(eng: &Engine) -> Result<Listing> {
    decode(&ask(eng, &Ask::List)?)
}

/// The records of `name` (a `.local` name) of type `qtype`, as the LAN answers within `timeout`.
pub fn resolve(eng: &Engine, name: &str, qtype: &str, timeout: Duration) -> Result<Vec<ResolvedView>> {
    if !name.trim_end_matches('.').to_ascii_lowercase().ends_with(".local") && !name.ends_with(".arpa") {
        return Err(Error::Invalid(format!("{name}: mDNS answers .local names (and reverse .arpa names) only")));
    }
    let a = Ask::Resolve { name: name.to_string(), qtype: qtype.to_string(), timeout_ms: timeout.as_millis() as u64 };
    decode(&ask(eng, &a)?)
}

/// The services of `service_type` (`_http._tcp`) on the LAN, or of every type announced
/// there when none is given, browsed for `timeout`.
pub fn browse(eng: &Engine, service_type: Option<&str>, timeout: Duration) -> Result<Vec<BrowsedView>> {
    let ms = timeout.as_millis() as u64;
    let types: Vec<String> = match service_type {
        Some(t) => vec![t.trim_end_matches('.').trim_end_matches(".local").to_string()],
        None => resolve(eng, SERVICE_TYPES, "PTR", timeout)?
            .into_iter()
            .filter(|r| r.rtype == "PTR")
            .map(|r| r.data.trim_end_matches('.').trim_end_matches(".local").to_string())
            .collect(),
    };
    let mut out = vec![];
    for t in types {
        if !(t.starts_with('_') && (t.ends_with("._tcp") || t.ends_with("._udp"))) {
            return Err(Error::Invalid(format!("{t}: a service type is _NAME._tcp or _NAME._udp")));
        }
        out.extend(decode::<Vec<BrowsedView>>(&ask(eng, &Ask::Browse { service_type: t, timeout_ms: ms })?)?);
    }
    Ok(out)
}
