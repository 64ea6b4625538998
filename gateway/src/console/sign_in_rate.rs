//! How often one address may try to sign in: each use of a sign-in link writes a session,
//! and each identity provider callback calls the provider's token endpoint, so a caller
//! sending them in a loop would spend the gateway's and the provider's work. Every address
//! gets [`SIGN_INS_PER_SEC`] tries a second, [`SIGN_IN_BURST`] at once; past that, 429.

use std::num::NonZeroU32;

use skyport_core::clock::SharedClock;

use crate::peer_rate::PeerRate;

/// Sign-in tries one address may make a second, on average.
pub(super) const SIGN_INS_PER_SEC: u32 = 2;
/// Sign-in tries one address may make at once (people behind one proxy signing in
/// together).
pub(super) const SIGN_IN_BURST: u32 = 30;

/// The sign-in rate of each address, kept by `clock`.
pub(super) fn sign_in_rate(clock: SharedClock) -> PeerRate {
    PeerRate::new(
        NonZeroU32::new(SIGN_INS_PER_SEC).expect("a rate above zero"),
        NonZeroU32::new(SIGN_IN_BURST).expect("a burst above zero"),
        clock,
    )
}
