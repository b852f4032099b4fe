//! The part of Envoy's dynamic-module ABI (`source/extensions/dynamic_modules/abi.h`, Envoy
//! 1.40) that the native shell uses: the network filter's callbacks into Envoy. Declared here
//! from the ABI's C signatures (not generated, not copied from Envoy's SDK); each was checked
//! against the exported symbol of the Envoy 1.40.0 binary this project runs (argument
//! registers read from its disassembly: e.g. `get_read_buffer_chunks_size` takes the filter only
//! and returns the count, `write` takes the filter, a pointer, a length and `end_stream`).
//!
//! A `{ptr, length}` struct passed by value and the two scalars are the same on the x86-64 and
//! AArch64 C calling conventions, which is how the ABI's buffers are declared below.

use std::ffi::c_void;

/// Envoy's side of one filter (`envoy_dynamic_module_type_network_filter_envoy_ptr`).
pub type FilterEnvoyPtr = *mut c_void;
/// A scheduler Envoy made for one filter (`..._network_filter_scheduler_module_ptr`).
pub type SchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    /// The bytes, or nothing for a null pointer.
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes for the lifetime of the returned slice (Envoy
    /// guarantees it for the duration of the callback that passed the buffer).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.length)
        }
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, lent for one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

/// `envoy_dynamic_module_type_metrics_result_Success` (then MetricNotFound, InvalidLabels,
/// Frozen: a stat defined after the configuration was built).
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_on_network_filter_data_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum DataStatus {
    Continue = 0,
    StopIteration = 1,
}

/// `envoy_dynamic_module_type_network_connection_event`: RemoteClose, LocalClose, Connected,
/// ConnectedZeroRtt, in that order.
pub const EVENT_REMOTE_CLOSE: u32 = 0;
pub const EVENT_LOCAL_CLOSE: u32 = 1;

/// `envoy_dynamic_module_type_network_connection_close_type`: FlushWrite, NoFlush,
/// FlushWriteAndDelay, Abort, AbortReset, in that order.
pub const CLOSE_FLUSH_WRITE: u32 = 0;

extern "C" {
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_size(filter: FilterEnvoyPtr) -> usize;
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks_size(filter: FilterEnvoyPtr) -> usize;
    /// Fills `out` with as many buffers as `get_read_buffer_chunks_size` said.
    pub fn envoy_dynamic_module_callback_network_filter_get_read_buffer_chunks(
        filter: FilterEnvoyPtr,
        out: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_network_filter_drain_read_buffer(filter: FilterEnvoyPtr, length: usize) -> bool;
    /// Writes to the client (through the connection's write filters).
    pub fn envoy_dynamic_module_callback_network_filter_write(
        filter: FilterEnvoyPtr,
        data: *const u8,
        length: usize,
        end_stream: bool,
    );
    pub fn envoy_dynamic_module_callback_network_filter_close(filter: FilterEnvoyPtr, close_type: u32);
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_new(filter: FilterEnvoyPtr) -> SchedulerPtr;
    /// Callable from any thread: Envoy calls `on_network_filter_scheduled(event_id)` on the
    /// filter's worker thread.
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_commit(scheduler: SchedulerPtr, event_id: u64);
    pub fn envoy_dynamic_module_callback_network_filter_scheduler_delete(scheduler: SchedulerPtr);

    /// Defines a counter of the configuration (only during `on_network_filter_config_new`);
    /// ids start at 1.
    pub fn envoy_dynamic_module_callback_network_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_config_define_histogram(
        config: *mut c_void,
        name: ModuleBuffer,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_increment_counter(filter: FilterEnvoyPtr, id: usize, value: u64) -> u32;
    pub fn envoy_dynamic_module_callback_network_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> u32;
}
