//! Bounds on what a decoder accepts, checked before anything is allocated.

/// Bounds applied by [`crate::RequestDecoder`] and [`crate::ReplyDecoder`].
///
/// Every length read off the wire is compared with these before the decoder waits for, or
/// allocates for, the bytes it announces. Memory held by a decoder for one frame is therefore
/// bounded by `max_frame_len` bytes of input (kept by the caller's buffer) plus
/// `max_frame_elements` tape nodes (28 bytes each) or argument offsets (12 bytes each).
///
/// Redis itself accepts bulk strings up to `proto-max-bulk-len` (512 MB), more than a Wasm
/// filter should hold for one frame; the defaults here are sized for a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, bulk error or verbatim string (payload bytes). Also bounds simple
    /// strings, simple errors and big numbers, whose length is only known at their CRLF.
    /// Default 64 MiB.
    pub max_bulk_len: usize,
    /// Most elements one aggregate may announce (array, set, push; pairs for map and
    /// attribute; arguments of a request). Default 1 Mi (1 048 576).
    pub max_aggregate_len: usize,
    /// Most values in one frame, all nesting levels together (each costs a tape node).
    /// Default 2 Mi.
    pub max_frame_elements: usize,
    /// Deepest nesting of aggregates (and attributes). Default 64. Clamped to
    /// [`Limits::DEPTH_CEILING`].
    pub max_depth: usize,
    /// Longest inline command line, without its newline (Redis: 64 KiB). Default 64 KiB.
    pub max_inline_len: usize,
    /// Most bytes one frame (one request, one reply) may span. Default 256 MiB. Clamped below
    /// `u32::MAX` (offsets are stored as `u32`).
    pub max_frame_len: usize,
}

impl Limits {
    /// The largest accepted `max_depth`: keeps the drop of a decoded [`crate::Frame`] tree
    /// (recursive, as every Rust tree's drop is) far from the stack's end.
    pub const DEPTH_CEILING: usize = 1000;

    /// Redis's own request bounds (512 MB bulk strings, 1 Gi arguments less what memory
    /// allows): only for trusted native use, not inside Wasm.
    pub const fn redis_server() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_aggregate_len: i32::MAX as usize,
            max_frame_elements: i32::MAX as usize,
            max_depth: Self::DEPTH_CEILING,
            max_inline_len: 64 * 1024,
            max_frame_len: u32::MAX as usize,
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.max_depth.min(Self::DEPTH_CEILING)
    }

    /// Below `u32::MAX` (offsets are `u32`), hence below `usize::MAX` on wasm32 too, so a
    /// saturated `start + len + 2` always exceeds it.
    pub(crate) fn frame_len(&self) -> usize {
        self.max_frame_len.min(u32::MAX as usize - 1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 64 * 1024 * 1024,
            max_aggregate_len: 1 << 20,
            max_frame_elements: 2 << 20,
            max_depth: 64,
            max_inline_len: 64 * 1024,
            max_frame_len: 256 * 1024 * 1024,
        }
    }
}
