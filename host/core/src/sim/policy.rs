//! The simulated plugins: a policy whose behaviour the schedule changes between any two
//! calls, as a hot swap does mid-request (a session may route with one plugin and ask for
//! a receipt from the next). It works, fails (a trap), times out (a failure that also costs
//! the time limit of virtual time), or is a version that refuses every receipt.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use hotline_protocol::ErrorCode;

use crate::policy::{MessageMeta, Policy, PolicyError, ReceiptMeta, Refusal, Route, Slot};

/// Virtual milliseconds a timed-out plugin call costs (the host's time limit).
pub const CALL_TIME_LIMIT_MS: u64 = 500;

/// How the current plugin version behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Behaviour {
    /// Routes to the named number, accepts `123456`, allows every receipt.
    Works = 0,
    /// Every call traps.
    Traps = 1,
    /// Every call runs out of time.
    TimesOut = 2,
    /// Works, but this version refuses every receipt.
    NoReceipts = 3,
}

impl Behaviour {
    pub const ALL: [Behaviour; 4] = [Behaviour::Works, Behaviour::Traps, Behaviour::TimesOut, Behaviour::NoReceipts];

    fn from_u8(v: u8) -> Behaviour {
        Behaviour::ALL[v as usize]
    }
}

/// The policy the simulated broker asks.
#[derive(Debug, Default)]
pub struct SimPolicy {
    behaviour: AtomicU8,
    /// Calls left before the pending swap takes effect (0: none pending).
    swap_in: AtomicU64,
    /// The behaviour the pending swap installs.
    swap_to: AtomicU8,
    /// Virtual time spent in timed-out calls, not yet added to the clock.
    pub stalled_ms: AtomicU64,
    /// Swaps that took effect.
    pub swaps: AtomicU64,
}

impl SimPolicy {
    /// The behaviour now.
    pub fn behaviour(&self) -> Behaviour {
        Behaviour::from_u8(self.behaviour.load(Ordering::Relaxed))
    }

    /// Installs `to` at once (a swap between requests, or the restart's fresh load).
    pub fn set(&mut self, to: Behaviour) {
        *self.behaviour.get_mut() = to as u8;
        *self.swap_in.get_mut() = 0;
    }

    /// Installs `to` after `calls` more calls: a swap that lands in the middle of whatever
    /// a session is doing.
    pub fn swap_after(&mut self, calls: u64, to: Behaviour) {
        *self.swap_to.get_mut() = to as u8;
        *self.swap_in.get_mut() = calls.max(1);
    }

    /// Takes the virtual time timed-out calls cost since the last call.
    pub fn take_stalled(&mut self) -> u64 {
        std::mem::take(self.stalled_ms.get_mut())
    }

    /// One call begins: a pending swap may land first; then the call fails or proceeds.
    fn call(&self, slot: Slot) -> Result<Behaviour, PolicyError> {
        let left = self.swap_in.load(Ordering::Relaxed);
        if left > 0 {
            self.swap_in.store(left - 1, Ordering::Relaxed);
            if left == 1 {
                self.behaviour.store(self.swap_to.load(Ordering::Relaxed), Ordering::Relaxed);
                self.swaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        match self.behaviour() {
            Behaviour::Traps => Err(PolicyError::Failed { slot, detail: "trapped (injected)".into() }),
            Behaviour::TimesOut => {
                self.stalled_ms.fetch_add(CALL_TIME_LIMIT_MS, Ordering::Relaxed);
                Err(PolicyError::Failed { slot, detail: format!("ran out of its {CALL_TIME_LIMIT_MS} ms (injected)") })
            }
            b => Ok(b),
        }
    }
}

impl Policy for SimPolicy {
    fn route(&self, messages: Vec<MessageMeta>) -> Result<Vec<Route>, PolicyError> {
        self.call(Slot::Router)?;
        Ok(messages.into_iter().map(|m| Route::Deliver(vec![m.to])).collect())
    }

    fn request_code(&self, _phone: &str) -> Result<Result<u32, Refusal>, PolicyError> {
        self.call(Slot::Registrar)?;
        Ok(Ok(600))
    }

    fn verify_code(&self, _phone: &str, code: &str) -> Result<Result<(), Refusal>, PolicyError> {
        self.call(Slot::Registrar)?;
        if code == super::CODE {
            Ok(Ok(()))
        } else {
            Ok(Err(Refusal { error: ErrorCode::WrongCode, reason: "wrong code".into() }))
        }
    }

    fn receipt(&self, _receipt: ReceiptMeta) -> Result<bool, PolicyError> {
        Ok(self.call(Slot::Receipts)? != Behaviour::NoReceipts)
    }

    fn command(&self, slot: Slot, _from: &str, name: &str, _args: Vec<String>) -> Result<Result<String, String>, PolicyError> {
        self.call(slot)?;
        Ok(Ok(name.to_string()))
    }
}
