//! Compression detection by magic bytes, and decompression.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use crate::error::{Error, Result};

/// Compression of a stream, told by its first bytes (never by media type alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            _ => Compression::None,
        }
    }
}

/// Reads up to 6 bytes from `r` (looping over short reads).
fn peek(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

/// Wraps `r` in the decompressor its magic bytes call for. `what` names the stream in
/// errors. The returned reader yields the uncompressed bytes; read it to the end so a
/// gzip checksum is verified.
pub(crate) fn decompress<'a>(r: &'a mut dyn Read, what: &str) -> Result<Box<dyn Read + 'a>> {
    let head = peek(r).map_err(|source| Error::Io { context: format!("{what}: read"), source })?;
    let kind = Compression::detect(&head);
    let buffered = BufReader::with_capacity(128 * 1024, Cursor::new(head).chain(r));
    match kind {
        Compression::None => Ok(Box::new(buffered)),
        Compression::Gzip => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered))),
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(buffered)
            .map(|d| Box::new(d) as Box<dyn Read + 'a>)
            .map_err(|source| Error::Io { context: format!("{what}: zstd"), source }),
        Compression::Xz => Err(Error::Unsupported(format!("{what}: xz compression"))),
        Compression::Bzip2 => Err(Error::Unsupported(format!("{what}: bzip2 compression"))),
    }
}

/// `"gzip"`, `"zstd"`, `"xz"`, `"bzip2"` or `"none"`, from the first bytes of a stream.
pub fn compression_of(head: &[u8]) -> &'static str {
    match Compression::detect(head) {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::Xz => "xz",
        Compression::Bzip2 => "bzip2",
    }
}

/// True when the stream starts with gzip/zstd/xz/bzip2 magic.
pub(crate) fn is_compressed(r: &mut dyn BufRead) -> io::Result<bool> {
    let head = r.fill_buf()?;
    Ok(Compression::detect(head) != Compression::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::detect(b"BZh9"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"\xfd7zXZ\0"), Compression::Xz);
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn gzip_and_zstd_roundtrip() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"payload").unwrap();
        let gz = enc.finish().unwrap();
        let mut src = &gz[..];
        let mut out = String::new();
        decompress(&mut src, "t").unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "payload");

        let z = zstd::stream::encode_all(&b"zstd payload"[..], 3).unwrap();
        let mut src = &z[..];
        let mut out = String::new();
        decompress(&mut src, "t").unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "zstd payload");

        let mut x = &b"\xfd7zXZ\0rest"[..];
        let err = decompress(&mut x, "layer x").err().unwrap().to_string();
        assert_eq!(err, "layer x: xz compression is not supported");
    }
}
