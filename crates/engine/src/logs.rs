//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`, with
//! size-based rotation (`--log-opt max-size=10m,max-file=3`): `container.log`,
//! `container.log.1`, ... (oldest has the highest number).

use crate::db::parse_rfc3339;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogOpts {
    /// Rotate when the current file would exceed this many bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (>= 1).
    pub max_file: u32,
}

impl Default for LogOpts {
    fn default() -> Self {
        // Docker's json-file default is unbounded; cove keeps 3 x 10 MiB so a chatty
        // container cannot fill the user's disk.
        LogOpts { max_size: 10 << 20, max_file: 3 }
    }
}

impl LogOpts {
    /// Parses `--log-opt` values (`max-size=10m`, `max-file=3`).
    pub fn parse(opts: &[String]) -> Result<LogOpts> {
        let mut o = LogOpts::default();
        for kv in opts {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Error::Invalid(format!("invalid --log-opt {kv:?}: expected key=value")))?;
            match k {
                "max-size" => o.max_size = if v == "-1" { 0 } else { crate::request::parse_size(v)? as u64 },
                "max-file" => {
                    o.max_file =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            Error::Invalid(format!("invalid max-file {v:?}: must be a positive number"))
                        })?
                }
                "mode" | "tag" | "labels" | "env" | "compress" => {}
                _ => return Err(Error::Invalid(format!("unknown log opt {k:?} for the json-file driver"))),
            }
        }
        Ok(o)
    }
}

/// Appends records to a container's log, rotating by size (shared with the `cove-monitor`
/// pump, which is what writes logs).
pub use cove_monitor::LogWriter;

/// One decoded log record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// All log files of a container, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for i in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if p.exists() {
            v.push(p);
        }
    }
    if path.exists() {
        v.push(path.to_path_buf());
    }
    v
}

/// Reads every record (oldest first); malformed lines are skipped.
pub fn read_all(path: &Path) -> Vec<Record> {
    let mut out = vec![];
    for f in files(path) {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).lines().map_while(|l| l.ok()) {
            if let Ok(r) = serde_json::from_str::<Record>(&line) {
                out.push(r);
            }
        }
    }
    out
}

/// Parses `--since`/`--until`: a duration relative to now (`10m`, `1h30m`, `45s`), an
/// RFC 3339 time, or Unix seconds. Returns Unix seconds.
pub fn parse_time(s: &str, now: i64) -> Result<i64> {
    if let Ok(n) = s.parse::<f64>() {
        return Ok(n as i64);
    }
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| Error::Invalid(format!("invalid time {s:?}")))?;
        num.clear();
        total += (n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(Error::Invalid(format!("invalid time {s:?}"))),
        }) as i64;
    }
    if !num.is_empty() || s.is_empty() {
        return Err(Error::Invalid(format!("invalid time {s:?}")));
    }
    Ok(now - total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_rotate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 200, 2).unwrap();
        w.write("stdout", b"hello \"world\"\nsecond\tline\n").unwrap();
        w.write("stderr", b"partial").unwrap();
        let r = read_all(&p);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[0].log, "hello \"world\"\n");
        assert_eq!(r[1].log, "second\tline\n");
        assert_eq!((r[2].log.as_str(), r[2].stream.as_str()), ("partial", "stderr"));
        for i in 0..20 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(files(&p).len() <= 2);
        let r = read_all(&p);
        assert_eq!(r.last().unwrap().log, "line 19\n");
        assert!(r.len() < 23, "old records rotated away");
    }

    #[test]
    fn opts_and_times() {
        assert_eq!(
            LogOpts::parse(&["max-size=1m".into(), "max-file=5".into()]).unwrap(),
            LogOpts { max_size: 1 << 20, max_file: 5 }
        );
        assert!(LogOpts::parse(&["max-file=0".into()]).is_err());
        assert!(LogOpts::parse(&["bogus=1".into()]).is_err());
        assert_eq!(parse_time("10m", 1000).unwrap(), 400);
        assert_eq!(parse_time("1h30m", 10000).unwrap(), 10000 - 5400);
        assert_eq!(parse_time("1700000000", 0).unwrap(), 1_700_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0).unwrap(), 1_700_000_000);
        assert!(parse_time("10", 0).is_ok());
        assert!(parse_time("abc", 0).is_err());
    }
}
