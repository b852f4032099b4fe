//! The answers of several brokers merged into the one answer the client sees.

pub mod connack;
pub mod suback;

pub use connack::{merge_connacks, ProxyOffer};
pub use suback::{merge_suback_code, merge_unsuback_code, AckMerge};
