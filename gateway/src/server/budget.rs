//! How many connections the API listener holds: at most a global number, and at most a
//! number per client address, both taken before the TLS handshake so that a peer that
//! opens connections and sends nothing costs no more than its share; and how fast one
//! address may open them, so that a peer reconnecting in a loop (or a thousand
//! connections ended at once and reopened) spreads its handshakes over time instead of
//! landing them on the CPU together.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use skyport_core::clock::SharedClock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::peer_rate::PeerRate;
use crate::per_key::{PerKeyLimit, Slot};

/// Descriptors kept out of the connection budget for everything else the gateway opens
/// (the metrics listener, plugin sockets, databases, log files).
pub(super) const DESCRIPTOR_RESERVE: usize = 256;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The listener holds its most connections.
    Global,
    /// This peer holds its most connections.
    Peer,
    /// This peer opens connections faster than its rate.
    PeerRate,
}

impl Refused {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Peer => "peer",
            Self::PeerRate => "peer_rate",
        }
    }

    /// The `[server]` setting that refused it.
    pub(super) fn setting(self) -> &'static str {
        match self {
            Self::Global => "max_connections",
            Self::Peer => "max_connections_per_peer",
            Self::PeerRate => "new_connections_per_peer_per_sec",
        }
    }
}

/// The listener's connection budget.
pub(super) struct ConnectionBudget {
    global: Arc<Semaphore>,
    per_peer: PerKeyLimit<IpAddr>,
    new_per_peer: PeerRate,
}

/// One connection's place in the budget; given back on drop.
pub(super) struct Admitted {
    _global: OwnedSemaphorePermit,
    _peer: Slot<IpAddr>,
}

impl ConnectionBudget {
    /// At most `global` connections, `per_peer` of them from one address, which opens at
    /// most `new_per_peer_per_sec` a second (and twice as many at once: a client that opens
    /// its pool of connections together), by `clock`.
    pub(super) fn new(
        global: usize,
        per_peer: usize,
        new_per_peer_per_sec: u32,
        clock: SharedClock,
    ) -> Self {
        let rate = NonZeroU32::new(new_per_peer_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
        Self {
            global: Arc::new(Semaphore::new(global)),
            per_peer: PerKeyLimit::new(per_peer),
            new_per_peer: PeerRate::new(rate, burst, clock),
        }
    }

    /// A connection from `peer`, if its rate and the budget have room for it.
    pub(super) fn admit(&self, peer: IpAddr) -> Result<Admitted, Refused> {
        if !self.new_per_peer.allows(peer) {
            return Err(Refused::PeerRate);
        }
        let global = Arc::clone(&self.global)
            .try_acquire_owned()
            .map_err(|_| Refused::Global)?;
        let peer = self.per_peer.take(&peer).ok_or(Refused::Peer)?;
        Ok(Admitted {
            _global: global,
            _peer: peer,
        })
    }
}

/// The global limit: `configured`, or what the descriptor limit leaves after
/// [`DESCRIPTOR_RESERVE`] (at least 16).
pub(super) fn global_limit(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| {
        let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20);
        (descriptors as usize)
            .saturating_sub(DESCRIPTOR_RESERVE)
            .max(16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use skyport_core::clock::{ManualClock, SystemClock};

    #[test]
    fn connections_are_counted_globally_and_per_peer_and_given_back_on_drop() {
        let budget = ConnectionBudget::new(3, 2, 1000, SystemClock::shared());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = budget.admit(a).unwrap();
        let _a2 = budget.admit(a).unwrap();
        assert_eq!(budget.admit(a).err(), Some(Refused::Peer));
        let _b1 = budget.admit(b).unwrap();
        assert_eq!(budget.admit(b).err(), Some(Refused::Global));
        drop(a1);
        let _a3 = budget.admit(a).unwrap();
        assert_eq!(budget.admit(b).err(), Some(Refused::Global));
    }

    #[test]
    fn an_address_opens_at_most_its_rate_of_new_connections() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let budget = ConnectionBudget::new(1000, 1000, 4, clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        // A burst of twice the rate, then no more.
        let mut held: Vec<Admitted> = (0..8).map(|_| budget.admit(a).unwrap()).collect();
        assert_eq!(budget.admit(a).err(), Some(Refused::PeerRate));
        // Another address has its own rate.
        held.push(budget.admit(b).unwrap());
        // A quarter of a second later, one more.
        clock.advance(Duration::from_millis(250));
        held.push(budget.admit(a).unwrap());
        assert_eq!(budget.admit(a).err(), Some(Refused::PeerRate));
    }

    #[test]
    fn the_default_limit_leaves_a_reserve_of_descriptors() {
        assert_eq!(global_limit(Some(10)), 10);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1 << 20) as usize;
        assert_eq!(
            global_limit(None),
            soft.saturating_sub(DESCRIPTOR_RESERVE).max(16)
        );
    }
}
