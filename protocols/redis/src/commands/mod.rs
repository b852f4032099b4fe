//! The command table: for every command a client may send through a sharding proxy, where its
//! keys are and what the router must do with it.
//!
//! Key positions follow Redis's own key specs (`COMMAND INFO`, Redis 7): a *begin search*
//! (an index, or a keyword searched from an index) and a *find keys* rule (a range `first..=last`
//! with a step, or a `numkeys` argument). The table is generated from the `COMMAND INFO` of a
//! real redis-server 7.0.15 plus the commands Redis added up to 8.4 (tools/gen_commands.py), and
//! `tests/redis_server.rs` checks it against a running server with `COMMAND GETKEYS`.
//!
//! Lookups are case-insensitive and allocate nothing.

use core::cmp::Ordering;

use crate::Command;

#[rustfmt::skip]
mod table;

/// Command flags (a subset of Redis's).
pub mod flags {
    pub const WRITE: u16 = 1 << 0;
    pub const READONLY: u16 = 1 << 1;
    pub const ADMIN: u16 = 1 << 2;
    /// May block (BLPOP, XREAD with BLOCK, WAIT...).
    pub const BLOCKING: u16 = 1 << 3;
    pub const PUBSUB: u16 = 1 << 4;
    /// Key positions depend on the arguments (numkeys, keywords).
    pub const MOVABLE_KEYS: u16 = 1 << 5;
    pub const NOSCRIPT: u16 = 1 << 6;
    pub const NO_MULTI: u16 = 1 << 7;
    pub const FAST: u16 = 1 << 8;
}

/// What the router does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Category {
    /// One key (GET, SET, HSET, ...): forward to the key's cluster.
    Keyed,
    /// Several keys that must live on one cluster (SINTER, RENAME, SMOVE, LMOVE, EVAL with
    /// several keys, MSETNX, ...): forward if they do, `-CROSSSLOT` otherwise. Zero keys
    /// (EVAL with numkeys 0): the default cluster.
    SameShard,
    /// Split by cluster into one command per cluster (keys batched), merge the replies.
    Split(Split),
    /// No key: send to every cluster, merge the replies.
    Broadcast(Merge),
    /// Answered by the proxy itself.
    Local(Local),
    /// Connection state: answer from the local cluster, store, and replay on every shard
    /// connection the session opens later.
    Session(SessionCmd),
    /// Sent to the local cluster only (INFO, TIME, COMMAND, CONFIG GET, ...).
    LocalCluster,
    /// MULTI/EXEC/DISCARD/WATCH/UNWATCH: the transaction's keys must share a cluster.
    Transaction(Transaction),
    /// Pub/sub: channels instead of keys, see [`CommandSpec::channels`].
    PubSub(PubSub),
    /// Keys as [`Category::SameShard`]; may block the connection for the timeout found at
    /// [`TimeoutArg`] (see [`CommandSpec::timeout`]), which the router's own timeout must
    /// exceed.
    Blocking(TimeoutArg),
    /// Refused with `-ERR` and this reason; the connection stays open.
    Unsupported(&'static str),
}

/// How a split command is cut and its replies merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: one MGET per cluster with its keys; the values are put back in the client's key
    /// order.
    Mget,
    /// MSET: key/value pairs per cluster; `+OK` if every cluster said OK, else an error naming
    /// the clusters that failed.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: one command per cluster with its keys; integers summed.
    Sum,
}

