//! The test line protocol's network filter: [`geomesh_line::LineProtocol`] on the kit's
//! pipeline, bound to the Proxy-Wasm shell. Used only by `integration/tests/kit_line_e2e.rs`,
//! to show that a protocol needs nothing but its own crate and these lines.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_kit::{Limits, Pipeline};
use geomesh_line::LineProtocol;

/// The line protocol as the shell sees it.
pub struct Line;

impl Protocol for Line {
    type Settings = ();
    type Session = Pipeline<LineProtocol>;

    const WORKLOAD: WorkloadType = WorkloadType::Line;

    fn settings(_config: &Config) -> Result<(), ConfigError> {
        Ok(())
    }

    fn new_session(loaded: &Loaded<()>) -> Self::Session {
        let timeout_ms = u64::from(loaded.config.upstream_timeout_ms);
        let limits = Limits {
            timeout_ms,
            granularity_ms: (timeout_ms / 20).clamp(1, 100),
            store_keys: 0,
        };
        Pipeline::new(LineProtocol::default(), loaded.table.clone(), limits)
    }
}

proxy_wasm::main! {{
    install::<Line>();
}}
