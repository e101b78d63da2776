//! Writing container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`, with
//! size-based rotation: `container.log`, `container.log.1`, ... (oldest has the highest number).
//! Reading them back is the engine's (`cove_engine::logs`).

use crate::{Error, IoContext, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends records to a container's log, rotating by size.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    /// Rotate when the current file would exceed this many bytes (0: never).
    max_size: u64,
    /// Files kept, the current one included (>= 1).
    max_file: u32,
    /// Output that could not be written (a full disk), and why: said once in the log by the
    /// first write that succeeds again.
    lost: u64,
    lost_why: Option<String>,
}

/// Escapes a string as a JSON string body (no serde: this runs in the monitor).
fn json_escape(out: &mut Vec<u8>, s: &[u8]) {
    let text = String::from_utf8_lossy(s);
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c as usize) >> 4]);
                out.push(HEX[(c as usize) & 15]);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> Result<LogWriter> {
        let file =
            OpenOptions::new().create(true).append(true).open(path).ctx(|| format!("open log {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            lost: 0,
            lost_why: None,
        })
    }

    /// Bytes of output lost since the log was last written (0 when none).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Writes `data` as one record per line (a trailing partial line is one record too, as
    /// Docker does when a read returns no newline). Rotation happens between records, so a
    /// burst read in one go still keeps every file within `max_size` (a single record larger
    /// than that gets a file of its own).
    ///
    /// A write that fails (ENOSPC) leaves no half record: the file is cut back to its last
    /// whole one, the output counts as lost, and the container goes on. Once a write succeeds
    /// again, a `stderr` record before it says how much was lost and why, once.
    pub fn write(&mut self, stream: &str, data: &[u8]) -> Result<()> {
        if self.lost > 0 {
            let why = self.lost_why.take().unwrap_or_default();
            let note = format!("cove: the log lost {} bytes of output: {why}\n", self.lost);
            if let Err(e) = self.write_records("stderr", note.as_bytes()) {
                self.lost += data.len() as u64;
                self.lost_why = Some(why);
                return Err(e);
            }
            self.lost = 0;
        }
        let r = self.write_records(stream, data);
        if let Err(e) = &r {
            self.lost += data.len() as u64;
            self.lost_why = Some(e.to_string());
        }
        r
    }

    fn write_records(&mut self, stream: &str, data: &[u8]) -> Result<()> {
        let time = crate::time::now_rfc3339();
        let mut buf = Vec::with_capacity(data.len() + 64);
        let mut record = Vec::with_capacity(128);
        for line in data.split_inclusive(|b| *b == b'\n') {
            record.clear();
            record.extend_from_slice(b"{\"log\":\"");
            json_escape(&mut record, line);
            record.extend_from_slice(b"\",\"stream\":\"");
            record.extend_from_slice(stream.as_bytes());
            record.extend_from_slice(b"\",\"time\":\"");
            record.extend_from_slice(time.as_bytes());
            record.extend_from_slice(b"\"}\n");
            let pending = self.size + buf.len() as u64;
            if self.max_size > 0 && pending > 0 && pending + record.len() as u64 > self.max_size {
                self.flush(&buf)?;
                buf.clear();
                self.rotate()?;
            }
            buf.extend_from_slice(&record);
        }
        self.flush(&buf)
    }

    fn flush(&mut self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(buf) {
            // Part of it may have gone in: cut back to the last whole record (appends go to
            // the end, wherever that is).
            let _ = self.file.set_len(self.size);
            return Err(Error::Io { what: format!("write {}", self.path.display()), source: e });
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let n = self.max_file;
        if n == 1 {
            self.file.set_len(0).ctx(|| "truncate log".into())?;
            self.size = 0;
            return Ok(());
        }
        let name = |i: u32| -> PathBuf {
            if i == 0 {
                self.path.clone()
            } else {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{i}"));
                PathBuf::from(p)
            }
        };
        let _ = std::fs::remove_file(name(n - 1));
        for i in (0..n - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        self.file = match OpenOptions::new().create(true).append(true).open(&self.path) {
            Ok(f) => f,
            Err(source) => {
                // No room for a new file (a full disk): the file we hold gets its name back,
                // so the log goes on where it was rather than in `.1`.
                let _ = std::fs::rename(name(1), name(0));
                return Err(Error::Io { what: format!("open log {}", self.path.display()), source });
            }
        };
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 200, 2).unwrap();
        w.write("stdout", b"a \"q\"\x01\n").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("{\"log\":\"a \\\"q\\\"\\u0001\\n\",\"stream\":\"stdout\",\"time\":\""), "{text}");
        for i in 0..20 {
            w.write("stderr", format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(d.path().join("c.log.1").exists());
        assert!(!d.path().join("c.log.2").exists());
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
    }

    #[test]
    fn output_lost_to_a_full_disk_is_said_once_when_space_is_back() {
        // /dev/full answers every write with ENOSPC.
        let mut w = LogWriter::open(Path::new("/dev/full"), 0, 1).unwrap();
        let e = w.write("stdout", b"one\n").unwrap_err().to_string();
        assert!(e.contains("No space left on device"), "{e}");
        assert!(w.write("stdout", b"two\n").is_err());
        assert_eq!(w.lost(), 8);
        // Space is back (another file stands for the same log).
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        w.file = OpenOptions::new().create(true).append(true).open(&p).unwrap();
        w.write("stdout", b"three\n").unwrap();
        w.write("stdout", b"four\n").unwrap();
        assert_eq!(w.lost(), 0);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with(
                "{\"log\":\"cove: the log lost 8 bytes of output: write /dev/full: No space left on device"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("\"stream\":\"stderr\""), "{}", lines[0]);
        assert!(lines[1].contains("three") && lines[2].contains("four"), "{text}");
    }

    #[test]
    fn a_burst_in_one_write_still_rotates_by_size() {
        // 500 lines read in one go (a container printing faster than the monitor reads).
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 2048, 2).unwrap();
        let burst: String = (0..500).map(|i| format!("line {i}\n")).collect();
        w.write("stdout", burst.as_bytes()).unwrap();
        for f in [p.clone(), d.path().join("c.log.1")] {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len > 0 && len <= 2048, "{} is {len} bytes", f.display());
        }
        assert!(!d.path().join("c.log.2").exists());
        let last = std::fs::read_to_string(&p).unwrap();
        assert!(last.contains("line 499\\n"), "the newest file holds the last line: {last}");
        // A record larger than max_size gets a file of its own rather than being split.
        let big = "x".repeat(3000) + "\n";
        w.write("stderr", big.as_bytes()).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains(&"x".repeat(3000)));
    }
}
