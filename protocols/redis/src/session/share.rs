//! When a session's shard connections may be shared with other clients (the bridge's pooled,
//! pipelined backend connections): while the session holds no connection state at all.
//!
//! A shared connection is only ever in the default state: database 0, no AUTH, RESP2, no
//! transaction or WATCH, no subscription, no blocking command in flight, no CLIENT setting.
//! The first command that would leave that state (or might: anything blocking, any CLIENT
//! subcommand) makes the session's connections dedicated, before that command is sent, and
//! they stay dedicated for the life of the client connection (the filter host moves each open
//! shared channel to a dedicated backend connection in order, see
//! docs/bridge-protocol.md "Shared channels").

use crate::commands::{flags, Category, CommandSpec, PubSub};

/// Whether sending `spec` may leave connection state behind (or hold the connection, as a
/// blocking command does): such a command needs a connection of the client's own.
pub(super) fn needs_dedicated(spec: &CommandSpec) -> bool {
    // WAIT/WAITAOF hold the connection up to their timeout (and count this connection's writes).
    if spec.flags & flags::BLOCKING != 0 || matches!(spec.name, "wait" | "waitaof") {
        return true;
    }
    match &spec.category {
        Category::Keyed
        | Category::SameShard
        | Category::Split(_)
        | Category::Broadcast(_)
        | Category::Local(_) => false,
        Category::PubSub(p) => !matches!(p, PubSub::Publish | PubSub::SPublish),
        Category::Unsupported(_) => false,
        // INFO, TIME, COMMAND, CONFIG GET...: stateless, except the CLIENT family (CLIENT
        // REPLY, TRACKING, CACHING... change how the connection answers).
        Category::LocalCluster => spec.name.starts_with("client"),
        Category::Session(_) | Category::Transaction(_) | Category::Blocking(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::{lookup, Command};

    fn dedicated(args: &[&str]) -> bool {
        let cmd = Command::new(args.iter().map(|a| a.as_bytes()));
        needs_dedicated(lookup(&cmd).unwrap())
    }

    #[test]
    fn stateless_commands_share() {
        for c in [
            &["GET", "k"][..],
            &["SET", "k", "v"],
            &["MGET", "a", "b"],
            &["MSET", "a", "1", "b", "2"],
            &["PING"],
            &["DEL", "a"],
            &["INFO"],
            &["PUBLISH", "ch", "m"],
            &["EVAL", "return 1", "0"],
        ] {
            assert!(!dedicated(c), "{c:?}");
        }
    }

    #[test]
    fn state_and_blocking_need_their_own_connection() {
        for c in [
            &["SELECT", "1"][..],
            &["AUTH", "pw"],
            &["HELLO", "3"],
            &["MULTI"],
            &["WATCH", "k"],
            &["BLPOP", "k", "0"],
            &["BRPOP", "k", "1"],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            &["WAIT", "1", "0"],
            &["SUBSCRIBE", "ch"],
            &["PSUBSCRIBE", "p*"],
            &["CLIENT", "SETNAME", "x"],
            &["CLIENT", "NO-EVICT", "ON"],
            &["CLIENT", "ID"],
            &["READONLY"],
            &["RESET"],
        ] {
            assert!(dedicated(c), "{c:?}");
        }
    }
}
