//! Opening input files (plain or gzip/BGZF, detected by magic bytes) and reading them line by line
//! with 1-based line numbers, so every parse error can name its file and line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::data::{DataError, Result};

const BUFFER: usize = 1 << 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens `path` for reading, decompressing transparently when it starts with the gzip magic bytes
/// (`1f 8b`; BGZF files are gzip members too and read the same way).
pub(crate) fn open(path: &Path) -> Result<LineCounting<Box<dyn Read>>> {
    let file = File::open(path).map_err(DataError::io(path))?;
    let mut reader = BufReader::with_capacity(BUFFER, file);
    let head = reader.fill_buf().map_err(DataError::io(path))?;
    let raw: Box<dyn Read> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    Ok(LineCounting::new(raw))
}

/// A buffered reader that counts the line feeds consumed so far, so a caller that hands it to a
/// parser (noodles' FASTA reader) can still tell on which line a record starts.
pub(crate) struct LineCounting<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
    newlines: usize,
}

impl<R: Read> LineCounting<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            filled: 0,
            newlines: 0,
        }
    }

    /// The 1-based number of the line the next byte belongs to.
    pub(super) fn line(&self) -> usize {
        self.newlines + 1
    }

    /// Reads the next line into `line` without its `\n` or `\r\n`; returns its 1-based number, or
    /// `None` at the end of the input.
    pub(crate) fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let number = self.line();
        line.clear();
        if self.read_until(b'\n', line)? == 0 {
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        Ok(Some(number))
    }
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for LineCounting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.filled = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, amt: usize) {
        let end = (self.pos + amt).min(self.filled);
        self.newlines += self.buf[self.pos..end].iter().filter(|&&b| b == b'\n').count();
        self.pos = end;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_plain_and_gzipped_lines_with_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"one\r\ntwo\n\nfour";
        let plain = dir.path().join("a.txt");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("a.txt.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for path in [plain, gz] {
            let mut r = open(&path).unwrap();
            let mut line = Vec::new();
            let mut got = Vec::new();
            while let Some(n) = r.next_line(&mut line).unwrap() {
                got.push((n, String::from_utf8(line.clone()).unwrap()));
            }
            let want = [(1, "one"), (2, "two"), (3, ""), (4, "four")];
            assert_eq!(got, want.map(|(n, s)| (n, s.to_owned())));
        }
    }
}
