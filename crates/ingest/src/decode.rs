//! Text encodings: detection, validation of a declared encoding, and a streaming decoder that
//! never splits a character and remembers where every undecodable byte sequence was.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use encoding_rs::{DecoderResult, Encoding, GB18030, GBK, UTF_8, UTF_16BE, UTF_16LE};

/// How an encoding was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncodingSource {
    /// Given by the user or the source definition.
    Declared,
    /// A byte-order mark at the start of the file.
    Bom,
    /// The sample is valid UTF-8.
    ValidUtf8,
    /// Statistical detection (chardetng).
    Detected,
    /// Byte patterns typical of UTF-16 without a BOM.
    Utf16Pattern,
}

/// The encoding a file will be decoded with.
#[derive(Debug, Clone, Copy)]
pub struct EncodingChoice {
    pub encoding: &'static Encoding,
    pub source: EncodingSource,
    /// Length of the byte-order mark at the start of the file, if any.
    pub bom_len: usize,
}

/// Looks an encoding up by a label users write (`utf-8`, `gbk`, `GB18030`, `utf-16le`, `cp936` …).
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    let l = label.trim().to_ascii_lowercase();
    match l.as_str() {
        "utf8" | "utf-8-sig" | "utf8-bom" | "utf-8-bom" => Some(UTF_8),
        "utf16le" | "utf-16le" => Some(UTF_16LE),
        "utf16be" | "utf-16be" => Some(UTF_16BE),
        "utf16" | "utf-16" => Some(UTF_16LE),
        "cp936" | "gb2312" | "gbk" => Some(GBK),
        "gb18030" => Some(GB18030),
        _ => Encoding::for_label(l.as_bytes()),
    }
}

fn bom(sample: &[u8]) -> Option<(&'static Encoding, usize)> {
    Encoding::for_bom(sample)
}

/// Whether a sample is valid UTF-8, allowing a sequence cut off at the end of a partial sample.
fn is_utf8(sample: &[u8], complete: bool) -> bool {
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none() && sample.len() - e.valid_up_to() < 4,
    }
}

fn utf16_pattern(sample: &[u8]) -> Option<&'static Encoding> {
    if sample.len() < 16 {
        return None;
    }
    let n = sample.len() / 2 * 2;
    let (mut even_zero, mut odd_zero) = (0usize, 0usize);
    for (i, b) in sample[..n].iter().enumerate() {
        if *b == 0 {
            if i % 2 == 0 {
                even_zero += 1;
            } else {
                odd_zero += 1;
            }
        }
    }
    let pairs = n / 2;
    // Mostly-ASCII UTF-16 text has a zero in one half of almost every code unit.
    if odd_zero * 10 > pairs * 6 && even_zero * 10 < pairs {
        Some(UTF_16LE)
    } else if even_zero * 10 > pairs * 6 && odd_zero * 10 < pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// Detects the encoding of a file from its first bytes. `complete` says the sample is the whole
