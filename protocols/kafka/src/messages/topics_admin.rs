//! CreateTopics (v2-v7) and DeleteTopics (v1-v6; the codec reads v0 of both too) as the proxy reads them: a list of per-topic
//! entries, each kept as its raw bytes with the name (or id) it is routed by, and the rest of
//! the message kept raw. A request is split by re-writing a subset of its entries before the
//! same tail; answers are merged by picking each topic's raw result from its shard's answer.

use bytes::Bytes;

use crate::codes::ErrorCode;
use crate::error::DecodeError;
use crate::wire::{Reader, Uuid, Writer};

/// First flexible version of CreateTopics.
pub const CREATE_FLEXIBLE_FROM: i16 = 5;
/// First flexible version of DeleteTopics.
pub const DELETE_FLEXIBLE_FROM: i16 = 4;

/// Which API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Create,
    Delete,
}

impl Admin {
    fn flexible(self, version: i16) -> bool {
        match self {
            Admin::Create => version >= CREATE_FLEXIBLE_FROM,
            Admin::Delete => version >= DELETE_FLEXIBLE_FROM,
        }
    }
}

/// One topic of a request or of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The topic's name (`None`: DeleteTopics v6 naming it by id only).
    pub name: Option<Bytes>,
    /// DeleteTopics v6+: the topic id (zero when named).
    pub topic_id: Uuid,
    pub raw: Bytes,
}

/// A CreateTopics or DeleteTopics request or response: the bytes before the topics array
/// (a response's throttle), the entries, and the bytes after it (timeout, validate_only,
/// tagged fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub head: Bytes,
    pub entries: Vec<Entry>,
    pub tail: Bytes,
}

impl Topics {
    /// A request body.
    pub fn decode_request(api: Admin, r: &mut Reader, version: i16) -> Result<Topics, DecodeError> {
        let flexible = api.flexible(version);
        let n = r.array_len(flexible, 1, "topics")?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let start = r.position();
            let (name, topic_id) = match api {
                Admin::Create => {
                    let name = r.string(flexible, "name")?;
                    r.i32("num_partitions")?;
                    r.i16("replication_factor")?;
                    for _ in 0..r.array_len(flexible, 5, "assignments")? {
                        r.i32("partition_index")?;
                        r.i32_array(flexible, "broker_ids")?;
                        r.tagged_fields(flexible)?;
                    }
                    for _ in 0..r.array_len(flexible, 2, "configs")? {
                        r.string(flexible, "config name")?;
                        r.nullable_string(flexible, "config value")?;
                        r.tagged_fields(flexible)?;
                    }
                    r.tagged_fields(flexible)?;
                    (Some(name), [0; 16])
                }
                Admin::Delete if version >= 6 => {
                    let name = r.nullable_string(flexible, "name")?;
                    let id = r.uuid("topic_id")?;
                    r.tagged_fields(flexible)?;
                    (name, id)
                }
                Admin::Delete => (Some(r.string(flexible, "topic_names")?), [0; 16]),
            };
            entries.push(Entry {
                name,
                topic_id,
                raw: r.since(start),
            });
        }
        let tail = r.take(r.remaining(), "tail")?;
        Ok(Topics {
            head: Bytes::new(),
            entries,
            tail,
        })
    }

    /// A response body.
    pub fn decode_response(
        api: Admin,
        r: &mut Reader,
        version: i16,
    ) -> Result<Topics, DecodeError> {
        let flexible = api.flexible(version);
        let has_throttle = match api {
            Admin::Create => version >= 2,
            Admin::Delete => version >= 1,
        };
        let head = if has_throttle {
            r.take(4, "throttle_time_ms")?
        } else {
            Bytes::new()
        };
        let n = r.array_len(flexible, 3, "topics")?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let start = r.position();
            let name = match api {
                Admin::Delete if version >= 6 => r.nullable_string(flexible, "name")?,
                _ => Some(r.string(flexible, "name")?),
            };
            let topic_id = if (api == Admin::Create && version >= 7)
                || (api == Admin::Delete && version >= 6)
            {
                r.uuid("topic_id")?
            } else {
                [0; 16]
            };
            r.i16("error_code")?;
            let has_message = match api {
                Admin::Create => version >= 1,
                Admin::Delete => version >= 5,
            };
            if has_message {
                r.nullable_string(flexible, "error_message")?;
            }
            if api == Admin::Create && version >= 5 {
                r.i32("num_partitions")?;
                r.i16("replication_factor")?;
                if let Some(n) = r.nullable_array_len(flexible, 5, "configs")? {
                    for _ in 0..n {
                        r.string(flexible, "config name")?;
                        r.nullable_string(flexible, "config value")?;
                        r.bool("read_only")?;
                        r.i8("config_source")?;
                        r.bool("is_sensitive")?;
                        r.tagged_fields(flexible)?;
                    }
                }
            }
            r.tagged_fields(flexible)?;
            entries.push(Entry {
                name,
                topic_id,
                raw: r.since(start),
            });
        }
        let tail = r.tagged_fields(flexible)?;
        Ok(Topics {
            head,
            entries,
            tail,
        })
    }

    /// The message with `entries` instead of its own (the same head and tail).
    pub fn encode_with(&self, api: Admin, version: i16, entries: &[&Entry]) -> Bytes {
        let flexible = api.flexible(version);
        let mut w = Writer::with_capacity(
            self.head.len()
                + self.tail.len()
                + entries.iter().map(|e| e.raw.len()).sum::<usize>()
                + 8,
        );
        w.raw(&self.head);
        w.array_len(flexible, entries.len());
        for e in entries {
            w.raw(&e.raw);
        }
        w.raw(&self.tail);
        w.buf.freeze()
    }

    /// The throttle of a response (0 without one).
    pub fn throttle(&self) -> i32 {
        match self.head.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(b) => i32::from_be_bytes(b),
            None => 0,
        }
    }
}

