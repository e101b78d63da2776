//! Resource limits and their translation to cgroup v1 and v2 file writes (pure, no I/O).

use oci_spec::runtime::LinuxResources;

use crate::{Error, Result};

/// The CFS period Docker uses for `--cpus` (100 ms).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Resource limits for one container, with Docker's and the OCI spec's meanings.
///
/// `None` leaves the setting alone (the kernel default, i.e. unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (`--memory`); `-1` is unlimited. For this and the other numeric
    /// fields except `pids` and `cpu_quota`, `Some(0)` is treated as unset, as runc does.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes (`--memory-swap`, OCI `memory.swap`); `-1` is unlimited swap.
    pub memory_swap: Option<i64>,
    /// CFS quota in microseconds per period (`--cpu-quota`); `-1` is unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (`--cpu-period`).
    pub cpu_period: Option<u64>,
    /// Relative CPU weight, v1 style (`--cpu-shares`, 2..=262144; 1024 is the default).
    pub cpu_shares: Option<u64>,
    /// Maximum number of tasks (`--pids-limit`); zero or negative is unlimited.
    pub pids: Option<i64>,
    /// CPUs the container may run on, as `0-3,6` (`--cpuset-cpus`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (`--cpuset-mems`).
    pub cpuset_mems: Option<String>,
    /// Device access rules, in order (OCI `linux.resources.devices`): `(allow, rule)` with the
    /// rule in the v1 devices controller's syntax (`a`, `c 1:3 rwm`, `b *:* m`). Written to
    /// `devices.deny`/`devices.allow` on cgroup v1; on cgroup v2 an eBPF device program made
    /// from them is attached to the cgroup.
    pub devices: Vec<(bool, String)>,
}

/// Docker's `--cpus` conversion: `0.5` is a quota of 50000 µs per 100000 µs period.
pub fn cpus_to_quota(cpus: f64) -> (i64, u64) {
    // Docker computes NanoCPUs = cpus * 1e9, then quota = NanoCPUs * period / 1e9.
    let nano = (cpus * 1e9).round() as i64;
    (nano * DEFAULT_CPU_PERIOD as i64 / 1_000_000_000, DEFAULT_CPU_PERIOD)
}

/// v1 `cpu.shares` to v2 `cpu.weight`, exactly as runc converts it; 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Parse a size the way Docker does for `--memory` (go-units `RAMInBytes`): a number with an
/// optional binary unit `b`, `k`, `m`, `g`, `t`, `p` (any case, optionally followed by `i`
/// and/or `b`: `64m`, `64MiB`, `1.5g`). `-1` means unlimited and is returned as `-1`.
pub fn parse_bytes(input: &str) -> Result<i64> {
    let bad = |reason| Error::InvalidSize { input: input.to_string(), reason };
    let s = input.trim();
    if s == "-1" {
        return Ok(-1);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(bad("expected a number with an optional unit such as 64m"));
    }
    let value: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad("unknown unit (use b, k, m, g, t or p)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= i64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as i64)
}

/// One write to a cgroup interface file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
    /// The file may legitimately be missing (swap accounting off); skip it with a warning.
    pub optional: bool,
}

fn w(controller: &'static str, file: &'static str, value: impl ToString) -> Write {
    Write { controller, file, value: value.to_string(), optional: false }
}

/// Treat 0 as unset, as runc does for these fields.
fn nonzero<T: Default + PartialEq>(v: Option<T>) -> Option<T> {
    v.filter(|v| *v != T::default())
}

fn nonempty(v: Option<&String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty()).cloned()
}