/// How the replies of a command's parts become the client's reply: the table names it for
/// broadcasts; the session builds the others (split, pub/sub, connection state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Arrays concatenated, duplicates removed (KEYS, PUBSUB CHANNELS).
    Union,
    /// Integers summed (DBSIZE; DEL, UNLINK, EXISTS, TOUCH split by cluster).
    Sum,
    /// SCAN: a proxy cursor that walks the clusters one after the other (one cluster per call;
    /// the cursor's low bits are the cluster's index in the table's active clusters).
    Scan,
    /// MGET split by cluster: for each of the client's keys, (part, element index).
    Mget { order: Vec<(u32, u32)> },
    /// MSET split by cluster: `+OK` if every part said OK, else an error naming the clusters
    /// that failed and those that applied their part.
    Mset,
    /// A connection-state command: the local cluster's reply is the client's, the other
    /// connections must agree (or are reset). `name` for messages.
    Session { name: &'static str },
    /// (P|S)(UN)SUBSCRIBE: the confirmations the client gets once every part confirmed.
    Confirm { replies: bytes::Bytes },
    /// Every cluster must succeed; the first cluster's reply is returned (FLUSHDB, SCRIPT
    /// LOAD, FUNCTION LOAD).
    AllOk,
    /// The first non-null reply (RANDOMKEY).
    Any,
    /// The smallest integer, element-wise for arrays (WAIT, WAITAOF).
    Min,
    /// The largest integer (PUBSUB NUMPAT: a client's pattern is subscribed on every
    /// cluster, so a sum would count it once per cluster).
    Max,
    /// Element-wise logical AND of integer arrays (SCRIPT EXISTS).
    And,
    /// Success if one cluster succeeded (SCRIPT KILL, FUNCTION KILL).
    OneOk,
    /// Flat `[channel, count, ...]` arrays, the largest count per channel (PUBSUB NUMSUB,
    /// SHARDNUMSUB): a client's subscription is replicated on every cluster the channel can be
    /// published to, so a sum would count it once per cluster.
    NumSub,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
}

/// Connection-state commands, stored and replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCmd {
    Select,
    /// `AUTH password` and `AUTH username password`.
    Auth,
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    Hello,
    ClientSetName,
    ClientSetInfo,
    ClientNoEvict,
    ClientNoTouch,
    ReadOnly,
    ReadWrite,
    /// RESET: forget the stored state (and reset every open shard connection).
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSub {
    /// `PUBLISH channel message`: route by channel (or by message for `value` routes).
    Publish,
    SPublish,
    Subscribe,
    PSubscribe,
    SSubscribe,
    Unsubscribe,
    PUnsubscribe,
    SUnsubscribe,
}

/// Where a blocking command carries its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutArg {
    /// The last argument, in seconds (decimals allowed): BLPOP, BRPOP, BZPOPMIN, BLMOVE, ...
    LastSeconds,
    /// The first argument, in seconds: BLMPOP, BZMPOP.
    FirstSeconds,
    /// `BLOCK <milliseconds>` before `STREAMS`, if present: XREAD, XREADGROUP.
    BlockMillis,
    /// The last argument, in milliseconds: WAIT, WAITAOF.
    LastMillis,
}

/// How long a blocking command may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTimeout {
    /// Does not block (XREAD without BLOCK).
    NonBlocking,
    /// Timeout 0: blocks until served.
    Forever,
    Millis(u64),
}

/// Where the search for keys starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    /// At this argument index.
    Index(u16),
    /// After the first argument equal (case-insensitively) to `keyword`, searched from index
    /// `start_from` forwards, or from `argc + start_from` backwards when negative.
    Keyword {
        keyword: &'static str,
        start_from: i16,
    },
}

/// How many keys follow the begin position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from `first` to `last` by `step`. `last_key >= 0`: relative to `first`;
    /// negative: relative to the end (`-1` = last argument), and with `limit > 1`
    /// only the first `1/limit` of the remaining arguments (XREAD's keys before its ids).
    Range {
        last_key: i16,
        step: u16,
        limit: u16,
    },
    /// The argument at `first + keynum_idx` holds the number of keys, which start at
    /// `first + first_key` and go by `step` (EVAL, ZUNIONSTORE, LMPOP, ...).
    KeyNum {
        keynum_idx: u16,
        first_key: u16,
        step: u16,
    },
}

/// One key spec of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Search {
        begin: BeginSearch,
        find: FindKeys,
    },
    /// SORT's `STORE destination`, found by skipping SORT's options as Redis does (the last
    /// STORE wins).
    SortStore,
}

/// What the table knows about a command (or a subcommand such as `client|setname`).
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Lowercase, `container|sub` for subcommands, as Redis names them.
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i16,
    /// [`flags`] bits.
    pub flags: u16,
    pub keys: &'static [KeySpec],
    pub category: Category,
    pub subcommands: &'static [CommandSpec],
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CommandSpec {}

