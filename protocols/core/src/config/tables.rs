//! The tables of the core's own fields: the document ([`DOCUMENT`]) and a route ([`ROUTE`]).
//! [`super::Config::from_value`] reads its names, ranges, defaults and rules from here, and
//! `tools/config-schema` writes the JSON Schema from here ([`super::spec`]).

use super::spec::{doc, Default, Field, Kind, Rule, Section, Text};
use super::{RouteType, TypeProxy, WorkloadType, DEFAULT_STAT_PREFIX};
use crate::hash::HashAlgorithm;

const CLUSTER: Kind = Kind::Text(Text::ClusterName);

/// A `routing_table` entry: `name: cluster` (a key route), or a route map.
pub const ROUTE_ENTRY: Kind = Kind::Either(&CLUSTER, &Kind::Section(&ROUTE));

/// The document: Écharde's fields and geomesh's extensions.
pub const DOCUMENT: Section = Section {
    id: "document",
    doc: doc("A geomesh filter configuration: Écharde's EnvoyFilter shape (workload_type, type_proxy, \
          default_cluster, local_cluster, routing_table), extended, plus a section named after \
          workload_type for the protocol's own settings."),
    fields: &[
        Field {
            name: "workload_type",
            kind: Kind::OneOf(WorkloadType::NAMES),
            required: true,
            default: Default::None,
            doc: doc("The protocol this filter speaks; also the name of its own section."),
        },
        Field {
            name: "type_proxy",
            kind: Kind::OneOf(TypeProxy::NAMES),
            required: false,
            default: Default::Text("downstream"),
            doc: doc("Where the sidecar sits: beside the client (downstream) or the server (upstream). Informational."),
        },
        Field {
            name: "default_cluster",
            kind: CLUSTER,
            required: true,
            default: Default::None,
            doc: doc("The Envoy cluster of keys no route matches."),
        },
        Field {
            name: "local_cluster",
            kind: CLUSTER,
            required: false,
            default: Default::Computed("default_cluster"),
            doc: doc("This site's instance: commands that need one server and name no key go there."),
        },
        Field {
            name: "routing_table",
            kind: Kind::Map(&ROUTE_ENTRY),
            required: false,
            default: Default::None,
            doc: doc("Routes by name: `name: cluster` (a key route) or `name: {type, cluster | clusters, algorithm}`. \
                  The longest matching name wins, then default_cluster."),
        },
        Field {
            name: "hash_tags",
            kind: Kind::Bool,
            required: false,
            default: Default::Computed("true for workload_type redis, false for the others"),
            doc: doc("Honour Redis-style {tag} in keys: {user1}:cart is routed and hashed as user1."),
        },
        Field {
            name: "upstream_timeout_ms",
            kind: Kind::Int { min: 1, max: 3_600_000 },
            required: false,
            default: Default::Int(5000),
            doc: doc("A shard that does not answer within this many milliseconds gets the client a protocol-native error."),
        },
        Field {
            name: "stat_prefix",
            kind: Kind::Text(Text::StatPrefix),
            required: false,
            default: Default::Text(DEFAULT_STAT_PREFIX),
            doc: doc("The second segment of this filter's Envoy stat names (<workload_type>.<stat_prefix>.command.get.total)."),
        },
    ],
    rules: &[],
};

/// One route of `routing_table` in its map form.
pub const ROUTE: Section = Section {
    id: "route",
    doc: doc("A route: key, prefix and value routes name one cluster; a hash route spreads keys over several."),
    fields: &[
        Field {
            name: "type",
            kind: Kind::OneOf(RouteType::NAMES),
            required: false,
            default: Default::Text("key"),
            doc: doc("key: the key is NAME or starts with NAME and a separator; prefix: raw prefix; value: the payload \
                  contains NAME; hash: like key, over a set of clusters."),
        },
        Field {
            name: "cluster",
            kind: CLUSTER,
            required: false,
            default: Default::None,
            doc: doc("The target of a key, prefix or value route."),
        },
        Field {
            name: "clusters",
            kind: Kind::List { item: &CLUSTER, min_items: 1, unique: true },
            required: false,
            default: Default::None,
            doc: doc("The targets of a hash route."),
        },
        Field {
            name: "algorithm",
            kind: Kind::OneOf(HashAlgorithm::NAMES),
            required: false,
            default: Default::Text("rendezvous-v1"),
            doc: doc("The frozen consistent-hash algorithm of a hash route."),
        },
    ],
    rules: &[
        Rule::Switch {
            field: "type",
            values: &["hash"],
            when_absent: false,
            require: &["clusters"],
            forbid: &["cluster"],
            otherwise_require: &["cluster"],
            otherwise_forbid: &["clusters", "algorithm"],
        },
        Rule::Note("`*` (match everything) is for key, prefix and hash routes, not value routes."),
    ],
};
