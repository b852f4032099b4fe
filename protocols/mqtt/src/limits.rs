//! Bounds on what the decoder accepts, checked before anything is allocated or awaited.

/// Bounds applied by [`crate::Decoder`].
///
/// The remaining length is compared with `max_packet_size` as soon as its (at most 4) bytes
/// are in, before the decoder waits for the body: a header announcing 256 MB is refused after 5
/// bytes. Everything else is bounded by the packet (the body is held once, as the caller's
/// buffer), except what decoding allocates per element: user properties (two `Bytes` handles
/// per pair, at least 5 wire bytes) and topic filters (one entry per filter, at least 3 wire
/// bytes), which have their own counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet, fixed header included (MQTT 5.0's Maximum Packet Size counts it too).
    /// Default 4 MiB; at most [`Limits::PROTOCOL_MAX_PACKET`]. Over: Packet too large (0x95).
    pub max_packet_size: u32,
    /// Longest topic name or topic filter. Default 65535 (the protocol's own bound). Over:
    /// Topic Name invalid (0x90).
    pub max_topic_len: u16,
    /// Longest properties section (MQTT 5.0). Default 64 KiB. Over: Packet too large.
    pub max_properties_len: u32,
    /// Most user properties in one properties section. Default 64. Over: Packet too large.
    pub max_user_properties: u16,
    /// Most topic filters in one SUBSCRIBE or UNSUBSCRIBE. Default 128. Over: Packet too large.
    pub max_topic_filters: u16,
}

impl Limits {
    /// The largest packet MQTT can frame: 1 byte of type, 4 of remaining length, 268 435 455.
    pub const PROTOCOL_MAX_PACKET: u32 = 1 + 4 + Self::MAX_REMAINING_LENGTH;
    /// The largest remaining length a 4-byte variable byte integer holds.
    pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

    /// `max_packet_size` clamped to what MQTT can frame.
    pub(crate) fn packet_size(&self) -> u32 {
        self.max_packet_size.min(Self::PROTOCOL_MAX_PACKET)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: 4 << 20,
            max_topic_len: u16::MAX,
            max_properties_len: 64 << 10,
            max_user_properties: 64,
            max_topic_filters: 128,
        }
    }
}
