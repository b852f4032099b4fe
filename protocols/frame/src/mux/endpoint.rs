//! Endpoint links ([`geomesh_core::Action::Bind`]): the `OPEN` target `CLUSTER@host:port` a
//! bound link opens, checked for shape before anything opens (the bridge of the cluster's site
//! decides whether the cluster allows it: docs/bridge-protocol.md, "Endpoint targets").

use geomesh_core::{ClusterId, RoutingTable};

/// Why a send found no channel.
pub(super) enum NoChannel {
    /// Too many channels open.
    Limit,
    /// An endpoint link without a usable binding (the reason).
    Unbound(String),
}

/// Separates the cluster name from the endpoint in an endpoint link's `OPEN` target.
const SEPARATOR: u8 = b'@';
/// The longest endpoint (`host:port`) a binding may name.
const MAX_LEN: usize = 261;

/// The `OPEN` target of endpoint link `link` bound to `endpoint` of table cluster `cluster`,
/// or why there is none.
pub(super) fn target(table: &RoutingTable, link: ClusterId, cluster: ClusterId, endpoint: &str) -> Result<String, String> {
    if !link.is_endpoint() || cluster.is_endpoint() {
        return Err(format!("link {} cannot be bound to an endpoint", link.0));
    }
    let valid = !endpoint.is_empty()
        && endpoint.len() <= MAX_LEN
        && endpoint.contains(':')
        && endpoint.bytes().all(|b| b.is_ascii_graphic() && b != SEPARATOR);
    if !valid {
        return Err(format!("`{}` is not a host:port endpoint", endpoint.escape_debug()));
    }
    Ok(format!("{}{}{endpoint}", table.cluster_name(cluster), char::from(SEPARATOR)))
}