/// Why [`lookup`] found no usable spec. [`LookupError::message`] words the `-ERR` as Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    Unknown,
    UnknownSubcommand(&'static CommandSpec),
    WrongArity(&'static CommandSpec),
}

impl LookupError {
    /// The error message (without `-`), as Redis words it.
    pub fn message(&self, cmd: &Command) -> String {
        match self {
            LookupError::Unknown => {
                let mut m = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    printable(cmd.name(), 128)
                );
                let mut budget = 128usize;
                for a in cmd.args().skip(1) {
                    if budget == 0 {
                        break;
                    }
                    let p = printable(a, budget);
                    budget = budget.saturating_sub(p.len());
                    m.push('\'');
                    m.push_str(&p);
                    m.push_str("' ");
                }
                m
            }
            LookupError::UnknownSubcommand(parent) => format!(
                "ERR unknown subcommand '{}'. Try {} HELP.",
                printable(cmd.arg(1).unwrap_or_default(), 128),
                parent.name.to_ascii_uppercase()
            ),
            LookupError::WrongArity(spec) => {
                format!("ERR wrong number of arguments for '{}' command", spec.name)
            }
        }
    }
}

/// Errors found while extracting keys, channels or timeouts. [`ArgError::message`] words the
/// `-ERR` as Redis would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError {
    /// A numkeys argument that is not an integer.
    NumKeysNotInteger,
    NumKeysNegative,
    NumKeysTooLarge,
    /// SORT BY/GET with a pattern: it reads keys that may live on other clusters.
    SortPattern,
    TimeoutNotNumber,
    TimeoutNegative,
    /// Key positions outside the arguments.
    Syntax,
}

impl ArgError {
    pub fn message(&self) -> &'static str {
        match self {
            ArgError::NumKeysNotInteger => "ERR value is not an integer or out of range",
            ArgError::NumKeysNegative => "ERR Number of keys can't be negative",
            ArgError::NumKeysTooLarge => {
                "ERR Number of keys can't be greater than number of args"
            }
            ArgError::SortPattern => {
                "ERR SORT BY/GET patterns read keys on other shards: not supported through the proxy"
            }
            ArgError::TimeoutNotNumber => "ERR timeout is not a float or out of range",
            ArgError::TimeoutNegative => "ERR timeout is negative",
            ArgError::Syntax => "ERR syntax error",
        }
    }
}

fn printable(bytes: &[u8], max: usize) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(max) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Compares a table name (lowercase ASCII) with client bytes, ignoring the client's case.
fn cmp_name(table: &str, name: &[u8]) -> Ordering {
    let t = table.as_bytes();
    for (a, b) in t.iter().zip(name.iter()) {
        match a.cmp(&b.to_ascii_lowercase()) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    t.len().cmp(&name.len())
}

fn find(specs: &'static [CommandSpec], name: &[u8]) -> Option<&'static CommandSpec> {
    specs
        .binary_search_by(|s| cmp_name(s.name, name))
        .ok()
        .and_then(|i| specs.get(i))
}

/// Every top-level command of the table, sorted by name.
pub fn all() -> &'static [CommandSpec] {
    &table::COMMANDS
}

/// The top-level spec named `name` (any case). Containers (CLIENT, CONFIG, ...) come back as
/// themselves; use [`lookup`] to resolve a subcommand.
pub fn lookup_name(name: &[u8]) -> Option<&'static CommandSpec> {
    find(&table::COMMANDS, name)
}

/// The spec for a request: its command, or its subcommand for containers (`CLIENT SETNAME`),
/// with the arity checked.
pub fn lookup(cmd: &Command) -> Result<&'static CommandSpec, LookupError> {
    let spec = lookup_name(cmd.name()).ok_or(LookupError::Unknown)?;
    let spec = if spec.subcommands.is_empty() || (cmd.len() < 2 && spec.arity_ok(cmd.len())) {
        spec
    } else {
        match cmd.arg(1) {
            None => return Err(LookupError::WrongArity(spec)),
            Some(sub) => {
                let sub = spec
                    .subcommands
                    .iter()
                    .find(|s| {
                        s.name
                            .split_once('|')
                            .is_some_and(|(_, n)| cmp_name(n, sub) == Ordering::Equal)
                    })
                    .ok_or(LookupError::UnknownSubcommand(spec))?;
                sub
            }
        }
    };
    if !spec.arity_ok(cmd.len()) {
        return Err(LookupError::WrongArity(spec));
    }
    Ok(spec)
}

