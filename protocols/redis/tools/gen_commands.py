#!/usr/bin/env python3
"""Generates protocols/redis/src/commands/table.rs.

Input: tools/redis-7.0.15-command-info.json (the `COMMAND INFO` of a real redis-server 7.0.15:
names, arities, flags, key specs, subcommands), plus EXTRAS below (commands added in Redis 7.2
to 8.4, from the `src/commands/*.json` of redis/redis), plus the routing policy below (what a
sharding proxy does with each command). Every command must get a category: a keyless command
without an entry in POLICY stops the generator.

    python3 protocols/redis/tools/gen_commands.py

The test `tests/redis_server.rs` checks the generated table against a running redis-server
(COMMAND INFO and COMMAND GETKEYS).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "commands", "table.rs")

ADMIN = "server administration: connect to each server directly"
REPL = "replication is between servers, not through the proxy"
CLUSTER = "geomesh is not a Redis Cluster: it shards by its own routing table"
TRACKING = "client-side caching invalidations across shards are not supported yet"

# Routing policy. Values are Rust expressions of type `Category`.
POLICY = {
    # split per shard, merge
    "mget": "Category::Split(Split::Mget)",
    "mset": "Category::Split(Split::Mset)",
    "del": "Category::Split(Split::Sum)",
    "unlink": "Category::Split(Split::Sum)",
    "exists": "Category::Split(Split::Sum)",
    "touch": "Category::Split(Split::Sum)",
    # broadcast, merge
    "keys": "Category::Broadcast(Merge::Union)",
    "dbsize": "Category::Broadcast(Merge::Sum)",
    "scan": "Category::Broadcast(Merge::Scan)",
    "flushdb": "Category::Broadcast(Merge::AllOk)",
    "flushall": "Category::Broadcast(Merge::AllOk)",
    "randomkey": "Category::Broadcast(Merge::Any)",
    "wait": "Category::Broadcast(Merge::Min)",
    "waitaof": "Category::Broadcast(Merge::Min)",
    "script|load": "Category::Broadcast(Merge::AllOk)",
    "script|flush": "Category::Broadcast(Merge::AllOk)",
    "script|exists": "Category::Broadcast(Merge::And)",
    "script|kill": "Category::Broadcast(Merge::OneOk)",
    "function|load": "Category::Broadcast(Merge::AllOk)",
    "function|delete": "Category::Broadcast(Merge::AllOk)",
    "function|flush": "Category::Broadcast(Merge::AllOk)",
    "function|restore": "Category::Broadcast(Merge::AllOk)",
    "function|kill": "Category::Broadcast(Merge::OneOk)",
    "pubsub|channels": "Category::Broadcast(Merge::Union)",
    "pubsub|shardchannels": "Category::Broadcast(Merge::Union)",
    "pubsub|numpat": "Category::Broadcast(Merge::Max)",
    "pubsub|numsub": "Category::Broadcast(Merge::NumSub)",
    "pubsub|shardnumsub": "Category::Broadcast(Merge::NumSub)",
    # answered by the proxy
    "ping": "Category::Local(Local::Ping)",
    "echo": "Category::Local(Local::Echo)",
    "quit": "Category::Local(Local::Quit)",
    # stored and replayed on every shard connection
    "select": "Category::Session(SessionCmd::Select)",
    "auth": "Category::Session(SessionCmd::Auth)",
    "hello": "Category::Session(SessionCmd::Hello)",
    "client|setname": "Category::Session(SessionCmd::ClientSetName)",
    "client|setinfo": "Category::Session(SessionCmd::ClientSetInfo)",
    "client|no-evict": "Category::Session(SessionCmd::ClientNoEvict)",
    "client|no-touch": "Category::Session(SessionCmd::ClientNoTouch)",
    "readonly": "Category::Session(SessionCmd::ReadOnly)",
    "readwrite": "Category::Session(SessionCmd::ReadWrite)",
    "reset": "Category::Session(SessionCmd::Reset)",
    # transactions
    "multi": "Category::Transaction(Transaction::Multi)",
    "exec": "Category::Transaction(Transaction::Exec)",
    "discard": "Category::Transaction(Transaction::Discard)",
    "watch": "Category::Transaction(Transaction::Watch)",
    "unwatch": "Category::Transaction(Transaction::Unwatch)",
    # pub/sub
    "publish": "Category::PubSub(PubSub::Publish)",
    "spublish": "Category::PubSub(PubSub::SPublish)",
    "subscribe": "Category::PubSub(PubSub::Subscribe)",
    "psubscribe": "Category::PubSub(PubSub::PSubscribe)",
    "ssubscribe": "Category::PubSub(PubSub::SSubscribe)",
    "unsubscribe": "Category::PubSub(PubSub::Unsubscribe)",
    "punsubscribe": "Category::PubSub(PubSub::PUnsubscribe)",
    "sunsubscribe": "Category::PubSub(PubSub::SUnsubscribe)",
    # blocking (keys as SameShard, plus a timeout)
    "blpop": "Category::Blocking(TimeoutArg::LastSeconds)",
    "brpop": "Category::Blocking(TimeoutArg::LastSeconds)",
    "bzpopmin": "Category::Blocking(TimeoutArg::LastSeconds)",
    "bzpopmax": "Category::Blocking(TimeoutArg::LastSeconds)",
    "brpoplpush": "Category::Blocking(TimeoutArg::LastSeconds)",
    "blmove": "Category::Blocking(TimeoutArg::LastSeconds)",
    "blmpop": "Category::Blocking(TimeoutArg::FirstSeconds)",
    "bzmpop": "Category::Blocking(TimeoutArg::FirstSeconds)",
    "xread": "Category::Blocking(TimeoutArg::BlockMillis)",
    "xreadgroup": "Category::Blocking(TimeoutArg::BlockMillis)",
    # multi-key, atomic: all keys on one shard
    "msetnx": "Category::SameShard",
    "msetex": "Category::SameShard",
    # sent to local_cluster
    "info": "Category::LocalCluster",
    "time": "Category::LocalCluster",
    "lastsave": "Category::LocalCluster",
    "lolwut": "Category::LocalCluster",
    "role": "Category::LocalCluster",
    "command": "Category::LocalCluster",
    "config|get": "Category::LocalCluster",
    "client|getname": "Category::LocalCluster",
    "client|id": "Category::LocalCluster",
    "client|info": "Category::LocalCluster",
    "client|list": "Category::LocalCluster",
    "client|trackinginfo": "Category::LocalCluster",
    "function|dump": "Category::LocalCluster",
    "function|list": "Category::LocalCluster",
    "function|stats": "Category::LocalCluster",
    "memory|doctor": "Category::LocalCluster",
    "memory|malloc-stats": "Category::LocalCluster",
    "memory|stats": "Category::LocalCluster",
    "slowlog|get": "Category::LocalCluster",
    "slowlog|len": "Category::LocalCluster",
    "latency|doctor": "Category::LocalCluster",
    "latency|graph": "Category::LocalCluster",
    "latency|histogram": "Category::LocalCluster",
    "latency|history": "Category::LocalCluster",
    "latency|latest": "Category::LocalCluster",
    "module|list": "Category::LocalCluster",
    "acl|cat": "Category::LocalCluster",
    "acl|whoami": "Category::LocalCluster",
    "acl|genpass": "Category::LocalCluster",
    "acl|getuser": "Category::LocalCluster",
    "acl|list": "Category::LocalCluster",
    "acl|users": "Category::LocalCluster",
    "acl|log": "Category::LocalCluster",
    "acl|dryrun": "Category::LocalCluster",
    # unsupported, with the reason the client will read
    "acl|setuser": f'Category::Unsupported("{ADMIN}")',
    "acl|deluser": f'Category::Unsupported("{ADMIN}")',
    "acl|load": f'Category::Unsupported("{ADMIN}")',
    "acl|save": f'Category::Unsupported("{ADMIN}")',
    "config|set": f'Category::Unsupported("{ADMIN}")',
    "config|resetstat": f'Category::Unsupported("{ADMIN}")',
    "config|rewrite": f'Category::Unsupported("{ADMIN}")',
    "bgrewriteaof": f'Category::Unsupported("{ADMIN}")',
    "bgsave": f'Category::Unsupported("{ADMIN}")',
    "save": f'Category::Unsupported("{ADMIN}")',
    "shutdown": f'Category::Unsupported("{ADMIN}")',
    "debug": f'Category::Unsupported("{ADMIN}")',
    "failover": f'Category::Unsupported("{ADMIN}")',
    "module|load": f'Category::Unsupported("{ADMIN}")',
    "module|loadex": f'Category::Unsupported("{ADMIN}")',
    "module|unload": f'Category::Unsupported("{ADMIN}")',
    "memory|purge": f'Category::Unsupported("{ADMIN}")',
    "slowlog|reset": f'Category::Unsupported("{ADMIN}")',
    "latency|reset": f'Category::Unsupported("{ADMIN}")',
    "pfdebug": f'Category::Unsupported("{ADMIN}")',
    "pfselftest": f'Category::Unsupported("{ADMIN}")',
    "client|kill": f'Category::Unsupported("{ADMIN}")',
    "client|pause": f'Category::Unsupported("{ADMIN}")',
    "client|unpause": f'Category::Unsupported("{ADMIN}")',
    "client|unblock": f'Category::Unsupported("{ADMIN}")',
    "script|debug": 'Category::Unsupported("the Lua debugger needs a direct connection to one server")',
    "monitor": 'Category::Unsupported("MONITOR streams the traffic of one server: connect to it directly")',
    "client|reply": 'Category::Unsupported("CLIENT REPLY changes which requests get replies; the proxy must answer every request")',
    "client|tracking": f'Category::Unsupported("{TRACKING}")',
    "client|caching": f'Category::Unsupported("{TRACKING}")',
    "client|getredir": f'Category::Unsupported("{TRACKING}")',
    "swapdb": 'Category::Unsupported("SWAPDB cannot be atomic across shards")',
    "migrate": 'Category::Unsupported("MIGRATE moves keys between servers behind the proxy\'s back")',
    "psync": f'Category::Unsupported("{REPL}")',
    "sync": f'Category::Unsupported("{REPL}")',
    "replconf": f'Category::Unsupported("{REPL}")',
    "replicaof": f'Category::Unsupported("{REPL}")',
    "slaveof": f'Category::Unsupported("{REPL}")',
    "asking": f'Category::Unsupported("{CLUSTER}")',
    "restore-asking": f'Category::Unsupported("{CLUSTER}")',
    "sflush": f'Category::Unsupported("{CLUSTER}")',
    "sentinel": 'Category::Unsupported("the proxy is not a Sentinel")',
}
# Containers whose every subcommand gets one policy, unless POLICY names the subcommand.
CONTAINER_DEFAULT = {
    "command": "Category::LocalCluster",
    "cluster": f'Category::Unsupported("{CLUSTER}")',
    "sentinel": 'Category::Unsupported("the proxy is not a Sentinel")',
}
# `X|help` is answered by the local cluster for every container.
HELP = "Category::LocalCluster"

# Commands newer than Redis 7.0.15 (from redis/redis src/commands/*.json). Key specs in the
# COMMAND INFO shape. For the 8.x ones the arity is the minimum that reaches the key (the
# server checks the rest).
def first_key(arity, flags=("write",)):
    return {"arity": arity, "flags": list(flags), "tips": [], "subcommands": [],
            "key_specs": [{"flags": [], "begin_search": {"type": "index", "spec": {"index": 1}},
                           "find_keys": {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}}}]}

EXTRAS = {
    # 7.2
    "waitaof": {"arity": 4, "flags": ["blocking"], "tips": [], "subcommands": [], "key_specs": []},
    "client|setinfo": {"arity": 4, "flags": [], "tips": [], "subcommands": [], "key_specs": []},
    "client|no-touch": {"arity": 3, "flags": [], "tips": [], "subcommands": [], "key_specs": []},
    "sflush": {"arity": -3, "flags": ["write"], "tips": [], "subcommands": [], "key_specs": []},
    "cluster|myshardid": {"arity": 2, "flags": [], "tips": [], "subcommands": [], "key_specs": []},
    # 7.4 hash field expiration
    "hexpire": first_key(-6), "hpexpire": first_key(-6), "hexpireat": first_key(-6),
    "hpexpireat": first_key(-6), "hpersist": first_key(-5), "httl": first_key(-5, ["readonly"]),
    "hpttl": first_key(-5, ["readonly"]), "hexpiretime": first_key(-5, ["readonly"]),
    "hpexpiretime": first_key(-5, ["readonly"]),
    # 8.0 hashes, vector sets (8.0 module commands, VISMEMBER 8.2)
    "hgetdel": first_key(-2), "hgetex": first_key(-2), "hsetex": first_key(-2),
    "vadd": first_key(-2), "vcard": first_key(-2, ["readonly"]), "vdim": first_key(-2, ["readonly"]),
    "vemb": first_key(-2, ["readonly"]), "vgetattr": first_key(-2, ["readonly"]),
    "vinfo": first_key(-2, ["readonly"]), "vlinks": first_key(-2, ["readonly"]),
    "vrandmember": first_key(-2, ["readonly"]), "vrem": first_key(-2), "vsetattr": first_key(-2),
    "vsim": first_key(-2, ["readonly"]), "vismember": first_key(-2, ["readonly"]),
    # 8.2 streams
    "xdelex": first_key(-2), "xackdel": first_key(-2),
    # 8.4
    "delex": first_key(-2), "digest": first_key(-2, ["readonly"]),
    "msetex": {"arity": -4, "flags": ["write"], "tips": [], "subcommands": [],
               "key_specs": [{"flags": [], "begin_search": {"type": "index", "spec": {"index": 1}},
                              "find_keys": {"type": "keynum", "spec": {"keynumidx": 0, "firstkey": 1, "keystep": 2}}}]},
    # Sentinel's container (Redis 7.2+ lists it in COMMAND; no subcommand is routable).
    "sentinel": {"arity": -2, "flags": [], "tips": [], "subcommands": [], "key_specs": []},
}

FLAG_NAMES = {
    "write": "WRITE", "readonly": "READONLY", "admin": "ADMIN", "blocking": "BLOCKING",
    "pubsub": "PUBSUB", "movablekeys": "MOVABLE_KEYS", "noscript": "NOSCRIPT", "no_multi": "NO_MULTI",
    "fast": "FAST",
}


def rust_str(s):
    return json.dumps(s)


def key_specs(cmd):
    out = []
    for s in cmd["key_specs"]:
        if "not_key" in s["flags"]:
            continue  # channels of SPUBLISH/SSUBSCRIBE: see `channels()`
        b, f = s["begin_search"], s["find_keys"]
        if b["type"] == "unknown":
            if cmd["name"] in ("sort", "sort_ro"):
                continue  # handled as special finders below
            sys.exit(f"unknown begin_search in {cmd['name']}")
        if b["type"] == "index":
            begin = f"BeginSearch::Index({b['spec']['index']})"
        else:
            begin = f"BeginSearch::Keyword {{ keyword: {rust_str(b['spec']['keyword'])}, start_from: {b['spec']['startfrom']} }}"
        if f["type"] == "range":
            sp = f["spec"]
            find = f"FindKeys::Range {{ last_key: {sp['lastkey']}, step: {sp['keystep']}, limit: {sp['limit']} }}"
        elif f["type"] == "keynum":
            sp = f["spec"]
            find = f"FindKeys::KeyNum {{ keynum_idx: {sp['keynumidx']}, first_key: {sp['firstkey']}, step: {sp['keystep']} }}"
        else:
            sys.exit(f"unknown find_keys in {cmd['name']}")
        out.append(f"KeySpec::Search {{ begin: {begin}, find: {find} }}")
    if cmd["name"] == "sort":
        out.append("KeySpec::SortStore")
    return out


def may_have_many_keys(specs):
    if len(specs) > 1:
        return True
    return any("last_key: 0," not in s for s in specs)


def category(cmd, specs, container=None):
    name = cmd["name"]
    if name in POLICY:
        return POLICY[name]
    if container and name.endswith("|help"):
        return HELP
    if container in CONTAINER_DEFAULT:
        return CONTAINER_DEFAULT[container]
    if cmd["subcommands"]:
        # A container: the category applies when it is sent without a subcommand.
        return 'Category::Unsupported("needs a subcommand")'
    if specs:
        return "Category::SameShard" if may_have_many_keys(specs) else "Category::Keyed"
    sys.exit(f"no routing policy for keyless command {name!r}: add it to POLICY")


def flags(cmd):
    names = [FLAG_NAMES[f] for f in cmd["flags"] if f in FLAG_NAMES]
    return " | ".join(f"flags::{n}" for n in names) if names else "0"


def entry(cmd, container=None):
    specs = key_specs(cmd)
    cat = category(cmd, specs, container)
    subs = "&[]"
    if cmd["subcommands"]:
        subs = f"&{cmd['name'].upper().replace('-', '_')}_SUBCOMMANDS"
    ks = "&[" + ", ".join(specs) + "]"
    return (f"    CommandSpec {{ name: {rust_str(cmd['name'])}, arity: {cmd['arity']}, flags: {flags(cmd)}, "
            f"keys: {ks}, category: {cat}, subcommands: {subs} }},")


def main():
    src = os.path.join(HERE, "redis-7.0.15-command-info.json")
    cmds = {c["name"]: c for c in json.load(open(src))}
    for full, spec in EXTRAS.items():
        spec = dict(spec, name=full)
        if "|" in full:
            parent = cmds[full.split("|")[0]]
            if not any(s["name"] == full for s in parent["subcommands"]):
                parent["subcommands"].append(spec)
        elif full not in cmds:
            cmds[full] = spec
    for c in cmds.values():
        c["subcommands"].sort(key=lambda s: s["name"])
    used = set()
    lines = [
        "// @generated by protocols/redis/tools/gen_commands.py from",
        "// tools/redis-7.0.15-command-info.json (COMMAND INFO of redis-server 7.0.15) and the",
        "// generator's EXTRAS (Redis 7.2 to 8.4) and POLICY. Do not edit: edit the generator.",
        "",
        "use super::*;",
        "",
    ]
    top = sorted(cmds.values(), key=lambda c: c["name"])
    for c in top:
        if c["subcommands"]:
            const = c["name"].upper().replace("-", "_") + "_SUBCOMMANDS"
            lines.append(f"static {const}: [CommandSpec; {len(c['subcommands'])}] = [")
            for s in c["subcommands"]:
                lines.append(entry(s, c["name"]))
                used.add(s["name"])
            lines.append("];")
            lines.append("")
    lines.append(f"pub(super) static COMMANDS: [CommandSpec; {len(top)}] = [")
    for c in top:
        lines.append(entry(c))
        used.add(c["name"])
    lines.append("];")
    unused = set(POLICY) - used
    if unused:
        sys.exit(f"POLICY names unknown commands: {sorted(unused)}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(top)} commands, {sum(len(c['subcommands']) for c in top)} subcommands")


if __name__ == "__main__":
    main()
