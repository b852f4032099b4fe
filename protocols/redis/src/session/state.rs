//! Connection state: SELECT, AUTH, HELLO, CLIENT SETNAME/SETINFO/NO-EVICT/NO-TOUCH,
//! READONLY/READWRITE and RESET, stored and replayed by the pipeline.

use bytes::{Bytes, BytesMut};
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, MergeCx, PartSend, Plan, ReplayStore, StoreTargets};

use super::merge::Part;
use super::replies::{self, error};
use super::{Redis, Subs};
use crate::commands::{self, Merge, SessionCmd};
use crate::{Command, Protocol, RequestDecoder};

/// Connection-state commands kept for replay, in replay order (store keys).
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub(super) enum StoreKey {
    Auth = 0,
    Hello,
    Name,
    LibName,
    LibVer,
    NoEvict,
    NoTouch,
    ReadMode,
    Select,
}

pub(super) const STORE_KEYS: usize = 9;

/// [`StoreKey`] names, for error messages.
pub(super) const STORE_NAMES: [&str; STORE_KEYS] = [
    "AUTH",
    "HELLO",
    "CLIENT SETNAME",
    "CLIENT SETINFO LIB-NAME",
    "CLIENT SETINFO LIB-VER",
    "CLIENT NO-EVICT",
    "CLIENT NO-TOUCH",
    "READONLY/READWRITE",
    "SELECT",
];

fn parse_version(b: &[u8]) -> Option<Protocol> {
    match b {
        b"2" => Some(Protocol::Resp2),
        b"3" => Some(Protocol::Resp3),
        _ => None,
    }
}

/// The RESP version the stored state sets: the stored `HELLO <v>`, else RESP2.
pub(super) fn protocol_of(store: &ReplayStore<()>) -> Protocol {
    let Some(stored) = store.get(StoreKey::Hello as usize) else {
        return Protocol::Resp2;
    };
    let mut buf = BytesMut::from(&stored.bytes[..]);
    match RequestDecoder::default().decode(&mut buf) {
        Ok(Some(cmd)) => cmd.arg(1).and_then(parse_version).unwrap_or(Protocol::Resp2),
        _ => Protocol::Resp2,
    }
}

impl Redis {
    pub(super) fn session_command(&mut self, cmd: Command, s: SessionCmd, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let local = cx.table().local_cluster();
        let mut stored: Vec<(StoreKey, Command)> = Vec::new();
        let mut proto = self.proto;
        let owned = |c: &Command| Command::new(c.args());
        match s {
            SessionCmd::Reset => return self.reset(cmd, cx),
            SessionCmd::Hello => {
                let Some(v) = cmd.arg(1) else {
                    // HELLO alone: the server's handshake map, no state.
                    return Plan::Forward {
                        cluster: local,
                        bytes: cmd.into_raw(),
                    };
                };
                let Some(version) = parse_version(v) else {
                    // NOPROTO or a syntax error: the server words it.
                    return Plan::Forward {
                        cluster: local,
                        bytes: cmd.raw().clone(),
                    };
                };
                let mut i = 2;
                while let Some(opt) = cmd.arg(i) {
                    if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.len() {
                        let (Some(u), Some(p)) = (cmd.arg(i + 1), cmd.arg(i + 2)) else {
                            break;
                        };
                        stored.push((StoreKey::Auth, Command::new([&b"AUTH"[..], u, p])));
                        i += 3;
                    } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.len() {
                        let Some(n) = cmd.arg(i + 1) else { break };
                        stored.push((StoreKey::Name, Command::new([&b"CLIENT"[..], b"SETNAME", n])));
                        i += 2;
                    } else {
                        return Plan::Forward {
                            cluster: local,
                            bytes: cmd.raw().clone(),
                        };
                    }
                }
                stored.push((StoreKey::Hello, Command::new([&b"HELLO"[..], v])));
                proto = version;
            }
            SessionCmd::Auth => stored.push((StoreKey::Auth, owned(&cmd))),
            SessionCmd::Select => stored.push((StoreKey::Select, owned(&cmd))),
            SessionCmd::ClientSetName => stored.push((StoreKey::Name, owned(&cmd))),
            SessionCmd::ClientSetInfo => {
                let key = if cmd.arg(2).is_some_and(|a| a.eq_ignore_ascii_case(b"LIB-VER")) {
                    StoreKey::LibVer
                } else {
                    StoreKey::LibName
                };
                stored.push((key, owned(&cmd)))
            }
            SessionCmd::ClientNoEvict => stored.push((StoreKey::NoEvict, owned(&cmd))),
            SessionCmd::ClientNoTouch => stored.push((StoreKey::NoTouch, owned(&cmd))),
            SessionCmd::ReadOnly | SessionCmd::ReadWrite => stored.push((StoreKey::ReadMode, owned(&cmd))),
        }
        self.proto = proto;
        let name: &'static str = commands::lookup(&cmd).map(|s| s.name).unwrap_or("command");
        let writes = stored.into_iter().map(|(k, c)| (k as usize, c.into_raw())).collect();
        cx.store_and_send(writes, cmd.raw(), (), Merge::Session { name }, StoreTargets::LocalAndOpen);
        Plan::Done
    }

    /// RESET: the state is forgotten here and on every open connection.
    fn reset(&mut self, cmd: Command, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let local = cx.table().local_cluster();
        cx.clear_store();
        cx.link(local);
        self.proto = Protocol::Resp2;
        self.tx = None;
        self.watch = None;
        self.subs = Subs::default();
        let mut targets = vec![local];
        cx.for_each_link(|c, l| {
            l.subs = 0;
            if c != local && !c.is_endpoint() {
                targets.push(c);
            }
        });
        let parts = targets.into_iter().map(|c| PartSend::new(c, cmd.raw().to_vec())).collect();
        let budget = cx.budget();
        cx.dispatch(parts, Merge::Session { name: "reset" }, budget);
        Plan::Done
    }
}

/// The reply to a connection-state command: the local cluster's (first part) is the client's;
/// a connection that answered otherwise does not hold the state the client is told of and is
/// reset; a refusal by the local cluster rolls the stored state back.
pub(super) fn merge(name: &str, parts: &[Part], cx: &mut MergeCx<'_>) -> Bytes {
    let shown = replies::upper(name);
    let primary = parts.first().and_then(|p| p.answer.as_ref());
    let ok = primary.is_some_and(|r| !r.is_error());
    let mut out_of_step: Vec<(ClusterId, String)> = Vec::new();
    for p in parts.iter().skip(1) {
        let table = cx.table();
        let message = match &p.answer {
            Some(r) if r.is_error() != ok => continue,
            Some(r) if r.is_error() => {
                replies::state_refused(table, p.cluster, &shown, r.root().as_bytes().unwrap_or_default())
            }
            Some(_) => replies::state_accepted_alone(table, p.cluster, &shown),
            None => replies::state_no_reply(table, p.cluster, &shown),
        };
        out_of_step.push((p.cluster, message));
    }
    let bytes = match primary {
        Some(r) => r.raw().clone(),
        None => error(replies::NO_REPLY.as_bytes()),
    };
    if !ok {
        cx.rollback();
    }
    for (c, message) in out_of_step {
        cx.reset_link(c, message);
    }
    bytes
}
