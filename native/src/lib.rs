//! geomesh's native shell: the Redis filter as an Envoy dynamic module
//! (`envoy.filters.network.dynamic_modules`, terminal), with the bridge in-process.
//!
//! The Wasm filters stay the product's default (Istio ships them with `WasmPlugin`); this shell
//! is for deployments that own their Envoy build and want Redis without pipelining at native
//! speed. ARCHITECTURE.md ("The cost of Proxy-Wasm on a non-pipelined request") gives the
//! argument: under Proxy-Wasm every request crosses V8 four times and a socket to the bridge
//! twice; here the same sans-IO session and mux run natively, and the GMB/1 frames reach the
//! bridge's code through memory ([`stream`]), whose pooled, pipelined connections to the shards
//! are then the only sockets besides the client's.
//!
//! Every entry point catches panics (a panic must not cross into Envoy, which would abort the
//! process): a panicking callback closes its connection, nothing else.
//!
//! Not yet in this shell (the Wasm filter has them): live reconfiguration (a new
//! `filter_config` applies to new connections only) and protocols other than Redis.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod abi;
mod config;
mod filter;
mod metrics;
pub mod stream;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use abi::{DataStatus, EnvoyBuffer, FilterEnvoyPtr};
use config::FilterConfig;
use filter::Filter;

/// What `envoy_dynamic_module_on_program_init` answers: the Envoy release whose ABI this shell
/// was written against (Envoy logs a warning, not an error, for another).
static ABI_VERSION: &[u8] = b"geomesh-native for Envoy 1.40.0\0";

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// # Safety
/// Called by Envoy once, when it loads the module.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// A filter configuration; null (Envoy refuses the configuration) when it does not load.
///
/// # Safety
/// `name` and `config` are Envoy's buffers, valid for this call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_new(
    envoy_config: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let made = catch_unwind(AssertUnwindSafe(|| {
        let name = String::from_utf8_lossy(name.as_slice()).into_owned();
        FilterConfig::new(envoy_config, &name, config.as_slice())
    }));
    match made {
        Ok(Ok(c)) => Box::into_raw(Box::new(c)) as *const c_void,
        Ok(Err(e)) => {
            eprintln!("geomesh-native: configuration refused: {e}");
            std::ptr::null()
        }
        Err(_) => std::ptr::null(),
    }
}

/// # Safety
/// `config` came from `on_network_filter_config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(config as *mut FilterConfig))));
    }
}

/// A filter for a new connection; null closes it.
///
/// # Safety
/// `config` came from `on_network_filter_config_new`; `envoy` is Envoy's live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new(config: *const c_void, envoy: FilterEnvoyPtr) -> *mut c_void {
    if config.is_null() {
        return std::ptr::null_mut();
    }
    let config = &*(config as *const FilterConfig);
    let made = catch_unwind(AssertUnwindSafe(|| Filter::new(config, envoy, NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed))));
    match made {
        Ok(Some(f)) => Box::into_raw(Box::new(f)) as *mut c_void,
        _ => std::ptr::null_mut(),
    }
}

/// Runs `f` on the filter, closing the connection if it panics.
unsafe fn with_filter(envoy: FilterEnvoyPtr, filter: *mut c_void, f: impl FnOnce(&mut Filter)) {
    if filter.is_null() {
        return;
    }
    let filter = &mut *(filter as *mut Filter);
    if catch_unwind(AssertUnwindSafe(|| f(filter))).is_err() && !envoy.is_null() {
        abi::envoy_dynamic_module_callback_network_filter_close(envoy, abi::CLOSE_FLUSH_WRITE);
    }
}

/// # Safety
/// Envoy's pointers for a live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(_envoy: FilterEnvoyPtr, _filter: *mut c_void) -> DataStatus {
    DataStatus::Continue
}

/// Client bytes: consumed here (terminal filter).
///
/// # Safety
/// Envoy's pointers for a live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_read(
    envoy: FilterEnvoyPtr,
    filter: *mut c_void,
    _length: usize,
    end_stream: bool,
) -> DataStatus {
    with_filter(envoy, filter, |f| f.on_read(envoy, end_stream));
    DataStatus::StopIteration
}

/// Bytes written to the client (ours): passed on.
///
/// # Safety
/// Envoy's pointers for a live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_write(
    _envoy: FilterEnvoyPtr,
    _filter: *mut c_void,
    _length: usize,
    _end_stream: bool,
) -> DataStatus {
    DataStatus::Continue
}

/// # Safety
/// Envoy's pointers for a live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_event(envoy: FilterEnvoyPtr, filter: *mut c_void, event: u32) {
    if event == abi::EVENT_REMOTE_CLOSE || event == abi::EVENT_LOCAL_CLOSE {
        with_filter(envoy, filter, |f| f.on_closed(envoy));
    }
}

/// # Safety
/// Envoy's pointers for a live filter.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_scheduled(envoy: FilterEnvoyPtr, filter: *mut c_void, event_id: u64) {
    with_filter(envoy, filter, |f| match event_id {
        stream::EVENT_INBOX => f.on_bridge(envoy),
        filter::EVENT_CLOSE_LATER => f.on_close_later(envoy),
        _ => {}
    });
}

/// # Safety
/// `filter` came from `on_network_filter_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_destroy(filter: *mut c_void) {
    if !filter.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(filter as *mut Filter))));
    }
}

/// No configuration-level events are scheduled.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled(_config: *const c_void, _event_id: u64) {}

/// No HTTP callouts are made.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _filter: *mut c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const c_void,
    _headers_size: usize,
    _body: *const c_void,
    _body_size: usize,
) {
}

/// Write-buffer watermarks: the client's pace already bounds what the bridge may queue
/// (`stream::INBOX_LIMIT`), so nothing is done here.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark(_envoy: FilterEnvoyPtr, _filter: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark(_envoy: FilterEnvoyPtr, _filter: *mut c_void) {}