impl Limits {
    /// The limits of an OCI `linux.resources`. Zero values and empty strings mean unset, as in
    /// runc; settings cove does not manage (devices, block I/O, hugepages, ...) are ignored.
    pub fn from_oci(r: &LinuxResources) -> Limits {
        let mut l = Limits::default();
        if let Some(m) = r.memory() {
            l.memory = nonzero(m.limit());
            l.memory_swap = nonzero(m.swap());
        }
        if let Some(c) = r.cpu() {
            l.cpu_quota = nonzero(c.quota());
            l.cpu_period = nonzero(c.period());
            l.cpu_shares = nonzero(c.shares());
            l.cpuset_cpus = nonempty(c.cpus().as_ref());
            l.cpuset_mems = nonempty(c.mems().as_ref());
        }
        if let Some(p) = r.pids() {
            l.pids = nonzero(Some(p.limit()));
        }
        for d in r.devices().iter().flatten() {
            use oci_spec::runtime::LinuxDeviceType as T;
            let typ = match d.typ() {
                None | Some(T::A) => "a",
                Some(T::B) => "b",
                Some(T::C | T::U) => "c",
                Some(T::P) => continue, // FIFOs are not device-controlled
            };
            let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".to_string(), |n| n.to_string());
            let access = d.access().clone().filter(|a| !a.is_empty()).unwrap_or_else(|| "rwm".into());
            let rule = if typ == "a" && d.major().is_none() && d.minor().is_none() {
                "a".to_string()
            } else {
                format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
            };
            l.devices.push((d.allow(), rule));
        }
        l
    }

    /// Set quota and period from Docker's `--cpus`.
    pub fn with_cpus(mut self, cpus: f64) -> Limits {
        let (quota, period) = cpus_to_quota(cpus);
        self.cpu_quota = Some(quota);
        self.cpu_period = Some(period);
        self
    }