impl CommandSpec {
    pub fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        if a >= 0 {
            argc == a as usize
        } else {
            argc >= a.unsigned_abs() as usize
        }
    }

    /// Positions (argument indices) of the command's keys, in Redis's order (spec by spec).
    /// Allocation-free; errors on a bad `numkeys` or, for SORT, on BY/GET patterns.
    pub fn keys(&self, cmd: &Command) -> Result<KeyPositions, ArgError> {
        let argc = cmd.len();
        let mut out = KeyPositions::default();
        for spec in self.keys {
            match *spec {
                KeySpec::SortStore => {
                    if let Some(store) = sort_store(cmd)? {
                        out.push(store, store, 1);
                    }
                }
                KeySpec::Search { begin, find } => {
                    let first = match begin {
                        BeginSearch::Index(i) => i as usize,
                        BeginSearch::Keyword {
                            keyword,
                            start_from,
                        } => match keyword_pos(cmd, keyword, start_from) {
                            Some(i) => i + 1,
                            None => continue,
                        },
                    };
                    let (first, last, step) = match find {
                        FindKeys::Range {
                            last_key,
                            step,
                            limit,
                        } => {
                            let last = if last_key >= 0 {
                                first as i64 + i64::from(last_key)
                            } else if limit <= 1 {
                                argc as i64 + i64::from(last_key)
                            } else {
                                let remaining = argc.saturating_sub(first) as i64;
                                first as i64 + remaining / i64::from(limit) + i64::from(last_key)
                            };
                            (first as i64, last, step)
                        }
                        FindKeys::KeyNum {
                            keynum_idx,
                            first_key,
                            step,
                        } => {
                            let at = first + keynum_idx as usize;
                            let n = cmd.arg(at).ok_or(ArgError::Syntax)?;
                            let n = crate::lines::parse_i64(n)
                                .map_err(|_| ArgError::NumKeysNotInteger)?;
                            if n < 0 {
                                return Err(ArgError::NumKeysNegative);
                            }
                            let first = (first + first_key as usize) as i64;
                            if n == 0 {
                                continue;
                            }
                            let last = first.saturating_add(
                                n.saturating_sub(1).saturating_mul(i64::from(step.max(1))),
                            );
                            if last >= argc as i64 {
                                return Err(ArgError::NumKeysTooLarge);
                            }
                            (first, last, step)
                        }
                    };
                    if first >= argc as i64 || last >= argc as i64 || last < first {
                        // Redis: an out-of-bounds range is a syntax error of the command, but
                        // a negative-arity command with no room for keys just has none.
                        if self.arity < 0 && last < first {
                            continue;
                        }
                        return Err(ArgError::Syntax);
                    }
                    out.push(first as usize, last as usize, step.max(1) as usize);
                }
            }
        }
        Ok(out)
    }

    /// Argument indices of the channels (or patterns) of a pub/sub command; empty otherwise.
    pub fn channels(&self, cmd: &Command) -> core::ops::Range<usize> {
        match self.category {
            Category::PubSub(PubSub::Publish | PubSub::SPublish) => 1..2.min(cmd.len()),
            Category::PubSub(_) => 1..cmd.len().max(1),
            _ => 0..0,
        }
    }

    /// The timeout of a blocking command (and of WAIT/WAITAOF); `Ok(None)` for the others.
    pub fn timeout(&self, cmd: &Command) -> Result<Option<BlockTimeout>, ArgError> {
        let arg = match self.timeout_arg() {
            None => return Ok(None),
            Some(a) => a,
        };
        let last = cmd.len().checked_sub(1).and_then(|i| cmd.arg(i));
        let t = match arg {
            TimeoutArg::LastSeconds => seconds(last.ok_or(ArgError::Syntax)?)?,
            TimeoutArg::FirstSeconds => seconds(cmd.arg(1).ok_or(ArgError::Syntax)?)?,
            TimeoutArg::LastMillis => millis(last.ok_or(ArgError::Syntax)?)?,
            TimeoutArg::BlockMillis => {
                let start = if self.name == "xreadgroup" { 4 } else { 1 };
                let mut i = start;
                let mut found = BlockTimeout::NonBlocking;
                while let Some(a) = cmd.arg(i) {
                    if a.eq_ignore_ascii_case(b"STREAMS") {
                        break;
                    } else if a.eq_ignore_ascii_case(b"BLOCK") {
                        found = millis(cmd.arg(i + 1).ok_or(ArgError::Syntax)?)?;
                        i += 2;
                    } else if a.eq_ignore_ascii_case(b"COUNT") {
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                found
            }
        };
        Ok(Some(t))
    }

    /// Where the command carries a timeout, if it has one.
    pub fn timeout_arg(&self) -> Option<TimeoutArg> {
        match self.category {
            Category::Blocking(t) => Some(t),
            _ if self.name == "wait" || self.name == "waitaof" => Some(TimeoutArg::LastMillis),
            _ => None,
        }
    }
}

/// The message of `PUBLISH channel message` / `SPUBLISH` (what `value` routes match).
pub fn publish_payload(cmd: &Command) -> Option<&[u8]> {
    let spec = lookup_name(cmd.name())?;
    match spec.category {
        Category::PubSub(PubSub::Publish | PubSub::SPublish) if cmd.len() == 3 => cmd.arg(2),
        _ => None,
    }
}

/// Redis's timeout in seconds (`getTimeoutFromObjectOrReply`): a non-negative decimal,
/// 0 = forever; milliseconds rounded up.
fn seconds(arg: &[u8]) -> Result<BlockTimeout, ArgError> {
    let s = core::str::from_utf8(arg).map_err(|_| ArgError::TimeoutNotNumber)?;
    let v: f64 = s.parse().map_err(|_| ArgError::TimeoutNotNumber)?;
    if !v.is_finite() {
        return Err(ArgError::TimeoutNotNumber);
    }
    if v < 0.0 {
        return Err(ArgError::TimeoutNegative);
    }
    let ms = (v * 1000.0).ceil();
    if ms > u64::MAX as f64 {
        return Err(ArgError::TimeoutNotNumber);
    }
    Ok(if ms == 0.0 {
        BlockTimeout::Forever
    } else {
        BlockTimeout::Millis(ms as u64)
    })
}

fn millis(arg: &[u8]) -> Result<BlockTimeout, ArgError> {
    let v = crate::lines::parse_i64(arg).map_err(|_| ArgError::TimeoutNotNumber)?;
    if v < 0 {
        return Err(ArgError::TimeoutNegative);
    }
    Ok(if v == 0 {
        BlockTimeout::Forever
    } else {
        BlockTimeout::Millis(v as u64)
    })
}

/// Redis's keyword search: forwards from `start_from` to the second-to-last argument, or
/// backwards from `argc + start_from` to 1.
fn keyword_pos(cmd: &Command, keyword: &str, start_from: i16) -> Option<usize> {
    let argc = cmd.len() as i64;
    let hit = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| cmd.arg(i))
            .is_some_and(|a| a.eq_ignore_ascii_case(keyword.as_bytes()))
    };
    if start_from > 0 {
        let mut i = i64::from(start_from);
        while i < argc - 1 {
            if hit(i) {
                return Some(i as usize);
            }
            i += 1;
        }
    } else {
        let mut i = argc + i64::from(start_from);
        while i > 0 {
            if i < argc && hit(i) {
                return Some(i as usize);
            }
            i -= 1;
        }
    }
    None
}

