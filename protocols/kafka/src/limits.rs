//! Bounds on what the codec accepts from the network.

/// Limits checked before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame (the size prefix, excluding its own 4 bytes). Kafka's
    /// `socket.request.max.bytes` defaults to 100 MiB; the proxy holds a whole request before
    /// splitting it, so its default is lower.
    pub max_request_bytes: usize,
    /// Largest response frame from a broker (a Fetch answer can be large: `fetch.max.bytes`
    /// defaults to 50 MiB in clients).
    pub max_response_bytes: usize,
}

impl Limits {
    /// Default [`Limits::max_request_bytes`]: 16 MiB (Kafka's `message.max.bytes` is 1 MiB by
    /// default; a Produce carries batches for many partitions).
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;
    /// Default [`Limits::max_response_bytes`]: 64 MiB.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: Self::DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}
