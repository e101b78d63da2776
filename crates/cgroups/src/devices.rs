//! Device rules as a cgroup v2 device program: cgroup v2 has no `devices.allow`/`devices.deny`
//! files; the kernel asks an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to
//! the cgroup, whether a process may mknod, read or write a device (what runc's devicefilter
//! generates). The program is made here from the same rules the v1 controller takes
//! ([`crate::Limits::devices`]); `cove_sys` loads and attaches it.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! (type in the low 16 bits: 1 block, 2 char; access in the high: 1 mknod, 2 read, 4 write)
//! and tries the rules from the last to the first: the first that matches decides (later rules
//! override earlier ones, as writes to the v1 files do). An allow rule matches when every
//! requested access is among its own; a deny rule when any is. No rule matching allows, as an
//! empty v1 list inherits everything.

use cove_sys::BpfInsn;

use crate::{Error, Result};

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn { code, dst, src, off, imm }
}

/// One rule parsed from the v1 syntax: type (0 any, 1 block, 2 char), major, minor (None:
/// any), access bits.
#[derive(Debug, PartialEq, Eq)]
struct Rule {
    typ: u32,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

fn parse(rule: &str) -> Result<Rule> {
    let bad = || Error::InvalidLimits(format!("device rule {rule:?}"));
    if rule == "a" {
        return Ok(Rule { typ: 0, major: None, minor: None, access: 7 });
    }
    let mut parts = rule.split(' ');
    let (Some(t), Some(nums), access, None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let typ = match t {
        "a" => 0,
        "b" => 1,
        "c" => 2,
        _ => return Err(bad()),
    };
    let (ma, mi) = nums.split_once(':').ok_or_else(bad)?;
    let num = |s: &str| if s == "*" { Ok(None) } else { s.parse::<u32>().map(Some).map_err(|_| bad()) };
    let mut bits = 0;
    for ch in access.unwrap_or("rwm").chars() {
        bits |= match ch {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => return Err(bad()),
        };
    }
    Ok(Rule { typ, major: num(ma)?, minor: num(mi)?, access: bits })
}

/// The device program for `rules` (`(allow, rule)` in v1 syntax, in order).
pub(crate) fn program(rules: &[(bool, String)]) -> Result<Vec<BpfInsn>> {
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for (allow, text) in rules.iter().rev() {
        let r = parse(text)?;
        // Checks jump to the end of the block (patched below) when the rule does not match.
        let mut block: Vec<BpfInsn> = vec![];
        if r.typ != 0 {
            block.push(insn(JNE_K, 2, 0, 0, r.typ as i32));
        }
        if *allow && r.access != 7 {
            block.push(insn(MOV_X, 0, 3, 0, 0));
            block.push(insn(AND_K, 0, 0, 0, (!r.access & 7) as i32));
            block.push(insn(JNE_K, 0, 0, 0, 0));
        } else if !*allow && r.access != 7 {
            block.push(insn(MOV_X, 0, 3, 0, 0));
            block.push(insn(AND_K, 0, 0, 0, r.access as i32));
            block.push(insn(JEQ_K, 0, 0, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        let matches_all = block.is_empty();
        block.push(insn(MOV_K, 0, 0, 0, i32::from(*allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        if matches_all {
            // Decides every request: rules before it (and the default) are never reached, and
            // the verifier refuses unreachable instructions.
            p.extend(block);
            return Ok(p);
        }
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JEQ_K {
                ins.off = (len - 1 - i) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on one request the way the kernel would (only the instructions made here).
    fn run(prog: &[BpfInsn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0;
        loop {
            let i = prog[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                LDX_W => r[d] = u64::from(ctx[(i.off / 4) as usize]),
                AND_K => r[d] &= i.imm as u64,
                RSH_K => r[d] >>= i.imm,
                MOV_X => r[d] = r[s],
                MOV_K => r[d] = i.imm as u64,
                JNE_K if r[d] != i.imm as u64 => pc += i.off as usize,
                JEQ_K if r[d] == i.imm as u64 => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn dockers_rules_as_a_program() {
        let rules: Vec<(bool, String)> = [
            (false, "a"),
            (true, "c *:* m"),
            (true, "b *:* m"),
            (true, "c 1:3 rwm"),
            (true, "c 136:* rwm"),
            (true, "c 5:2 rw"),
        ]
        .iter()
        .map(|(a, r)| (*a, r.to_string()))
        .collect();
        let p = program(&rules).unwrap();
        let (b, c, m, rd, wr) = (1, 2, 1, 2, 4);
        assert_eq!(run(&p, c, rd | wr, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, c, rd, 136, 7), 1, "a pts");
        assert_eq!(run(&p, b, m, 7, 0), 1, "mknod of any block device");
        assert_eq!(run(&p, b, rd, 7, 0), 0, "reading a loop device");
        assert_eq!(run(&p, b, rd | wr, 254, 0), 0, "a disk");
        assert_eq!(run(&p, c, rd, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, c, rd | wr, 5, 2), 1, "ptmx");
        assert_eq!(run(&p, c, rd | m, 5, 2), 0, "ptmx allows rw only: m together with r is more");
        // A later deny overrides an earlier allow.
        let p = program(&[(true, "a".into()), (false, "c 1:3 w".into())]).unwrap();
        assert_eq!(run(&p, c, rd, 1, 3), 1);
        assert_eq!(run(&p, c, wr, 1, 3), 0);
        assert_eq!(run(&p, b, rd, 8, 0), 1);
        assert!(program(&[(true, "x 1:2".into())]).is_err());
        assert!(program(&[(true, "c 1 rwm".into())]).is_err());
    }
}