/// SORT's STORE destination (Redis's `sortGetKeys`), refusing BY/GET patterns with `*`.
fn sort_store(cmd: &Command) -> Result<Option<usize>, ArgError> {
    let mut store = None;
    let mut i = 2;
    while let Some(a) = cmd.arg(i) {
        if a.eq_ignore_ascii_case(b"LIMIT") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"GET") || a.eq_ignore_ascii_case(b"BY") {
            if cmd.arg(i + 1).is_some_and(|p| p.contains(&b'*')) {
                return Err(ArgError::SortPattern);
            }
            i += 1;
        } else if a.eq_ignore_ascii_case(b"STORE") && i + 1 < cmd.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    Ok(store)
}

/// Key positions of a command: up to four `first..=last` ranges with steps. No allocation.
#[derive(Debug, Clone, Default)]
pub struct KeyPositions {
    ranges: [(usize, usize, usize); 4],
    count: usize,
    /// Position of the iteration: current range and next index in it.
    at: usize,
    next: usize,
}

impl KeyPositions {
    fn push(&mut self, first: usize, last: usize, step: usize) {
        if let Some(slot) = self.ranges.get_mut(self.count) {
            *slot = (first, last, step);
            self.count += 1;
            if self.count == 1 {
                self.next = first;
            }
        }
    }

