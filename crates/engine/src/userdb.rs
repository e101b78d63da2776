//! Resolving `--user` against the image's /etc/passwd and /etc/group, as Docker does.

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3].split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
            })
        })
        .collect()
}

/// The process identity a `--user` value resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The passwd entry, when the image has one for the uid.
    pub entry: Option<PasswdEntry>,
}

/// Resolves `user[:group]` (names or numbers) with Docker's rules: a numeric uid needs no
/// passwd entry; a name must exist; the primary gid comes from the entry (else 0);
/// supplementary groups are those of /etc/group that list the user's name.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Resolved> {
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() {
        return Err(Error::Invalid(format!("invalid user {spec:?}")));
    }
    let entry =
        match u.parse::<u32>() {
            Ok(uid) => users.iter().find(|e| e.uid == uid).cloned(),
            Err(_) => Some(users.iter().find(|e| e.name == u).cloned().ok_or_else(|| {
                Error::Invalid(format!("unable to find user {u}: no matching entries in passwd file"))
            })?),
        };
    let uid = match &entry {
        Some(e) if u.parse::<u32>().is_err() => e.uid,
        _ => u.parse::<u32>().unwrap_or(0),
    };
    let gid = match g {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups.iter().find(|e| e.name == g).map(|e| e.gid).ok_or_else(|| {
                Error::Invalid(format!("unable to find group {g}: no matching entries in group file"))
            })?,
        },
        _ => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    // The primary group first, then the groups that list the user (what `id` shows after a
    // login, and what Docker sets).
    let mut additional: Vec<u32> = vec![gid];
    if let (Some(e), None) = (&entry, g) {
        additional.extend(groups.iter().filter(|gr| gr.members.contains(&e.name) && gr.gid != gid).map(|gr| gr.gid));
    }
    additional.dedup();
    Ok(Resolved { uid, gid, additional_gids: additional, entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# comment\nbad line\n";
    const GR: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:\n";

    #[test]
    fn users() {
        let r = resolve("app", PW, GR).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (1000, 1000, vec![1000, 10]));
        assert_eq!(r.entry.unwrap().home, "/home/app");
        let r = resolve("10000", PW, GR).unwrap();
        assert_eq!((r.uid, r.gid, r.entry), (10000, 0, None));
        let r = resolve("1000:staff", PW, GR).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 50));
        let r = resolve("10000:0", PW, GR).unwrap();
        assert_eq!((r.uid, r.gid), (10000, 0));
        assert!(resolve("nobody", PW, GR).unwrap_err().to_string().contains("unable to find user nobody"));
        assert!(resolve("app:nogroup", PW, GR).is_err());
        assert!(resolve(":1", PW, GR).is_err());
    }
}