/// file.
pub fn detect(sample: &[u8], complete: bool) -> EncodingChoice {
    if let Some((encoding, bom_len)) = bom(sample) {
        return EncodingChoice {
            encoding,
            source: EncodingSource::Bom,
            bom_len,
        };
    }
    if let Some(encoding) = utf16_pattern(sample) {
        return EncodingChoice {
            encoding,
            source: EncodingSource::Utf16Pattern,
            bom_len: 0,
        };
    }
    if is_utf8(sample, complete) {
        return EncodingChoice {
            encoding: UTF_8,
            source: EncodingSource::ValidUtf8,
            bom_len: 0,
        };
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(sample, complete);
    // Reservoir's files are mostly Chinese: let the .cn hint break ties toward GBK.
    let encoding = detector.guess(Some(b"cn"), chardetng::Utf8Detection::Allow);
    EncodingChoice {
        encoding,
        source: EncodingSource::Detected,
        bom_len: 0,
    }
}

/// The first undecodable byte sequence of a sample under an encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstMalformed {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Decodes a sample fully and reports the first malformed sequence, if any. A sequence cut off at
/// the end of an incomplete sample does not count.
pub fn first_malformed(
    encoding: &'static Encoding,
    sample: &[u8],
    complete: bool,
) -> Option<FirstMalformed> {
    let mut decoder = encoding.new_decoder_with_bom_removal();
    let mut out = vec![
        0u8;
        decoder
            .max_utf8_buffer_length(sample.len())
            .unwrap_or(sample.len() * 3 + 16)
    ];
    let (result, read, _written) =
        decoder.decode_to_utf8_without_replacement(sample, &mut out, complete);
    match result {
        // The buffer holds the worst case, so the whole sample was decoded.
        DecoderResult::InputEmpty | DecoderResult::OutputFull => None,
        DecoderResult::Malformed(bad, after) => {
            let end = read - after as usize;
            let start = end - bad as usize;
            Some(FirstMalformed {
                offset: start as u64,
                bytes: sample[start..end].to_vec(),
            })
        }
    }
}

/// Formats bytes as `0xD6 0xD0`.
pub fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("0x{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One undecodable byte sequence met while decoding a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Offset in the decoded UTF-8 stream where U+FFFD was written in its place.
    pub output_offset: u64,
    /// Offset of the bad bytes in the source file.
    pub input_offset: u64,
    pub bytes: Vec<u8>,
}

/// Shared log of malformed sequences, read by the parser to attribute them to rows.
#[derive(Debug, Clone, Default)]
pub struct MalformedLog(Arc<Mutex<Vec<Malformed>>>);

impl MalformedLog {
    fn push(&self, m: Malformed) {
        if let Ok(mut v) = self.0.lock() {
            v.push(m);
        }
    }

    /// Removes and returns the entries whose output offset is below `end`.
    pub fn take_before(&self, end: u64) -> Vec<Malformed> {
        let Ok(mut v) = self.0.lock() else {
            return Vec::new();
        };
        let n = v.iter().take_while(|m| m.output_offset < end).count();
        v.drain(..n).collect()
    }

    /// Removes and returns everything logged.
    pub fn take_all(&self) -> Vec<Malformed> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// Counts bytes read from the underlying source, for progress reporting.
#[derive(Debug, Clone, Default)]
pub struct ByteCounter(Arc<AtomicU64>);

impl ByteCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that decodes any encoding into UTF-8 as a stream.
///
/// Each undecodable sequence becomes U+FFFD in the output and an entry in the [`MalformedLog`]
/// with its source byte offset. Characters are never split: the decoder keeps partial sequences
/// across buffer boundaries.
pub struct DecodingReader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    in_buf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    done: bool,
    out_buf: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    /// Absolute input offset of `in_buf[0]`.
    buf_base: u64,
    /// The last bytes before `buf_base`.
    tail: Vec<u8>,
    output_produced: u64,
    log: MalformedLog,
    counter: ByteCounter,
}

const IN_BUF: usize = 256 * 1024;
/// Bytes of the previous buffer kept to report malformed sequences that straddle buffers.
const TAIL: usize = 8;

impl<R: Read> DecodingReader<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        let decoder = encoding.new_decoder_with_bom_removal();
        let out_len = decoder.max_utf8_buffer_length(IN_BUF).unwrap_or(IN_BUF * 3) + 64;
        Self {
            inner,
            decoder,
            in_buf: vec![0u8; IN_BUF].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            eof: false,
            done: false,
            out_buf: vec![0u8; out_len].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            buf_base: 0,
            tail: Vec::with_capacity(TAIL),
            output_produced: 0,
            log: MalformedLog::default(),
            counter: ByteCounter::default(),
        }
    }

    pub fn malformed_log(&self) -> MalformedLog {
        self.log.clone()
    }

    pub fn byte_counter(&self) -> ByteCounter {
        self.counter.clone()
    }

    fn fill(&mut self) -> io::Result<()> {
        // Refill output from input, reading more input when needed.
        while self.out_start == self.out_end && !self.done {
            if self.in_start == self.in_end && !self.eof {
                // Keep the last bytes of the spent buffer: a malformed sequence reported later
                // may have started in them.
                let keep = self.in_end.min(TAIL);
                self.tail.clear();
                self.tail
                    .extend_from_slice(&self.in_buf[self.in_end - keep..self.in_end]);
                self.buf_base += self.in_end as u64;
                let n = loop {
                    match self.inner.read(&mut self.in_buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.counter.0.fetch_add(n as u64, Ordering::Relaxed);
                self.in_start = 0;
                self.in_end = n;
                self.eof = n == 0;
            }
            let last = self.eof;
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.in_buf[self.in_start..self.in_end],
                &mut self.out_buf[..],
                last,
            );
            self.in_start += read;
            self.out_start = 0;
            self.out_end = written;
            match result {
                DecoderResult::InputEmpty => {
                    if last {
                        self.done = true;
                    }
                }
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(bad, after) => {
                    // The bad bytes end `after` bytes before the current input position; when a
                    // sequence started in the previous buffer, part of it is in `tail`.
                    let end = self.buf_base + self.in_start as u64 - after as u64;
                    let start = end.saturating_sub(bad as u64);
                    let bytes = (start..end).filter_map(|p| self.byte_at(p)).collect();
                    let replacement = "\u{FFFD}".as_bytes();
                    let w = self.out_end;
                    self.out_buf[w..w + replacement.len()].copy_from_slice(replacement);
                    self.out_end += replacement.len();
                    self.log.push(Malformed {
                        output_offset: self.output_produced + w as u64,
                        input_offset: start,
                        bytes,
                    });
                }
            }
            self.output_produced += (self.out_end - self.out_start) as u64;
        }
        Ok(())
    }

    /// The input byte at absolute offset `p`, if still in view.
    fn byte_at(&self, p: u64) -> Option<u8> {
        if p >= self.buf_base {
            self.in_buf.get((p - self.buf_base) as usize).copied()
        } else {
            let back = (self.buf_base - p) as usize;
            self.tail.len().checked_sub(back).map(|i| self.tail[i])
        }
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.out_end {
            self.fill()?;
        }
        let n = (self.out_end - self.out_start).min(buf.len());
        buf[..n].copy_from_slice(&self.out_buf[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], enc: &'static Encoding, chunk: usize) -> (String, Vec<Malformed>) {
        /// Hands out at most `chunk` bytes per read, to split characters across reads.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = DecodingReader::new(Trickle(bytes, chunk), enc);
        let log = r.malformed_log();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        (s, log.take_all())
    }

    #[test]
    fn gbk_split_across_reads_is_never_broken() {
        let (gbk, _, _) = GBK.encode("松江区,岳阳街道\n永丰街道");
        for chunk in 1..5 {
            let (text, bad) = decode_all(&gbk, GBK, chunk);
            assert_eq!(text, "松江区,岳阳街道\n永丰街道", "chunk {chunk}");
            assert!(bad.is_empty());
        }
    }

    #[test]
    fn truncated_gbk_reports_the_byte_offset() {
        let (gbk, _, _) = GBK.encode("地区,值\n北京市,1\n上海");
        let cut = &gbk[..gbk.len() - 1]; // half of the last character
        let (text, bad) = decode_all(cut, GBK, 3);
        assert!(text.ends_with("上\u{FFFD}"));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].input_offset, (cut.len() - 1) as u64);
        assert_eq!(bad[0].bytes, vec![*cut.last().unwrap()]);
    }

    #[test]
    fn invalid_utf8_is_located() {
        let bytes = b"a,b\n1,\xff\xfe\n";
        let (text, bad) = decode_all(bytes, UTF_8, 2);
        assert_eq!(text, "a,b\n1,\u{FFFD}\u{FFFD}\n");
        assert_eq!(
            bad.iter().map(|m| m.input_offset).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(bad[0].output_offset, 6);
        assert_eq!(bad[1].output_offset, 9);
    }

    #[test]
    fn detection() {
        let (gbk, _, _) =
            GBK.encode("地区,2024年,2023年\n北京市,49670.2,47353.7\n天津市,17931.3,17211.8\n");
        assert_eq!(detect(&gbk, true).encoding, GBK);
        assert_eq!(detect("地区,值\n".as_bytes(), true).encoding, UTF_8);
        let bom = [&[0xEF, 0xBB, 0xBF][..], "a,b\n".as_bytes()].concat();
        let c = detect(&bom, true);
        assert_eq!(
            (c.encoding, c.source, c.bom_len),
            (UTF_8, EncodingSource::Bom, 3)
        );
        let utf16: Vec<u8> = "name,value\nalpha,1\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(detect(&utf16, true).encoding, UTF_16LE);
        let (text, bad) = decode_all(&utf16, UTF_16LE, 3);
        assert_eq!(text, "name,value\nalpha,1\n");
        assert!(bad.is_empty());
    }

    #[test]
    fn labels() {
        assert_eq!(encoding_for_label("GBK"), Some(GBK));
        assert_eq!(encoding_for_label("cp936"), Some(GBK));
        assert_eq!(encoding_for_label("gb18030"), Some(GB18030));
        assert_eq!(encoding_for_label("UTF-8"), Some(UTF_8));
        assert_eq!(encoding_for_label("klingon"), None);
    }
}
