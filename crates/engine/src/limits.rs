//! Resource limits of a container: the cgroup that applies its spec's `linux.resources`,
//! where the host allows it (shared by the foreground run and the monitor).

/// Sets up cgroups for the spec's resources, warning (not failing) where the host cannot
/// apply them.
pub fn cgroup_for_limits(id: &str, spec: &oci_spec::runtime::Spec, rootless: bool) -> Option<cove_cgroups::Cgroup> {
    let limits = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .map(cove_cgroups::Limits::from_oci)
        .unwrap_or_default();
    if limits.is_empty() {
        return None;
    }
    let support = cove_cgroups::detect(rootless);
    if let Some(w) = support.unmet(&limits) {
        crate::warn_user(format_args!("{w}; the container runs without these limits"));
    }
    if !support.usable {
        return None;
    }
    match cove_cgroups::Cgroup::create(id, &limits, &support) {
        Ok(cg) => {
            for w in cg.warnings() {
                crate::warn_user(format_args!("{w}"));
            }
            Some(cg)
        }
        Err(e) => {
            crate::warn_user(format_args!("resource limits not applied: {e}"));
            None
        }
    }
}

/// Removes the cgroup of container `id` if there is one (left by a monitor that was killed);
/// a failure is only logged.
pub fn remove_cgroup(id: &str, rootless: bool) {
    if let Ok(cg) = cove_cgroups::Cgroup::open(id, &cove_cgroups::detect(rootless)) {
        if let Err(e) = cg.remove() {
            tracing::debug!("remove cgroup of {id}: {e}");
        }
    }
}