    /// Whether no limit at all is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The controllers these limits need, in a fixed order.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.cpu_quota.is_some() || self.cpu_period.is_some() || self.cpu_shares.is_some() {
            c.push("cpu");
        }
        if self.cpuset_cpus.is_some() || self.cpuset_mems.is_some() {
            c.push("cpuset");
        }
        if self.memory.is_some() || self.memory_swap.is_some() {
            c.push("memory");
        }
        if self.pids.is_some() {
            c.push("pids");
        }
        if !self.devices.is_empty() {
            c.push("devices");
        }
        c
    }

    /// Reject combinations the kernel or Docker would refuse, with Docker's wording.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidLimits(m.to_string()));
        if let Some(m) = self.memory {
            if m < -1 {
                return bad("memory limit must be positive or -1");
            }
            if (1..6 * 1024 * 1024).contains(&m) {
                return bad("minimum memory limit allowed is 6MB");
            }
        }
        if let Some(swap) = nonzero(self.memory_swap).filter(|s| *s != -1) {
            match nonzero(self.memory) {
                None | Some(-1) => return bad("you should always set the memory limit when using memory-swap"),
                Some(m) if swap < m => return bad("minimum memory-swap limit should be larger than memory limit"),
                _ => {}
            }
        }
        if let Some(p) = nonzero(self.cpu_period) {
            if !(1000..=1_000_000).contains(&p) {
                return bad("cpu period must be between 1ms and 1s (1000 to 1000000 µs)");
            }
        }
        if let Some(q) = self.cpu_quota {
            if (0..1000).contains(&q) {
                return bad("cpu quota must be at least 1ms (1000 µs); use --cpus 0.01 or more");
            }
        }
        if let Some(s) = self.cpu_shares {
            if s > 262_144 {
                return bad("cpu shares must be at most 262144");
            }
        }
        Ok(())
    }

    /// The cgroup v2 writes, in order.
    pub(crate) fn plan_v2(&self) -> Result<Vec<Write>> {
        self.validate()?;
        let mut plan = Vec::new();
        if let Some(cpus) = &self.cpuset_cpus {
            plan.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = &self.cpuset_mems {
            plan.push(w("cpuset", "cpuset.mems", mems));
        }
        if let Some(m) = nonzero(self.memory) {
            plan.push(w("memory", "memory.max", max_or(m)));
        }
        if let Some(swap) = nonzero(self.memory_swap) {
            // v2 limits swap alone: memory.swap.max = (memory + swap) - memory
            let value = match (swap, nonzero(self.memory)) {
                (-1, _) => "max".to_string(),
                (s, Some(m)) => (s - m).to_string(),
                (_, None) => unreachable!("validate() requires memory with memory-swap"),
            };
            plan.push(Write { optional: true, ..w("memory", "memory.swap.max", value) });
        }
        if self.cpu_quota.is_some() || nonzero(self.cpu_period).is_some() {
            let quota = match self.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let value = match nonzero(self.cpu_period) {
                Some(p) => format!("{quota} {p}"),
                None => quota,
            };
            plan.push(w("cpu", "cpu.max", value));
        }
        if let Some(s) = nonzero(self.cpu_shares) {
            plan.push(w("cpu", "cpu.weight", shares_to_weight(s)));
        }
        if let Some(p) = self.pids {
            plan.push(w("pids", "pids.max", max_or(p)));
        }
        Ok(plan)
    }

    /// The cgroup v1 writes, in order (period before quota, memory before memory+swap; the
    /// writer retries refused writes after the others, which covers lowering existing limits).
    pub(crate) fn plan_v1(&self) -> Result<Vec<Write>> {
        self.validate()?;
        let mut plan = Vec::new();
        if let Some(cpus) = &self.cpuset_cpus {
            plan.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = &self.cpuset_mems {
            plan.push(w("cpuset", "cpuset.mems", mems));
        }
        if let Some(m) = nonzero(self.memory) {
            plan.push(w("memory", "memory.limit_in_bytes", m.max(-1)));
        }
        if let Some(swap) = nonzero(self.memory_swap) {
            plan.push(Write { optional: true, ..w("memory", "memory.memsw.limit_in_bytes", swap) });
        }
        if let Some(p) = nonzero(self.cpu_period) {
            plan.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = self.cpu_quota {
            plan.push(w("cpu", "cpu.cfs_quota_us", if q > 0 { q } else { -1 }));
        }
        if let Some(s) = nonzero(self.cpu_shares) {
            plan.push(w("cpu", "cpu.shares", s.max(2)));
        }
        if let Some(p) = self.pids {
            plan.push(w("pids", "pids.max", max_or(p)));
        }
        for (allow, rule) in &self.devices {
            plan.push(w("devices", if *allow { "devices.allow" } else { "devices.deny" }, rule));
        }
        Ok(plan)
    }
}

/// A positive number, else `max` (v2 and v1 `pids.max` spelling of unlimited).
fn max_or(v: i64) -> String {
    if v > 0 {
        v.to_string()
    } else {
        "max".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    fn files(plan: &[Write]) -> Vec<(&str, &str)> {
        plan.iter().map(|w| (w.file, w.value.as_str())).collect()
    }

    #[test]
    fn docker_cpus() {
        assert_eq!(cpus_to_quota(0.5), (50_000, 100_000));
        assert_eq!(cpus_to_quota(1.5), (150_000, 100_000));
        assert_eq!(cpus_to_quota(0.01), (1_000, 100_000));
        assert_eq!(cpus_to_quota(0.1), (10_000, 100_000));
    }

    #[test]
    fn runc_shares_to_weight() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1); // clamped, no underflow
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("10b").unwrap(), 10);
        assert_eq!(parse_bytes("2 k").unwrap(), 2048);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        for bad in ["", "m", "64x", "-5m", "1.m", "99999999p"] {
            let e = parse_bytes(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid size"), "{bad}: {e}");
        }
    }

    #[test]
    fn plan_docker_run_example() {
        // cove run --memory 64m --cpus 0.5 --pids-limit 100
        let l = Limits { memory: Some(64 << 20), pids: Some(100), ..Limits::default() }.with_cpus(0.5);
        assert_eq!(l.controllers(), ["cpu", "memory", "pids"]);
        assert_eq!(
            files(&l.plan_v2().unwrap()),
            [("memory.max", "67108864"), ("cpu.max", "50000 100000"), ("pids.max", "100")]
        );
        assert_eq!(
            files(&l.plan_v1().unwrap()),
            [
                ("memory.limit_in_bytes", "67108864"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("pids.max", "100")
            ]
        );
    }

    #[test]
    fn plan_swap_shares_unlimited() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            pids: Some(-1),
            ..Limits::default()
        };
        let v2 = l.plan_v2().unwrap();
        assert_eq!(
            files(&v2),
            [("memory.max", "67108864"), ("memory.swap.max", "67108864"), ("cpu.weight", "20"), ("pids.max", "max")]
        );
        assert!(v2[1].optional && !v2[0].optional);
        let v1 = l.plan_v1().unwrap();
        assert_eq!(
            files(&v1),
            [
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "134217728"),
                ("cpu.shares", "512"),
                ("pids.max", "max")
            ]
        );
        assert!(v1[1].optional);

        let unlimited = Limits { memory: Some(-1), memory_swap: Some(-1), cpu_quota: Some(-1), ..Limits::default() };
        assert_eq!(
            files(&unlimited.plan_v2().unwrap()),
            [("memory.max", "max"), ("memory.swap.max", "max"), ("cpu.max", "max")]
        );
        assert_eq!(
            files(&unlimited.plan_v1().unwrap()),
            [("memory.limit_in_bytes", "-1"), ("memory.memsw.limit_in_bytes", "-1"), ("cpu.cfs_quota_us", "-1")]
        );
        let period_only = Limits { cpu_period: Some(50_000), ..Limits::default() };
        assert_eq!(files(&period_only.plan_v2().unwrap()), [("cpu.max", "max 50000")]);
        let cpuset = Limits { cpuset_cpus: Some("0-1".into()), ..Limits::default() };
        assert_eq!(files(&cpuset.plan_v1().unwrap()), [("cpuset.cpus", "0-1")]);
        assert_eq!(cpuset.controllers(), ["cpuset"]);
    }

    #[test]
    fn invalid_limits() {
        let cases = [
            Limits { memory_swap: Some(1 << 30), ..Limits::default() },
            Limits { memory: Some(1 << 30), memory_swap: Some(1 << 20), ..Limits::default() },
            Limits { memory: Some(1024), ..Limits::default() },
            Limits { cpu_quota: Some(10), ..Limits::default() },
            Limits { cpu_period: Some(10), ..Limits::default() },
            Limits { cpu_shares: Some(1 << 20), ..Limits::default() },
        ];
        for l in cases {
            let e = l.plan_v2().unwrap_err().to_string();
            assert!(e.starts_with("invalid resource limits: "), "{e}");
            assert!(l.plan_v1().is_err());
        }
        // unlimited swap without a memory limit is fine
        assert!(Limits { memory_swap: Some(-1), ..Limits::default() }.validate().is_ok());
    }

    #[test]
    fn from_oci_resources() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).swap(0i64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(0u64)
                    .cpus("")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(100i64).build().unwrap())
            .build()
            .unwrap();
        let l = Limits::from_oci(&r);
        assert_eq!(
            l,
            Limits {
                memory: Some(64 << 20),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                pids: Some(100),
                cpuset_mems: Some("0".into()),
                ..Limits::default()
            }
        );
        assert!(!l.is_empty());
        assert!(Limits::from_oci(&LinuxResources::default()).is_empty());
    }

    #[test]
    fn device_rules_from_oci_in_order() {
        use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
        let rule = |allow: bool, typ: Option<LinuxDeviceType>, major: Option<i64>, minor: Option<i64>, access: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(access);
            if let Some(t) = typ {
                b = b.typ(t);
            }
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().unwrap()
        };
        let r = LinuxResourcesBuilder::default()
            .devices(vec![
                rule(false, None, None, None, "rwm"),
                rule(true, Some(LinuxDeviceType::C), None, None, "m"),
                rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
                rule(true, Some(LinuxDeviceType::C), Some(136), None, "rwm"),
                rule(true, Some(LinuxDeviceType::P), None, None, "rwm"),
            ])
            .build()
            .unwrap();
        let l = Limits::from_oci(&r);
        assert_eq!(l.controllers(), ["devices"]);
        assert_eq!(
            files(&l.plan_v1().unwrap()),
            [
                ("devices.deny", "a"),
                ("devices.allow", "c *:* m"),
                ("devices.allow", "c 1:3 rwm"),
                ("devices.allow", "c 136:* rwm")
            ]
        );
        // cgroup v2 has no devices files (an eBPF program does it): nothing written.
        assert!(l.plan_v2().unwrap().is_empty());
    }
}