/// A result entry the proxy writes itself: `code` for topic `name` (or `topic_id`).
pub fn error_entry(
    api: Admin,
    version: i16,
    name: Option<&[u8]>,
    topic_id: &Uuid,
    code: ErrorCode,
) -> Entry {
    let flexible = api.flexible(version);
    let mut w = Writer::with_capacity(64);
    match api {
        Admin::Delete if version >= 6 => w.nullable_string(flexible, name),
        _ => w.string(flexible, name.unwrap_or_default()),
    }
    if (api == Admin::Create && version >= 7) || (api == Admin::Delete && version >= 6) {
        w.uuid(topic_id);
    }
    w.i16(code);
    let has_message = match api {
        Admin::Create => version >= 1,
        Admin::Delete => version >= 5,
    };
    if has_message {
        w.nullable_string(flexible, None);
    }
    if api == Admin::Create && version >= 5 {
        w.i32(-1);
        w.i16(-1);
        w.null_array(flexible);
    }
    w.tagged_fields(flexible, &[]);
    Entry {
        name: name.map(Bytes::copy_from_slice),
        topic_id: *topic_id,
        raw: w.buf.freeze(),
    }
}

/// A response head carrying `throttle_ms` (none below the versions that have it).
pub fn throttle_head(api: Admin, version: i16, throttle_ms: i32) -> Bytes {
    let has = match api {
        Admin::Create => version >= 2,
        Admin::Delete => version >= 1,
    };
    if has {
        Bytes::copy_from_slice(&throttle_ms.to_be_bytes())
    } else {
        Bytes::new()
    }
}

/// An empty tagged-field section (the tail of a merged response).
pub fn empty_tail(api: Admin, version: i16) -> Bytes {
    let mut w = Writer::new();
    w.tagged_fields(api.flexible(version), &[]);
    w.buf.freeze()
}
