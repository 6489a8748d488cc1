//! The Hotline broker: QUIC sessions, durable store-and-forward delivery, receipts and
//! registration, with policy behind one seam ([`policy::Policy`]).
//!
//! Read `docs/ARCHITECTURE.md` for the map. Data path, top to bottom:
//! [`server`] (listener → connection → the session driver, which runs the delivery core
//! `hotline-core`) → [`broker`] (shared state, the core's ports) → [`store`] (fjall, the
//! committer thread) and [`policy`]; in a cluster, [`backend`] sends jobs and the
//! directory to [`cluster`] (NATS JetStream) instead.

pub mod admin;
pub mod backend;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod expiry;
pub mod live;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod monitor;
pub mod outbound;
pub mod plugins;
pub mod policy;
pub mod push;
pub mod scaffold;
pub mod server;
pub mod sessions;
pub mod sms;
pub mod store;
pub mod tls;
