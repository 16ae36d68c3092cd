//! A deterministic ustar writer: the subset image layers and OCI archives need.
//!
//! Every entry has mtime 0, uid/gid 0 and no user or group names, so the same input gives the
//! same bytes. Paths longer than 100 bytes go into the ustar prefix field (up to 255 bytes
//! split at a `/`); anything longer is refused rather than written with a PAX extension.
//!
//! ```text
//! header (512 bytes, POSIX.1-1988 ustar):
//!   0 name[100]  100 mode[8]  108 uid[8]  116 gid[8]  124 size[12]  136 mtime[12]
//!   148 chksum[8]  156 typeflag  157 linkname[100]  257 "ustar\0"  263 "00"
//!   265 uname[32]  297 gname[32]  329 devmajor[8]  337 devminor[8]  345 prefix[155]
//! then the content, padded to 512 bytes; the archive ends with two zero blocks.
//! ```

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A hard link to an earlier entry of the same archive.
    HardLink,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        }
    }
}

/// Writes a tar stream to `W`.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    /// A directory; `path` without a trailing slash.
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.header(&format!("{path}/"), Kind::Dir, mode, 0, "")
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.header(path, Kind::Symlink, 0o777, 0, target)
    }

    /// A second name for the earlier entry `target` (same content; `mode` repeated for readers
    /// that show it).
    pub fn hard_link(&mut self, path: &str, mode: u32, target: &str) -> io::Result<()> {
        self.header(path, Kind::HardLink, mode, 0, target)
    }

    /// A regular file of exactly `size` bytes read from `content`.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, content: impl Read) -> io::Result<()> {
        self.header(path, Kind::File, mode, size, "")?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, read {copied}"),
            ));
        }
        self.pad(size)
    }

    pub fn file_bytes(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.file(path, mode, data.len() as u64, data)
    }

    /// The two zero blocks that end an archive; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(&mut self, path: &str, kind: Kind, mode: u32, size: u64, link: &str) -> io::Result<()> {
        let h = header(path, kind, mode, size, link)?;
        self.out.write_all(&h)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// One 512-byte ustar header.
pub fn header(path: &str, kind: Kind, mode: u32, size: u64, link: &str) -> io::Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = split_path(path).ok_or_else(|| invalid(format!("tar path too long: {path}")))?;
    if link.len() > 100 {
        return Err(invalid(format!("tar link target too long: {link}")));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size >= 1 << 33 {
        return Err(invalid(format!("{path}: {size} bytes is too large for ustar")));
    }
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind.flag();
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field as spaces, then written as 6 digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    Ok(h)
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// `(prefix, name)` with `name` ≤ 100 bytes and `prefix` ≤ 155, split at a `/`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some(("", path));
    }
    // A directory's trailing slash belongs to the name part.
    let body = path.strip_suffix('/').unwrap_or(path);
    body.char_indices()
        .filter(|&(_, c)| c == '/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(p, n)| p.len() <= 155 && n.len() <= 100 && !n.is_empty())
}

/// One entry read back by [`entries`] (tests and checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: String,
    pub data: Vec<u8>,
}

/// Reads back an archive written by [`Writer`] (ustar only), checking every header checksum.
pub fn entries(mut data: &[u8]) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    loop {
        if data.len() < BLOCK {
            return Err(bad("archive ends without two zero blocks".into()));
        }
        let h = &data[..BLOCK];
        if h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let num = |r: std::ops::Range<usize>| {
            let s = field(r);
            u64::from_str_radix(s.trim(), 8).map_err(|_| bad(format!("bad octal field {s:?}")))
        };
        let mut sum_h = [0u8; BLOCK];
        sum_h.copy_from_slice(h);
        sum_h[148..156].fill(b' ');
        let sum: u64 = sum_h.iter().map(|&b| u64::from(b)).sum();
        if num(148..156)? != sum {
            return Err(bad(format!("bad header checksum for {}", field(0..100))));
        }
        let prefix = field(345..500);
        let name = field(0..100);
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = match h[156] {
            b'0' | 0 => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'5' => Kind::Dir,
            t => return Err(bad(format!("{path}: unsupported entry type {t}"))),
        };
        let size = num(124..136)? as usize;
        let padded = size.div_ceil(BLOCK) * BLOCK;
        if data.len() < BLOCK + padded {
            return Err(bad(format!("{path}: truncated content")));
        }
        out.push(Entry {
            path,
            kind,
            mode: num(100..108)? as u32,
            uid: num(108..116)?,
            gid: num(116..124)?,
            mtime: num(136..148)?,
            link: field(157..257),
            data: data[BLOCK..BLOCK + size].to_vec(),
        });
        data = &data[BLOCK + padded..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_fixed_metadata() {
        let mut w = Writer::new(Vec::new());
        w.dir("etc", 0o755).unwrap();
        w.file_bytes("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n")
            .unwrap();
        w.symlink("bin/sh", "dash").unwrap();
        w.hard_link("usr/sbin/iptables", 0o755, "usr/sbin/xtables-nft-multi")
            .unwrap();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        w.file_bytes(&long, 0o755, &[7; 600]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % BLOCK, 0);
        let e = entries(&bytes).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!((e[0].path.as_str(), e[0].kind), ("etc/", Kind::Dir));
        assert_eq!(e[1].data, b"root:x:0:0::/:/bin/sh\n");
        assert_eq!((e[2].kind, e[2].link.as_str()), (Kind::Symlink, "dash"));
        assert_eq!(e[3].kind, Kind::HardLink);
        assert_eq!(
            (e[4].path.as_str(), e[4].mode, e[4].data.len()),
            (long.as_str(), 0o755, 600)
        );
        assert!(e.iter().all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0));
    }

    #[test]
    fn header_matches_the_ustar_layout() {
        let h = header("a", Kind::File, 0o644, 5, "").unwrap();
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar\x0000");
        // Checksum: six octal digits, NUL, space.
        assert_eq!(h[154], 0);
        assert_eq!(h[155], b' ');
    }

    #[test]
    fn paths_that_cannot_be_split_are_refused() {
        assert!(header(&"x".repeat(101), Kind::File, 0o644, 0, "").is_err());
        assert!(header("a", Kind::Symlink, 0o777, 0, &"t".repeat(101)).is_err());
    }
}
