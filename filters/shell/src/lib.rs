//! The Proxy-Wasm shell shared by geomesh's network filters.
//!
//! A filter crate implements [`Protocol`] (a name, its settings, a session constructor) and calls
//! [`install`] from `proxy_wasm::main!`. This crate does the rest and nothing protocol-specific:
//!
//! * **configuration**: `on_configure` parses the Écharde configuration, rejects a bad one with
//!   a log line that names the field, and publishes the compiled routing table in a per-VM
//!   [`Slot`] keyed by the plugin name, with a generation number;
//! * **live reload**: Envoy answers an xDS/ECDS update with a *new* root context, while open
//!   connections stay bound to the old one. Every connection holds the slot and, before each
//!   callback, compares generations: on a change it hands the new table to its session, so a
//!   connection opened before the update routes its next request by the new table and loses
//!   nothing in flight;
//! * **transport**: client bytes go through the session into GMB/1 frames for the bridge, and
//!   bridge frames through the session back to the client ([`geomesh_frame::Mux`]);
//! * **metrics**: after each callback the session's meter is drained into Envoy's stats
//!   ([`stats`], usable by HTTP filters too), its counters held and handed over every 100 ms
//!   by the root context's timer while the VM is busy ([`batch`]); configurations accepted and
//!   rejected are counted;
//! * **closing later**: a close that must not happen in the callback carrying the client's last
//!   bytes is done by the root context's timer, armed only while such closes wait (or counters
//!   are held).
//!
//! README.md (beside this crate) says what happens at each end of a connection, which limits
//! apply, which hostcalls can panic and why the `proxy_on_upstream_connection_close` export is
//! masked.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use geomesh_core::{Config, ConfigError, Millis, RoutingTable, Session, WorkloadType};
use geomesh_frame::{Mux, MuxOutput};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, PeerType};

pub use proxy_wasm;

mod batch;
pub mod stats;

pub use stats::Stats;

/// What a network filter brings to the shell.
pub trait Protocol: 'static {
    /// Protocol-specific settings, parsed from the configuration section named after
    /// `workload_type`.
    type Settings: 'static;
    /// The per-connection state machine.
    type Session: Session + 'static;

    /// The `workload_type` this filter serves.
    const WORKLOAD: WorkloadType;

    /// Validates the protocol's own section (`config.extension`).
    fn settings(config: &Config) -> Result<Self::Settings, ConfigError>;

    /// A session for a new client connection.
    fn new_session(loaded: &Loaded<Self::Settings>) -> Self::Session;

    /// `reply_timeout_ms` for the bridge channels of this protocol (0 = the session keeps its
    /// own deadlines, e.g. because some commands block on purpose).
    fn channel_reply_timeout_ms(_loaded: &Loaded<Self::Settings>) -> u32 {
        0
    }
}

/// A configuration as one generation of one plugin sees it.
#[derive(Debug)]
pub struct Loaded<S> {
    pub generation: u64,
    pub config: Config,
    pub table: Rc<RoutingTable>,
    pub settings: S,
    /// Where this configuration's metrics go (`<workload>.<stat_prefix>.…`, cluster names from
    /// `table`); every stream bound to it drains its session's meter there.
    pub stats: Rc<Stats>,
}

/// The current configuration of one plugin (by plugin name) in this VM.
pub struct Slot<S> {
    generation: Cell<u64>,
    current: RefCell<Option<Rc<Loaded<S>>>>,
}

impl<S> Slot<S> {
    fn current(&self) -> Option<Rc<Loaded<S>>> {
        self.current.borrow().clone()
    }
}

thread_local! {
    /// Slots by (plugin name, protocol): one VM runs one filter binary, so the protocol part
    /// only guards against a mix-up; `Rc<dyn Any>` is downcast by the protocol's type.
    static SLOTS: RefCell<HashMap<String, Rc<dyn std::any::Any>>> = RefCell::new(HashMap::new());
}

