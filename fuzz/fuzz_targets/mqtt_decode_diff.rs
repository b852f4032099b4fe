//! Differential fuzzing against mqttbytes-ng (the maintained fork of mqttbytes): one packet,
//! decoded by both; where both read it, they read the same packet (through the oracle's
//! encoder); where they disagree, it is one of the documented differences
//! (protocols/mqtt/tests/common/oracle.rs, README "Codec choice").
//!
//! Input: byte 0 picks the version (bit 0), the rest is the packet.
#![no_main]

use geomesh_mqtt::Version;
use libfuzzer_sys::fuzz_target;

#[path = "../../protocols/mqtt/tests/common/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let v = if ctl & 1 == 0 { Version::V311 } else { Version::V5 };
    if let Err(why) = oracle::compare(v, input) {
        panic!("{why}");
    }
});
