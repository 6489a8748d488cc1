//! The policy seam: every decision about where a message goes, how a number registers and
//! which receipts are sent is asked of a [`Policy`]. The seam lives in `hotline-core` (the
//! core asks it); this module names it for the host, whose implementation is
//! [`crate::plugins::PluginHost`], which asks WebAssembly components. Policy sees metadata,
//! never message bodies.

pub use hotline_core::policy::*;
