//! Compressed reports: `report.jsonl.zst` (zstd) and `report.jsonl.gz` (gzip).
//!
//! Readers detect the format by the stream's first bytes (its magic number), not by the
//! file's name, so a renamed report still reads. Writers pick it from the name
//! (`.zst`, `.gz`).
//!
//! A scan killed while writing leaves a stream cut short: the last zstd frame or gzip
//! member has no end. Every record written before the last flush decodes anyway (a zstd
//! flush ends a block, a gzip flush is a deflate sync flush), so the reader treats a
//! stream that ends early as the end of the report, not as an error: the records read
//! so far count, and a line cut short shows up as an incomplete last line, as in an
//! uncompressed report killed mid-write.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

/// Buffer of the reader below the line reader.
const READ_BUFFER_BYTES: usize = 1 << 16;

/// zstd's level for reports: its default (fast, and reports compress about 10:1).
const ZSTD_LEVEL: i32 = 3;

/// How a report's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

/// The first bytes of a zstd frame (RFC 8878 §3.1.1, little-endian 0xFD2FB528).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The first bytes of a gzip member (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl Compression {
    /// The compression a written report gets from its name: `.zst` or `.gz`.
    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("zst" | "zstd") => Compression::Zstd,
            Some("gz") => Compression::Gzip,
            _ => Compression::None,
        }
    }

    /// The compression of a stream that starts with `head`.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    pub fn is_compressed(self) -> bool {
        self != Compression::None
    }
}

/// The compression of the file at `path`, from its first bytes.
pub fn detect_file(path: &Path) -> io::Result<Compression> {
    let mut head = [0; 4];
    let mut file = File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(Compression::detect(&head[..filled]))
}

/// Opens the report at `path` for reading its decompressed lines, whatever its
/// compression (found by its magic number).
pub fn open_report_reader(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    report_reader(File::open(path)?)
}

/// The decompressed bytes of `source`, a report plain or compressed.
pub fn report_reader<R: Read + Send + 'static>(source: R) -> io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, source);
    let compression = Compression::detect(sniff(&mut buffered)?);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        // Every frame of a stream of concatenated frames (a resumed report has one per
        // run) is read.
        Compression::Zstd => Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            EndsEarly(zstd::stream::read::Decoder::with_buffer(buffered)?),
        )),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            EndsEarly(flate2::bufread::MultiGzDecoder::new(buffered)),
        )),
    })
}

/// The first bytes of `reader` (up to 4), without consuming them. A read may return
/// fewer bytes than there are; fill until 4 or the end.
fn sniff<R: Read>(reader: &mut BufReader<R>) -> io::Result<&[u8]> {
    // A fresh BufReader's first fill reads up to its capacity; files and pipes give
    // at least the 4 magic bytes in one read unless the file is shorter.
    let head = reader.fill_buf()?;
    Ok(&head[..head.len().min(4)])
}

/// A decoder whose stream may have been cut short by a killed writer: the end of the
/// input inside a frame is the end of the data, not an error.
struct EndsEarly<R>(R);

impl<R: Read> Read for EndsEarly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

/// A report writer: plain, or a compressor over `file` whose `flush` makes everything
/// written so far decodable from the file (a zstd block end, a gzip sync flush), and
/// which ends its frame or member when dropped.
pub fn report_writer(file: File, compression: Compression) -> io::Result<Box<dyn Write + Send>> {
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Zstd => {
            Box::new(zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)?.auto_finish())
        }
        Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        )),
    })
}

/// Creates (truncates) the report at `path`, compressed as its name says.
pub fn create_report(path: &Path) -> io::Result<Box<dyn Write + Send>> {
    report_writer(File::create(path)?, Compression::from_path(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = "{\"record\":\"header\"}\n{\"record\":\"target\",\"domain\":\"a.test\"}\n";

    fn read_all(path: &Path) -> String {
        let mut text = String::new();
        open_report_reader(path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn the_format_is_found_by_magic_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, compression) in [
            ("a.jsonl.zst", Compression::Zstd),
            ("b.jsonl.gz", Compression::Gzip),
            ("c.jsonl", Compression::None),
        ] {
            let path = dir.path().join(name);
            assert_eq!(Compression::from_path(&path), compression);
            let mut out = create_report(&path).unwrap();
            out.write_all(LINES.as_bytes()).unwrap();
            drop(out);
            assert_eq!(detect_file(&path).unwrap(), compression, "{name}");
            // Renamed without its extension, it still reads.
            let renamed = dir.path().join(format!("{name}.renamed"));
            std::fs::rename(&path, &renamed).unwrap();
            assert_eq!(read_all(&renamed), LINES, "{name}");
        }
    }

    #[test]
    fn an_empty_or_tiny_file_reads_as_plain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl.zst");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read_all(&path), "");
        std::fs::write(&path, b"{}").unwrap();
        assert_eq!(read_all(&path), "{}");
    }

    /// A writer killed after a flush, mid-way through the next record: the file ends
    /// inside an unfinished frame (member). Every flushed record reads back.
    #[test]
    fn a_stream_cut_short_reads_up_to_the_last_flush() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [Compression::Zstd, Compression::Gzip] {
            let path = dir.path().join("cut");
            let mut out = report_writer(File::create(&path).unwrap(), compression).unwrap();
            out.write_all(LINES.as_bytes()).unwrap();
            out.flush().unwrap();
            let flushed = std::fs::read(&path).unwrap();
            out.write_all(b"{\"record\":\"target\",\"domain\":\"b.te")
                .unwrap();
            out.flush().unwrap();
            let cut_mid_record = std::fs::read(&path).unwrap();
            // The process dies here: nothing ends the frame.
            std::mem::forget(out);
            assert!(cut_mid_record.len() > flushed.len());
            std::fs::write(&path, &flushed).unwrap();
            assert_eq!(read_all(&path), LINES, "{compression:?}");
            std::fs::write(&path, &cut_mid_record).unwrap();
            assert_eq!(
                read_all(&path),
                format!("{LINES}{{\"record\":\"target\",\"domain\":\"b.te"),
                "{compression:?}"
            );
            // Cut inside the bytes of the flush itself: what decodes is a prefix.
            std::fs::write(&path, &cut_mid_record[..cut_mid_record.len() - 3]).unwrap();
            assert!(
                format!("{LINES}{{\"record\":\"target\",\"domain\":\"b.te")
                    .starts_with(&read_all(&path)),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn concatenated_streams_read_as_one() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [Compression::Zstd, Compression::Gzip] {
            let path = dir.path().join("two");
            let mut bytes = Vec::new();
            for part in ["{\"a\":1}\n", "{\"b\":2}\n"] {
                let tmp = dir.path().join("part");
                let mut out = report_writer(File::create(&tmp).unwrap(), compression).unwrap();
                out.write_all(part.as_bytes()).unwrap();
                drop(out);
                bytes.extend(std::fs::read(&tmp).unwrap());
            }
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(read_all(&path), "{\"a\":1}\n{\"b\":2}\n", "{compression:?}");
        }
    }
}
