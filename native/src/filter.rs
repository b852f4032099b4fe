//! One client connection: the same sans-IO pair as the Wasm shell (`filters/shell`), the Redis
//! session and the GMB/1 mux, between Envoy's callbacks and the in-process stream to the bridge.
//! The differences from the Wasm shell are the transport's: client bytes are drained from
//! Envoy's read buffer (the filter is terminal) and the frames go to the bridge in-process;
//! the bridge's bytes arrive by a scheduler event, not an upstream data callback, and the
//! answers are written to the client with the ABI's `write`.

use std::time::{SystemTime, UNIX_EPOCH};

use geomesh_core::{Millis, Session};
use geomesh_frame::{Mux, MuxOutput};
use geomesh_redis::RedisSession;

use crate::abi::{self, FilterEnvoyPtr};
use crate::config::FilterConfig;
use crate::metrics::MetricIds;
use crate::stream::{self, FilterEnd};

/// The scheduler event that closes the connection after the last answer was written.
pub const EVENT_CLOSE_LATER: u64 = 2;

pub struct Filter {
    metrics: std::sync::Arc<MetricIds>,
    mux: Mux,
    session: RedisSession,
    end: FilterEnd,
    /// The filter's own scheduler for "close later" (the stream's is the bridge side's).
    scheduler: abi::SchedulerPtr,
    closed: bool,
}

impl Drop for Filter {
    fn drop(&mut self) {
        if !self.scheduler.is_null() {
            // SAFETY: created by scheduler_new for this filter, deleted once.
            unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_delete(self.scheduler) };
        }
    }
}

/// Wall-clock milliseconds, as the Wasm shell's clock (the mux's deadlines are in ms).
fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Filter {
    /// A filter for a new connection; `None` when the bridge runtime is not running.
    pub fn new(config: &FilterConfig, envoy: FilterEnvoyPtr, id: u64) -> Option<Filter> {
        let table = config.table()?;
        // SAFETY: called from `on_network_filter_new` with Envoy's live filter pointer; the
        // two schedulers are this filter's, deleted when it is dropped.
        let (scheduler, wakeup) = unsafe {
            (
                abi::envoy_dynamic_module_callback_network_filter_scheduler_new(envoy),
                stream::Scheduler::new(abi::envoy_dynamic_module_callback_network_filter_scheduler_new(envoy)),
            )
        };
        let (end, bridge_end) = stream::pair(wakeup.map(|w| Box::new(w) as Box<dyn stream::Wakeup>));
        config.serve(bridge_end, id);
        let label = format!("{}#{id}", config.name);
        let session = RedisSession::new(table.clone(), config.geomesh.upstream_timeout_ms, &config.settings);
        let mux = Mux::new(&label, table, 0, config.geomesh.upstream_timeout_ms.min(10_000));
        Some(Filter { metrics: config.metrics.clone(), mux, session, end, scheduler, closed: false })
    }

    /// Client bytes: all of Envoy's read buffer, drained.
    pub fn on_read(&mut self, envoy: FilterEnvoyPtr, end_of_stream: bool) {
        let data = read_all(envoy);
        let mut out = self.mux.on_downstream(&mut self.session, &data, end_of_stream, now_ms());
        let frames = std::mem::take(&mut out.bytes);
        if !frames.is_empty() && !self.end.send(frames) {
            self.close(envoy);
            return;
        }
        self.finish(envoy, &out);
    }

    /// The bridge wrote (the scheduler's event).
    pub fn on_bridge(&mut self, envoy: FilterEnvoyPtr) {
        let (data, eof) = self.end.take();
        if data.is_empty() && !eof {
            return;
        }
        let out = self.mux.on_upstream(&mut self.session, &data, eof, now_ms());
        if !out.bytes.is_empty() && !self.closed {
            // SAFETY: Envoy's live filter pointer, from a callback; the bytes outlive the call.
            unsafe {
                abi::envoy_dynamic_module_callback_network_filter_write(envoy, out.bytes.as_ptr(), out.bytes.len(), false)
            };
        }
        self.finish(envoy, &out);
    }

    /// The client connection closed (either side).
    pub fn on_closed(&mut self, envoy: FilterEnvoyPtr) {
        self.closed = true;
        self.mux.on_downstream_closed(&mut self.session, now_ms());
        self.drain_meter(envoy);
        self.end.detach();
        self.end.close();
    }

    /// The scheduler's "close later" event.
    pub fn on_close_later(&mut self, envoy: FilterEnvoyPtr) {
        self.close(envoy);
    }

    fn finish(&mut self, envoy: FilterEnvoyPtr, out: &MuxOutput) {
        self.drain_meter(envoy);
        if out.close_downstream {
            self.close(envoy);
        } else if out.close_later && !self.scheduler.is_null() {
            // SAFETY: this filter's scheduler, live until the filter is destroyed.
            unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_commit(self.scheduler, EVENT_CLOSE_LATER) };
        }
    }

    fn close(&mut self, envoy: FilterEnvoyPtr) {
        if !self.closed {
            self.closed = true;
            // SAFETY: Envoy's live filter pointer, from a callback.
            unsafe { abi::envoy_dynamic_module_callback_network_filter_close(envoy, abi::CLOSE_FLUSH_WRITE) };
        }
    }

    /// Hands the session's metrics to Envoy's stats.
    fn drain_meter(&mut self, envoy: FilterEnvoyPtr) {
        if let Some(m) = self.session.meter() {
            // SAFETY: Envoy's live filter pointer, from a callback.
            unsafe { self.metrics.drain(envoy, m) };
        }
    }
}

/// Copies Envoy's read buffer and drains it.
fn read_all(envoy: FilterEnvoyPtr) -> Vec<u8> {
    // SAFETY: Envoy's live filter pointer, from the read callback; the chunks stay valid until
    // the buffer is drained, after the copy.
    unsafe {
        let total = abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_size(envoy);
        let n = abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(envoy);
        let mut chunks = vec![abi::EnvoyBuffer { ptr: std::ptr::null(), length: 0 }; n];
        let mut data = Vec::with_capacity(total);
        if n > 0 && abi::envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(envoy, chunks.as_mut_ptr()) {
            for c in &chunks {
                data.extend_from_slice(c.as_slice());
            }
        }
        abi::envoy_dynamic_module_callback_network_filter_drain_read_buffer(envoy, total);
        data
    }
}