fn slot<P: Protocol>(plugin: &str) -> Rc<Slot<P::Settings>> {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        if let Some(s) = slots.get(plugin).cloned() {
            if let Ok(s) = s.downcast::<Slot<P::Settings>>() {
                return s;
            }
        }
        let s: Rc<Slot<P::Settings>> = Rc::new(Slot {
            generation: Cell::new(0),
            current: RefCell::new(None),
        });
        slots.insert(plugin.to_owned(), s.clone());
        s
    })
}

/// Parses and compiles a configuration for protocol `P`, as `on_configure` does (exposed for
/// native tests of the filters' config handling).
pub fn load<P: Protocol>(text: &[u8], previous: Option<&RoutingTable>, generation: u64) -> Result<Loaded<P::Settings>, ConfigError> {
    let config = Config::parse(text)?;
    if config.workload_type != P::WORKLOAD {
        return Err(ConfigError::new(
            "workload_type",
            format!(
                "this filter serves `{}`, the configuration says `{}`",
                P::WORKLOAD.name(),
                config.workload_type.name()
            ),
        ));
    }
    let settings = P::settings(&config)?;
    let table = match previous {
        Some(prev) => RoutingTable::succeed(&config, prev)?,
        None => RoutingTable::new(&config)?,
    };
    let table = Rc::new(table);
    let stats = Rc::new(Stats::new(P::WORKLOAD, &config.stat_prefix, Some(table.clone())));
    Ok(Loaded {
        generation,
        config,
        table,
        settings,
        stats,
    })
}

/// Registers the root context factory for protocol `P`. Call it from `proxy_wasm::main!`.
pub fn install<P: Protocol>() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root::<P> {
            id: context_id,
            slot: None,
            plugin: String::new(),
            closes: Rc::new(RefCell::new(RootTimer::default())),
        })
    });
}

/// How long after the callback that asked for it a "close later" happens. Any later event
/// would do (the bytes of that callback are in Envoy's write buffer once it returns, and a
/// close flushes them first); 1 ms is the shortest timer Proxy-Wasm can ask for.
const CLOSE_LATER_MS: u64 = 1;

/// What one root context's timer is for: the streams that asked to be closed later
/// (`MuxOutput::close_later`), and the counters held while busy ([`batch::Batch`]). The timer
/// runs only while either needs it: every [`CLOSE_LATER_MS`] while closes wait, else every
/// [`batch::FLUSH_MS`] while counters are held. A stream arms it
/// (`proxy_set_tick_period_milliseconds` from a stream context sets its root's period); the
/// root's `on_tick` closes the streams, hands the counters over and sets the next period.
#[derive(Default)]
struct RootTimer {
    ids: Vec<u32>,
    /// The period the timer runs at now (zero: stopped).
    period: Duration,
    batch: batch::Batch,
}

impl RootTimer {
    /// Sets the timer's period to what is needed now, if that changed (setting it restarts
    /// Envoy's timer: a close that waits is not pushed back by later ones).
    fn rearm(&mut self) {
        let want = if !self.ids.is_empty() {
            Duration::from_millis(CLOSE_LATER_MS)
        } else if self.batch.is_batched() {
            Duration::from_millis(batch::FLUSH_MS)
        } else {
            Duration::ZERO
        };
        if want != self.period {
            // Envoy's setTimerPeriod always answers Ok; 0 stops the timer.
            let _ = hostcalls::set_tick_period(want);
            self.period = want;
        }
    }

    /// Hands what `session` recorded over (or holds its counters while busy).
    fn drain<S: Session + ?Sized>(&mut self, stats: &Rc<Stats>, session: &mut S, now: impl FnOnce() -> Millis) {
        if let Some(meter) = session.meter() {
            if self.batch.take(stats, meter, now) {
                self.rearm();
            }
        }
    }
}

