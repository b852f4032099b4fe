//! gzip bodies (`Content-Encoding: gzip` on `/write`): RFC 1952 header, raw deflate inflated with
//! a bounded output, the trailer's length checked. Concatenated members are inflated in turn.

use miniz_oxide::inflate::TINFLStatus;

/// Why a body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GzipError {
    /// Inflated, it would be larger than the limit.
    TooLarge,
    /// Not a gzip stream, or a corrupt one.
    Invalid(&'static str),
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// Inflates `body`, at most `limit` bytes out.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let data = member_data(rest)?;
        let before = out.len();
        let consumed = inflate(data, &mut out, limit)?;
        let trailer = data
            .get(consumed..consumed + 8)
            .ok_or(GzipError::Invalid("truncated trailer"))?;
        let mut size = [0u8; 4];
        size.copy_from_slice(trailer.get(4..8).unwrap_or(&[0; 4]));
        if u32::from_le_bytes(size) != ((out.len() - before) as u64 & 0xffff_ffff) as u32 {
            return Err(GzipError::Invalid("length in the trailer differs"));
        }
        rest = data.get(consumed + 8..).unwrap_or_default();
    }
    Ok(out)
}

/// Inflates the raw deflate stream at the start of `data` onto `out` (at most `limit` bytes in
/// all); returns how many input bytes the stream used.
fn inflate(data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, GzipError> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    let mut state = DecompressorOxide::new();
    let mut out_pos = out.len();
    let mut in_pos = 0usize;
    let grow = |len: usize| len.saturating_mul(2).max(len + 4096).min(limit);
    out.resize(grow(out_pos).max(out_pos), 0);
    loop {
        let input = data.get(in_pos..).unwrap_or_default();
        let (status, used, written) = decompress(
            &mut state,
            input,
            out,
            out_pos,
            inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
        );
        in_pos += used;
        out_pos += written;
        match status {
            TINFLStatus::Done => {
                out.truncate(out_pos);
                return Ok(in_pos);
            }
            TINFLStatus::HasMoreOutput => {
                let next = grow(out.len());
                if next <= out.len() {
                    return Err(GzipError::TooLarge);
                }
                out.resize(next, 0);
            }
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(GzipError::Invalid("truncated deflate data"))
            }
            _ => return Err(GzipError::Invalid("corrupt deflate data")),
        }
    }
}

/// The deflate data of the member at the start of `b` (after its header).
fn member_data(b: &[u8]) -> Result<&[u8], GzipError> {
    let head = b.get(..10).ok_or(GzipError::Invalid("truncated header"))?;
    if head.first() != Some(&0x1f) || head.get(1) != Some(&0x8b) {
        return Err(GzipError::Invalid("not gzip"));
    }
    if head.get(2) != Some(&8) {
        return Err(GzipError::Invalid("not deflate"));
    }
    let flags = head.get(3).copied().unwrap_or(0);
    let mut pos = 10usize;
    if flags & FEXTRA != 0 {
        let lo = usize::from(*b.get(pos).ok_or(GzipError::Invalid("truncated extra"))?);
        let hi = usize::from(
            *b.get(pos + 1)
                .ok_or(GzipError::Invalid("truncated extra"))?,
        );
        pos += 2 + (hi << 8 | lo);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let zero = b
                .get(pos..)
                .and_then(|r| memchr::memchr(0, r))
                .ok_or(GzipError::Invalid("truncated name"))?;
            pos += zero + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    b.get(pos..).ok_or(GzipError::Invalid("truncated header"))
}
