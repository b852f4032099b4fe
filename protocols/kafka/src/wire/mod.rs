//! Kafka's primitive types: a bounds-checked reader over one frame and the matching writers.
//!
//! Every length and count read here is checked against the bytes left in the frame before
//! anything is allocated: an array of N elements needs at least N bytes (every element of every
//! Kafka array encodes to one byte or more), a string or byte field of N bytes needs N bytes.

mod reader;
mod writer;

pub use reader::Reader;
pub use writer::Writer;

/// A 16-byte UUID (topic ids).
pub type Uuid = [u8; 16];