/// Wall-clock milliseconds (Proxy-Wasm has no monotonic clock; Envoy's `get_current_time`
/// never fails).
fn now_ms() -> Millis {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Root<P: Protocol> {
    id: u32,
    slot: Option<Rc<Slot<P::Settings>>>,
    plugin: String,
    closes: Rc<RefCell<RootTimer>>,
}

impl<P: Protocol> Context for Root<P> {
    fn on_done(&mut self) -> bool {
        self.closes.borrow_mut().batch.flush();
        true
    }
}

impl<P: Protocol> RootContext for Root<P> {
    fn on_configure(&mut self, _size: usize) -> bool {
        // hostcalls, not the Context helpers: those unwrap the `Err` Envoy may return.
        let plugin = hostcalls::get_property(vec!["plugin_name"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "geomesh".to_owned());
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let slot = slot::<P>(&plugin);
        let previous = slot.current();
        let generation = slot.generation.get() + 1;
        match load::<P>(&text, previous.as_ref().map(|l| &*l.table), generation) {
            Ok(loaded) => {
                stats::count_accepted(&loaded.stats, &plugin, &text);
                log::info!(
                    "geomesh {plugin}: configuration generation {generation} loaded: {} routes over clusters [{}]",
                    loaded.config.routes.len(),
                    loaded.table.active_cluster_names().collect::<Vec<_>>().join(", ")
                );
                *slot.current.borrow_mut() = Some(Rc::new(loaded));
                slot.generation.set(generation);
                self.slot = Some(slot);
                self.plugin = plugin;
                true
            }
            Err(e) => {
                log::error!("geomesh {plugin}: {e}");
                stats::count_rejected(P::WORKLOAD, &plugin, &text);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let ids = {
            let mut timer = self.closes.borrow_mut();
            let ids = std::mem::take(&mut timer.ids);
            timer.batch.tick();
            // The next period (before the effective context changes below, although any of
            // them would name this root): the held counters' or none.
            timer.rearm();
            ids
        };
        for id in ids {
            // BadArgument: Envoy no longer knows the context (the client went away first).
            // Otherwise close_stream is always Ok, and Envoy runs it after this call returns,
            // with FlushWrite: the bytes of earlier callbacks are written first.
            if hostcalls::set_effective_context(id).is_ok() {
                let _ = hostcalls::close_downstream();
            }
        }
        let _ = hostcalls::set_effective_context(self.id);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        // `None` would make the SDK panic; without a configuration (Envoy does not create
        // streams after a failed on_configure) the stream closes itself on its first bytes.
        let slot = self.slot.clone();
        let loaded = slot.as_ref().and_then(|s| s.current());
        let stream: Box<dyn StreamContext> = match (slot, loaded) {
            (Some(slot), Some(loaded)) => {
                let label = format!("{}#{}", self.plugin, context_id);
                Box::new(Stream::<P> {
                    id: context_id,
                    closes: self.closes.clone(),
                    label: label.clone(),
                    session: P::new_session(&loaded),
                    mux: Mux::new(
                        &label,
                        loaded.table.clone(),
                        P::channel_reply_timeout_ms(&loaded),
                        loaded.config.upstream_timeout_ms.min(10_000),
                    ),
                    generation: loaded.generation,
                    stats: loaded.stats.clone(),
                    slot,
                })
            }
            _ => Box::new(Unconfigured),
        };
        Some(stream)
    }
}

struct Stream<P: Protocol> {
    id: u32,
    /// The root context's timer: streams to close from it, counters it hands over.
    closes: Rc<RefCell<RootTimer>>,
    label: String,
    session: P::Session,
    mux: Mux,
    generation: u64,
    /// The metrics of the configuration `generation` (drained after each callback).
    stats: Rc<Stats>,
    slot: Rc<Slot<P::Settings>>,
}

impl<P: Protocol> Stream<P> {
    /// Follows a reconfiguration of the plugin.
    fn refresh(&mut self) {
        if self.slot.generation.get() == self.generation {
            return;
        }
        if let Some(loaded) = self.slot.current() {
            self.generation = loaded.generation;
            self.stats = loaded.stats.clone();
            self.mux.set_table(loaded.table.clone());
            self.session.on_new_table(loaded.table.clone());
        }
    }
}

impl<P: Protocol> Context for Stream<P> {}

impl<P: Protocol> Stream<P> {
    /// Logs what the mux decided on its own, and closes the client when it asks.
    fn finish(&mut self, out: &MuxOutput) {
        if let Some(msg) = &out.log {
            log::warn!("geomesh {}: {msg}", self.label);
        }
        if out.close_downstream {
            // Deferred by Envoy to the end of this callback; always Ok for a network filter.
            let _ = hostcalls::close_downstream();
        } else if out.close_later {
            // Once per stream (the mux asks once). The root's on_tick closes it.
            let mut timer = self.closes.borrow_mut();
            timer.ids.push(self.id);
            // Sets the period of this stream's root, on the first pending close only.
            timer.rearm();
        }
    }
}

impl<P: Protocol> StreamContext for Stream<P> {
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.refresh();
        let now = now_ms();
        let data = read_buffer(BufferType::DownstreamData, size);
        let out = self.mux.on_downstream(&mut self.session, &data, end_of_stream, now);
        if size > 0 || !out.bytes.is_empty() {
            write_buffer(BufferType::DownstreamData, size, &out.bytes);
        }
        self.finish(&out);
        self.closes.borrow_mut().drain(&self.stats, &mut self.session, || now);
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer: PeerType) {
        let now = now_ms();
        self.mux.on_downstream_closed(&mut self.session, now);
        self.closes.borrow_mut().drain(&self.stats, &mut self.session, || now);
        // Gone before the root's timer: nothing left to close (the timer stays armed until
        // its next tick, which then finds nothing or other streams).
        self.closes.borrow_mut().ids.retain(|id| *id != self.id);
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.refresh();
        let data = read_buffer(BufferType::UpstreamData, size);
        // The clock is read only if a session method or a timer needs it.
        let out = self.mux.on_upstream_with_clock(&mut self.session, &data, end_of_stream, now_ms);
        if size > 0 || !out.bytes.is_empty() {
            write_buffer(BufferType::UpstreamData, size, &out.bytes);
        }
        self.finish(&out);
        self.closes.borrow_mut().drain(&self.stats, &mut self.session, now_ms);
        Action::Continue
    }
}

/// The `size` bytes of the data buffer of this callback. `hostcalls::get_buffer` answers
/// `NotFound` (no buffer) as `Ok(None)`; Envoy fails it otherwise only on a memory fault.
fn read_buffer(buffer: BufferType, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(buffer, 0, size).ok().flatten().unwrap_or_default()
}

/// Replaces the `size` bytes of the data buffer of this callback with `bytes`. Envoy accepts
/// (start 0, size = the whole buffer) in a data callback; anything else would be `BadArgument`,
/// on which the SDK panics, so only this form is used.
fn write_buffer(buffer: BufferType, size: usize, bytes: &[u8]) {
    let _ = hostcalls::set_buffer(buffer, 0, size, bytes);
}

/// The stream of a plugin whose configuration was rejected: it closes the connection rather
/// than pass bytes through unrouted.
struct Unconfigured;

impl Context for Unconfigured {}

impl StreamContext for Unconfigured {
    fn on_new_connection(&mut self) -> Action {
        log::error!("geomesh: connection refused: the filter has no valid configuration");
        let _ = hostcalls::close_downstream();
        Action::Pause
    }

    fn on_downstream_data(&mut self, size: usize, _end_of_stream: bool) -> Action {
        write_buffer(BufferType::DownstreamData, size, &[]);
        let _ = hostcalls::close_downstream();
        Action::Pause
    }
}
