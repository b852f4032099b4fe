//! The `http:` section's fields, declared once: [`super::HttpSettings::from_config`] reads names,
//! ranges, defaults and text rules from these tables, and `tools/config-schema` writes the JSON
//! Schema from them (geomesh_core::config::spec).

use geomesh_core::config::spec::{doc, Default as Is, Field, Kind, Rule, Section, Text, Workload};

use crate::health::SITES_PATH;
use crate::resolve::MAX_CLUSTER_NAME;
use crate::token::MAX_SLOTS;

const NAME: Kind = Kind::Text(Text::Any);
const NAMES: Kind = Kind::List { item: &NAME, min_items: 0, unique: false };
/// A cluster name as the registry and Envoy's header-named routes take it.
const REGISTRY_CLUSTER: Kind = Kind::Text(Text::Visible { max: Some(MAX_CLUSTER_NAME as u32) });

const fn field(name: &'static str, kind: Kind, required: bool, default: Is, text: &'static str) -> Field {
    Field { name, kind, required, default, doc: doc(text) }
}

const fn int(name: &'static str, min: u64, max: u64, default: u64, doc: &'static str) -> Field {
    field(name, Kind::Int { min, max }, false, Is::Int(default), doc)
}

/// `workload_type: http` for the JSON Schema.
pub const SCHEMA: Workload = Workload {
    name: "http",
    section: Some(&HTTP),
    section_required: true,
    routing_table: false,
    doc: doc("The scope filter (HTTP): scope-lang expressions choose the site; routing_table is not used."),
};

/// The `http:` section.
pub const HTTP: Section = Section {
    id: "http",
    doc: doc("Settings of the scope filter (filters/scope/README.md)."),
    fields: &[
        field("service", NAME, true, Is::None, "The service behind this listener, as scopes name it."),
        field("site", NAME, true, Is::None, "The site this Envoy runs in, as scopes name it."),
        field("sites", NAMES, false, Is::None, "Every site scopes may name."),
        field("services", NAMES, false, Is::None, "Every service scopes may name."),
        field(
            "cluster_pattern",
            NAME,
            false,
            Is::None,
            "The Envoy cluster of (service, site), e.g. \"{site}_{service}\"; without it only explicit clusters exist.",
        ),
        field(
            "clusters",
            Kind::List { item: &Kind::Section(&CLUSTER_ENTRY), min_items: 0, unique: false },
            false,
            Is::None,
            "Explicit (service, site) -> cluster entries; they win over the pattern.",
        ),
        field("agent", Kind::Section(&AGENT), false, Is::None, "Site health for `;` and `around`, from the local geomesh-agent."),
        field("headers", Kind::Section(&HEADERS), false, Is::None, "The headers the filter writes."),
        field("token_cache", Kind::Section(&TOKEN_CACHE), false, Is::None, "The X-Auth-Token piggyback memory."),
        field(
            "replication",
            Kind::Section(&REPLICATION),
            false,
            Is::None,
            "Resources of this service may be replicated (`&`): requests go through the local agent.",
        ),
    ],
    rules: &[Rule::Note(
        "Site and service names follow scope-lang's rules, and two of them may not become the same cluster name; \
         the cluster of (service, site) is local_cluster.",
    )],
};

/// One entry of `http.clusters`.
pub const CLUSTER_ENTRY: Section = Section {
    id: "http.clusters",
    doc: doc("An explicit (service, site) -> cluster entry."),
    fields: &[
        field("service", NAME, true, Is::None, "A service name."),
        field("site", NAME, true, Is::None, "A site name."),
        field("cluster", REGISTRY_CLUSTER, true, Is::None, "Its Envoy cluster (printable ASCII, no spaces)."),
    ],
    rules: &[],
};

/// `http.agent`.
pub const AGENT: Section = Section {
    id: "http.agent",
    doc: doc("Where and how often the filter reads the site table of the local geomesh-agent."),
    fields: &[
        field("cluster", NAME, true, Is::None, "Envoy cluster of the local geomesh-agent."),
        field(
            "authority",
            Kind::Text(Text::Visible { max: None }),
            false,
            Is::Text("geomesh-agent"),
            ":authority of the call.",
        ),
        field("path", Kind::Text(Text::AbsolutePath), false, Is::Text(SITES_PATH), ":path of the call."),
        int("tick_ms", 10, 60_000, 500, "Fetch period (ms)."),
        int("timeout_ms", 10, 60_000, 1000, "Timeout of one fetch (ms)."),
        int(
            "stale_after_ms",
            100,
            3_600_000,
            10_000,
            "After this long without a successful fetch the table is dropped (every site counts as available).",
        ),
    ],
    rules: &[Rule::Greater { field: "stale_after_ms", than: "tick_ms" }],
};

/// `http.headers`.
pub const HEADERS: Section = Section {
    id: "http.headers",
    doc: doc("The request headers the filter writes."),
    fields: &[
        field(
            "cluster",
            Kind::Text(Text::HeaderName),
            false,
            Is::Text("x-geomesh-cluster"),
            "The header the route's cluster_header reads.",
        ),
        field(
            "forwarded_by",
            Kind::Text(Text::HeaderName),
            false,
            Is::Text("x-geomesh-forwarded-by"),
            "The header marking a request forwarded by a peer site's filter.",
        ),
    ],
    rules: &[
        Rule::Differ { a: "cluster", b: "forwarded_by" },
        Rule::Note("Neither may be a scope carrier (x-scope, x-auth-token, baggage)."),
    ],
};

/// `http.token_cache`.
pub const TOKEN_CACHE: Section = Section {
    id: "http.token_cache",
    doc: doc("The memory of stripped X-Auth-Token scopes."),
    fields: &[
        int("ttl_ms", 1, 86_400_000, 60_000, "How long a stripped token's scope is remembered (ms)."),
        int("slots", 1, MAX_SLOTS as u64, 1024, "Number of shared-data slots (bounds the memory)."),
    ],
    rules: &[],
};

/// `http.replication`.
pub const REPLICATION: Section = Section {
    id: "http.replication",
    doc: doc("Requests of a service whose resources may be replicated go through the local agent's proxy listener."),
    fields: &[field(
        "cluster",
        REGISTRY_CLUSTER,
        true,
        Is::None,
        "Envoy cluster of the local agent's proxy listener (replication.listen in the agent's configuration).",
    )],
    rules: &[],
};
