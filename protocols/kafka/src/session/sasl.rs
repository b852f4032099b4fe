//! SASL replayed per shard: a client authenticates once, to the proxy, and every broker it
//! reaches through the proxy sees the same authentication. The SaslHandshake and the
//! SaslAuthenticate are stored (the kit's replay store, keys [`HANDSHAKE`], [`AUTHENTICATE`])
//! and sent to every shard at once, and replayed at the head of every link opened later (a
//! shard reconnected, a partition leader's endpoint link); a broker that refuses the replay
//! has its link reset with the reason.
//!
//! Only PLAIN can be replayed: its one message is the same for every broker. SCRAM and the
//! other challenge-response mechanisms answer each broker's own nonce, which only the client
//! (holding the password) can do; OAUTHBEARER tokens could be replayed but are not offered
//! yet. The handshake for any other mechanism is answered by the proxy with
//! UNSUPPORTED_SASL_MECHANISM and the mechanisms it carries, as a broker does.

use bytes::Bytes;
use geomesh_kit::{Ctx, Part, StoreTargets};

use super::answer::{Expect, KafkaAnswer};
use super::merge::{frame, KafkaMerge, Merge};
use super::plan::{Planned, Step};
use super::KafkaProtocol;
use crate::codes::{api, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM};
use crate::header::Request;
use crate::messages::sasl::{
    authenticate_response, error_code, handshake_mechanism, handshake_response,
};

/// Store key of the SaslHandshake.
pub const HANDSHAKE: usize = 0;
/// Store key of the SaslAuthenticate.
pub const AUTHENTICATE: usize = 1;
/// Store keys SASL uses.
pub const STORE_KEYS: usize = 2;
/// The mechanisms the proxy replays.
pub const MECHANISMS: &[&[u8]] = &[b"PLAIN"];
/// What a client whose brokers could not be asked reads.
pub const NO_BROKER: &str = "geomesh: no broker answered the authentication";

pub fn plan(req: &Request, reply: Expect, cx: &mut Ctx<'_, KafkaProtocol>) -> Planned {
    let key = if reply.api_key == api::SASL_HANDSHAKE {
        let mechanism = handshake_mechanism(&mut req.body())?;
        if !MECHANISMS.contains(&&mechanism[..]) {
            return Ok(Step::Local(frame(
                &reply,
                &handshake_response(UNSUPPORTED_SASL_MECHANISM, MECHANISMS),
            )));
        }
        HANDSHAKE
    } else {
        AUTHENTICATE
    };
    let wire = req.wire();
    cx.store_and_send(
        vec![(key, wire.clone())],
        &wire,
        reply,
        KafkaMerge {
            reply,
            merge: Merge::Sasl,
        },
        StoreTargets::Active,
    );
    Ok(Step::Sent)
}

/// The refusal of the first broker that refused; else the first answer (the local cluster's
/// comes first). A broker that failed is left out: its link replays the authentication when
/// it opens again.
pub fn merge(reply: &Expect, parts: &[Part<KafkaAnswer>]) -> Bytes {
    let answers = parts.iter().filter_map(|p| p.answer.as_ref());
    let mut first = None;
    for a in answers {
        if a.decode(|r, _| error_code(r)).ok().is_none_or(|c| c != 0) {
            return a.raw.clone();
        }
        first.get_or_insert(a);
    }
    match first {
        Some(a) => a.raw.clone(),
        None if reply.api_key == api::SASL_HANDSHAKE => frame(
            reply,
            &handshake_response(SASL_AUTHENTICATION_FAILED, MECHANISMS),
        ),
        None => frame(
            reply,
            &authenticate_response(reply.version, SASL_AUTHENTICATION_FAILED, NO_BROKER),
        ),
    }
}

/// True for an answer to a SASL request that refuses it (a replay a broker refused).
pub fn refused(answer: &KafkaAnswer) -> bool {
    matches!(
        answer.expect.api_key,
        api::SASL_HANDSHAKE | api::SASL_AUTHENTICATE
    ) && answer
        .decode(|r, _| error_code(r))
        .ok()
        .is_none_or(|c| c != 0)
}