    /// How many keys (repeats included) remain.
    pub fn remaining(&self) -> usize {
        let mut n = 0;
        for (k, &(first, last, step)) in self.ranges.iter().enumerate().take(self.count) {
            if k < self.at {
                continue;
            }
            let from = if k == self.at {
                self.next.max(first)
            } else {
                first
            };
            if from <= last {
                n += (last - from) / step.max(1) + 1;
            }
        }
        n
    }
}

impl Iterator for KeyPositions {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            let &(first, last, step) = self.ranges.get(self.at).filter(|_| self.at < self.count)?;
            let i = self.next.max(first);
            if i <= last {
                self.next = i + step.max(1);
                return Some(i);
            }
            self.at += 1;
            if let Some(&(f, _, _)) = self.ranges.get(self.at) {
                self.next = f;
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for KeyPositions {}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn keys(args: &[&str]) -> Result<Vec<String>, String> {
        let cmd = Command::new(args);
        let spec = lookup(&cmd).map_err(|e| e.message(&cmd))?;
        let pos = spec.keys(&cmd).map_err(|e| e.message().to_owned())?;
        assert_eq!(pos.len(), pos.clone().count());
        Ok(pos
            .map(|i| String::from_utf8_lossy(cmd.arg(i).unwrap()).into_owned())
            .collect())
    }

    fn cat(args: &[&str]) -> Category {
        let cmd = Command::new(args);
        lookup(&cmd).unwrap().category.clone()
    }

    #[test]
    fn table_is_sorted_and_names_are_lowercase() {
        for w in all().windows(2) {
            assert!(w[0].name < w[1].name, "{} >= {}", w[0].name, w[1].name);
        }
        for c in all() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            for s in c.subcommands {
                assert!(s.name.starts_with(&format!("{}|", c.name)), "{}", s.name);
            }
        }
        assert!(all().len() >= 240);
    }

    #[test]
    fn lookup_is_case_insensitive() {
        for n in ["get", "GET", "gEt"] {
            assert_eq!(lookup_name(n.as_bytes()).unwrap().name, "get");
        }
        assert!(lookup_name(b"ge").is_none());
        assert!(lookup_name(b"gett").is_none());
        assert!(lookup_name(b"").is_none());
        let cmd = Command::new(["client", "SetName", "x"]);
        assert_eq!(lookup(&cmd).unwrap().name, "client|setname");
        assert_eq!(
            cat(&["client", "setname", "x"]),
            Category::Session(SessionCmd::ClientSetName)
        );
    }

