//! TLS between agents: heartbeats and replication traffic over HTTPS with client certificates
//! (rustls, files a mesh or cert-manager provides, `geomesh-tls` as the bridges use it).
//!
//! ```yaml
//! listen: 0.0.0.0:9101            # the local filter, probes, Prometheus, people (plain HTTP)
//! peer_listen: 0.0.0.0:9103       # the other sites' agents: HTTPS, client certificate required
//! tls:
//!   cert: /etc/geomesh/tls/tls.crt
//!   key: /etc/geomesh/tls/tls.key
//!   ca: /etc/geomesh/tls/ca.crt
//! peers:
//!   - { name: dc2, url: "https://geomesh-agent.dc2.example:9103" }
//! ```
//!
//! With `tls`, the heartbeat and the agent-to-agent replication endpoints are served on
//! `peer_listen` only, which refuses a client without a certificate the CA signed, and every
//! peer is dialled over `https://` with this agent's certificate, the peer checked against the
//! CA and the URL's host. Without it, peers speak plain HTTP, which the configuration must ask
//! for with `plaintext: true` (a mesh's mTLS carries it, an encrypted overlay, loopback tests);
//! `peer_listen` is then optional (without it `listen` serves the peers too). The files are read
//! at start, and again on SIGHUP ([`crate::Agent::reload_tls`]): new connections, both ways, get
//! the new certificate and CA, without a restart.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use geomesh_tls::{Acceptor, ClientIdentity, TlsFiles};

use crate::config::AgentConfig;

/// ALPN of the peer listener (hyper serves both).
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The rules between `tls`, `plaintext`, `peer_listen` and the peers' URLs (called by
/// [`AgentConfig::parse`]; the files are read at start, not here, so that `--check` works where
/// they are not mounted).
pub(crate) fn validate(cfg: &AgentConfig) -> Result<()> {
    let between_sites = !cfg.peers.is_empty() || cfg.peer_listen.is_some();
    match (&cfg.tls, cfg.plaintext) {
        (Some(_), true) => bail!("`tls`, `plaintext`: give one, not both"),
        (None, false) if between_sites => bail!(
            "`tls`: missing; traffic between agents (peers, peer_listen) needs `tls` (cert, key, ca), \
             or `plaintext: true` where something else encrypts it"
        ),
        (Some(_), false) if !cfg.peers.is_empty() && cfg.peer_listen.is_none() => bail!(
            "`peer_listen`: missing; with `tls` the other sites' agents reach this one on peer_listen \
             (HTTPS, client certificates), `listen` stays for the local filter"
        ),
        _ => {}
    }
    if let Some(p) = cfg.peer_listen {
        if p == cfg.listen {
            bail!("`peer_listen`: the same address as `listen`");
        }
        if cfg.replication.as_ref().is_some_and(|r| r.listen == p) {
            bail!("`peer_listen`: the same address as `replication.listen`");
        }
    }
    let scheme = if cfg.tls.is_some() { "https://" } else { "http://" };
    for (i, p) in cfg.peers.iter().enumerate() {
        let ok = p.url.starts_with(scheme)
            && p.url.len() > scheme.len()
            && !p.url.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        if !ok {
            bail!(
                "`peers[{i}].url`: expected {scheme}host:port{}, found {:?}",
                if cfg.tls.is_some() { " (with `tls`)" } else { "" },
                p.url
            );
        }
    }
    Ok(())
}

/// The agent's side of TLS between agents, loaded from the files.
#[derive(Clone)]
pub struct PeerTls {
    files: TlsFiles,
    /// The peer listener's.
    pub acceptor: Arc<Acceptor>,
    identity: Arc<ClientIdentity>,
}

fn err(e: geomesh_tls::TlsError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

impl PeerTls {
    /// Reads the `tls` files of `cfg`, if it has them.
    pub fn load(cfg: &AgentConfig) -> Result<Option<PeerTls>> {
        let Some(files) = &cfg.tls else { return Ok(None) };
        let acceptor = Acceptor::new(files.clone(), ALPN).map_err(err)?;
        let identity = ClientIdentity::new(&files.load().map_err(err)?).map_err(err)?;
        Ok(Some(PeerTls { files: files.clone(), acceptor, identity }))
    }

    /// Reads the files again: new connections, to and from peers, get the new certificate and
    /// CA (the HTTP clients read the identity at each handshake); open ones keep theirs.
    pub fn reload(&self) -> Result<()> {
        let m = self.files.load().map_err(err)?;
        self.identity.reload(&m).map_err(err)?;
        self.acceptor.reload(None).map_err(err)
    }

    /// A client configuration that follows [`PeerTls::reload`].
    pub fn client_config(&self) -> Result<geomesh_tls::rustls::ClientConfig> {
        self.identity.client_config().map_err(err)
    }
}

/// An HTTP client for the peers: `builder` with this agent's TLS when configured.
pub fn peer_client(builder: reqwest::ClientBuilder, tls: Option<&PeerTls>) -> Result<reqwest::Client> {
    let builder = match tls {
        Some(t) => builder.use_preconfigured_tls(t.client_config()?),
        None => builder,
    };
    builder.build().context("HTTP client for the peer agents")
}
