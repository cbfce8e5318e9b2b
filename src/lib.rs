//! p2pchat: a terminal peer-to-peer chat node speaking the legacy course protocol.
pub mod event;
pub mod identity;
pub mod peer_table;
pub mod wire;