    #[test]
    fn arity_and_unknown_errors_read_like_redis() {
        let cmd = Command::new(["GET"]);
        let e = lookup(&cmd).unwrap_err();
        assert_eq!(
            e.message(&cmd),
            "ERR wrong number of arguments for 'get' command"
        );
        let cmd = Command::new(["NOPE", "a", "b"]);
        let e = lookup(&cmd).unwrap_err();
        assert_eq!(
            e.message(&cmd),
            "ERR unknown command 'NOPE', with args beginning with: 'a' 'b' "
        );
        let cmd = Command::new(["CLIENT", "FOO"]);
        let e = lookup(&cmd).unwrap_err();
        assert_eq!(
            e.message(&cmd),
            "ERR unknown subcommand 'FOO'. Try CLIENT HELP."
        );
        let cmd = Command::new(["CLIENT"]);
        assert_eq!(
            lookup(&cmd).unwrap_err().message(&cmd),
            "ERR wrong number of arguments for 'client' command"
        );
        let cmd = Command::new(["CLIENT", "SETNAME"]);
        assert_eq!(
            lookup(&cmd).unwrap_err().message(&cmd),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        // COMMAND alone is valid (arity -1).
        assert_eq!(cat(&["COMMAND"]), Category::LocalCluster);
        assert_eq!(cat(&["COMMAND", "COUNT"]), Category::LocalCluster);
    }

    #[test]
    fn key_families() {
        let ok = |v: &[&str]| -> Result<Vec<String>, String> {
            Ok(v.iter().map(|s| s.to_string()).collect())
        };
        assert_eq!(keys(&["GET", "a"]), ok(&["a"]));
        assert_eq!(keys(&["SET", "a", "v", "EX", "10"]), ok(&["a"]));
        assert_eq!(keys(&["DEL", "a", "b", "c"]), ok(&["a", "b", "c"]));
        assert_eq!(keys(&["MGET", "a", "b"]), ok(&["a", "b"]));
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), ok(&["a", "b"]));
        assert_eq!(keys(&["MSETNX", "a", "1", "b", "2"]), ok(&["a", "b"]));
        assert_eq!(keys(&["BLPOP", "a", "b", "0"]), ok(&["a", "b"]));
        assert_eq!(
            keys(&["EVAL", "s", "2", "k1", "k2", "arg"]),
            ok(&["k1", "k2"])
        );
        assert_eq!(keys(&["EVALSHA", "s", "0", "arg"]), ok(&[]));
        assert_eq!(keys(&["FCALL", "f", "1", "k", "a"]), ok(&["k"]));
        assert_eq!(
            keys(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"]),
            ok(&["d", "a", "b"])
        );
        assert_eq!(keys(&["ZDIFF", "2", "a", "b"]), ok(&["a", "b"]));
        assert_eq!(keys(&["LMPOP", "2", "a", "b", "LEFT"]), ok(&["a", "b"]));
        assert_eq!(
            keys(&["BLMPOP", "0", "2", "a", "b", "LEFT"]),
            ok(&["a", "b"])
        );
        assert_eq!(
            keys(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
            ok(&["a", "b"])
        );
        assert_eq!(
            keys(&["XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0"]),
            ok(&["a", "b"])
        );
        assert_eq!(
            keys(&[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "0",
                "STREAMS",
                "s",
                ">"
            ]),
            ok(&["s"])
        );
        assert_eq!(
            keys(&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d"]),
            ok(&["g", "d"])
        );
        assert_eq!(
            keys(&["SORT", "s", "LIMIT", "0", "1", "STORE", "d"]),
            ok(&["s", "d"])
        );
        assert_eq!(keys(&["SORT", "s", "BY", "nosort", "GET", "#"]), ok(&["s"]));
        assert_eq!(keys(&["OBJECT", "ENCODING", "k"]), ok(&["k"]));
        assert_eq!(keys(&["MEMORY", "USAGE", "k"]), ok(&["k"]));
        assert_eq!(keys(&["XINFO", "STREAM", "k"]), ok(&["k"]));
        assert_eq!(keys(&["BITOP", "AND", "d", "a", "b"]), ok(&["d", "a", "b"]));
        assert_eq!(keys(&["LMOVE", "a", "b", "LEFT", "RIGHT"]), ok(&["a", "b"]));
        assert_eq!(
            keys(&["MSETEX", "2", "a", "1", "b", "2", "EX", "5"]),
            ok(&["a", "b"])
        );
        assert_eq!(keys(&["PING"]), ok(&[]));
        assert_eq!(keys(&["KEYS", "*"]), ok(&[]));
        assert_eq!(keys(&["PUBLISH", "ch", "m"]), ok(&[]));
        assert_eq!(keys(&["SPUBLISH", "ch", "m"]), ok(&[]));
        // Errors.
        assert_eq!(
            keys(&["EVAL", "s", "3", "k"]),
            Err("ERR Number of keys can't be greater than number of args".into())
        );
        assert_eq!(
            keys(&["EVAL", "s", "-1"]),
            Err("ERR Number of keys can't be negative".into())
        );
        assert_eq!(
            keys(&["EVAL", "s", "x"]),
            Err("ERR value is not an integer or out of range".into())
        );
        assert!(keys(&["SORT", "s", "BY", "w_*"]).is_err());
        assert!(keys(&["SORT_RO", "s"]).is_ok());
    }

    #[test]
    fn categories() {
        assert_eq!(cat(&["GET", "a"]), Category::Keyed);
        assert_eq!(cat(&["MGET", "a"]), Category::Split(Split::Mget));
        assert_eq!(cat(&["MSET", "a", "1"]), Category::Split(Split::Mset));
        for c in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
            assert_eq!(cat(&[c, "a"]), Category::Split(Split::Sum));
        }
        assert_eq!(cat(&["KEYS", "*"]), Category::Broadcast(Merge::Union));
        assert_eq!(cat(&["DBSIZE"]), Category::Broadcast(Merge::Sum));
        assert_eq!(cat(&["SCAN", "0"]), Category::Broadcast(Merge::Scan));
        assert_eq!(cat(&["FLUSHALL"]), Category::Broadcast(Merge::AllOk));
        assert_eq!(cat(&["RANDOMKEY"]), Category::Broadcast(Merge::Any));
        assert_eq!(cat(&["PING"]), Category::Local(Local::Ping));
        assert_eq!(cat(&["ECHO", "x"]), Category::Local(Local::Echo));
        assert_eq!(cat(&["QUIT"]), Category::Local(Local::Quit));
        assert_eq!(cat(&["SELECT", "1"]), Category::Session(SessionCmd::Select));
        assert_eq!(
            cat(&["AUTH", "u", "p"]),
            Category::Session(SessionCmd::Auth)
        );
        assert_eq!(cat(&["HELLO", "3"]), Category::Session(SessionCmd::Hello));
        assert_eq!(cat(&["INFO"]), Category::LocalCluster);
        assert_eq!(cat(&["CONFIG", "GET", "x"]), Category::LocalCluster);
        assert!(matches!(
            cat(&["CONFIG", "SET", "x", "y"]),
            Category::Unsupported(_)
        ));
        for c in [
            &["SINTER", "a", "b"][..],
            &["RENAME", "a", "b"],
            &["SMOVE", "a", "b", "m"],
        ] {
            assert_eq!(cat(c), Category::SameShard);
        }
        assert_eq!(cat(&["MULTI"]), Category::Transaction(Transaction::Multi));
        assert_eq!(
            cat(&["WATCH", "a"]),
            Category::Transaction(Transaction::Watch)
        );
        assert_eq!(
            cat(&["SUBSCRIBE", "a"]),
            Category::PubSub(PubSub::Subscribe)
        );
        assert_eq!(
            cat(&["BLPOP", "a", "0"]),
            Category::Blocking(TimeoutArg::LastSeconds)
        );
        assert!(matches!(cat(&["MONITOR"]), Category::Unsupported(_)));
        assert!(matches!(
            cat(&["CLUSTER", "INFO"]),
            Category::Unsupported(_)
        ));
        assert_eq!(cat(&["CLUSTER", "HELP"]), Category::LocalCluster);
    }

    #[test]
    fn timeouts_channels_payloads() {
        let t = |args: &[&str]| {
            let cmd = Command::new(args);
            lookup(&cmd).unwrap().timeout(&cmd)
        };
        assert_eq!(t(&["BLPOP", "a", "0"]), Ok(Some(BlockTimeout::Forever)));
        assert_eq!(
            t(&["BLPOP", "a", "1.5"]),
            Ok(Some(BlockTimeout::Millis(1500)))
        );
        assert_eq!(
            t(&["BLPOP", "a", "0.0001"]),
            Ok(Some(BlockTimeout::Millis(1)))
        );
        assert_eq!(t(&["BLPOP", "a", "-1"]), Err(ArgError::TimeoutNegative));
        assert_eq!(t(&["BLPOP", "a", "x"]), Err(ArgError::TimeoutNotNumber));
        assert_eq!(
            t(&["BZMPOP", "2", "1", "z", "MIN"]),
            Ok(Some(BlockTimeout::Millis(2000)))
        );
        assert_eq!(
            t(&["XREAD", "STREAMS", "s", "0"]),
            Ok(Some(BlockTimeout::NonBlocking))
        );
        assert_eq!(
            t(&["XREAD", "COUNT", "1", "BLOCK", "250", "STREAMS", "s", "$"]),
            Ok(Some(BlockTimeout::Millis(250)))
        );
        assert_eq!(
            t(&["XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "s", ">"]),
            Ok(Some(BlockTimeout::NonBlocking))
        );
        assert_eq!(
            t(&["WAIT", "1", "100"]),
            Ok(Some(BlockTimeout::Millis(100)))
        );
        assert_eq!(t(&["GET", "a"]), Ok(None));

        let cmd = Command::new(["PUBLISH", "alerts", "fire"]);
        assert_eq!(lookup(&cmd).unwrap().channels(&cmd), 1..2);
        assert_eq!(publish_payload(&cmd), Some(&b"fire"[..]));
        let cmd = Command::new(["SUBSCRIBE", "a", "b"]);
        assert_eq!(lookup(&cmd).unwrap().channels(&cmd), 1..3);
        assert_eq!(publish_payload(&cmd), None);
        let cmd = Command::new(["UNSUBSCRIBE"]);
        assert!(lookup(&cmd).unwrap().channels(&cmd).is_empty());
    }
}
