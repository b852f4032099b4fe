//! PINGREQ answered by the proxy; every broker connection kept alive: a broker the proxy has
//! not written to for half the client's keep-alive gets a PINGREQ (its PINGRESP is dropped),
//! so a client publishing to one broker does not lose the others.

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Plan};

use super::Mqtt;
use crate::packet::Packet;
use crate::Decoded;

/// PINGREQ and PINGRESP on the wire.
pub const PINGREQ: &[u8] = &[0xc0, 0x00];
pub const PINGRESP: &[u8] = &[0xd0, 0x00];

impl Mqtt {
    pub(super) fn plan_pingreq(&mut self, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        for c in cx.open_links() {
            self.send_only(cx, c, PINGREQ);
        }
        Plan::Local(Bytes::from_static(PINGRESP))
    }

    /// After each client packet: a PINGREQ to each broker not written to for half the
    /// keep-alive.
    pub(super) fn keepalive(&mut self, cx: &mut Ctx<'_, Self>) {
        let Some((connect, _)) = &self.connect else {
            return;
        };
        let half_ms = u64::from(connect.keep_alive) * 500;
        if half_ms == 0 {
            return;
        }
        let now = cx.now();
        let mut stale: Vec<ClusterId> = Vec::new();
        cx.for_each_link(|c, l| {
            if now.saturating_sub(l.last_sent) >= half_ms {
                stale.push(c);
            }
        });
        for c in stale {
            self.send_only(cx, c, PINGREQ);
        }
    }

    /// The client's DISCONNECT: to every broker (a 5.0 "with will" reaches the will's broker
    /// like the others; only it holds one). The proxy does not close the client itself: the
    /// client closes after its DISCONNECT, and each broker closes once it has read everything
    /// sent before it (a close in the same callback could drop those bytes on their way); a
    /// broker closing then ends the client's connection without words.
    pub(super) fn plan_disconnect(
        &mut self,
        request: Decoded,
        cx: &mut Ctx<'_, Self>,
    ) -> Plan<Self> {
        if let Packet::Disconnect(_) = request.packet {
            self.disconnecting = true;
            for c in cx.open_links() {
                cx.send_only(c, request.raw());
            }
        }
        Plan::Done
    }
}
