//! p2pchat: a terminal peer-to-peer chat node that speaks the legacy course protocol
//! (`IP:PORT NAME TEXT`, one TCP connection per message) byte for byte.
//!
//! # Architecture
//!
//! A sans-IO core behind a thin, single-threaded mio reactor:
//!
//! * [`wire`]: the codec. Bytes in, [`wire::Message`] out; the exact original bytes out.
//! * [`identity`]: who a peer is (socket host, canonicalised, plus listening port).
//! * [`peer_table`]: the protocol state machine. Inputs (`handle_message`, `send`,
//!   `connect`, `quit`, `handle_send_done`, `handle_timeout`) take `now`; outputs are
//!   [`peer_table::Effect`]s (show an event, transmit a message, exit) pulled with
//!   `poll_effect`, and the next wake-up from `poll_timeout`. No sockets, no clock.
//! * [`rate`]: per-source-IP token buckets, time passed in.
//! * [`console`]: what the user types (the original's menu and `/` commands), pure.
//! * [`render`] and [`sanitize`]: events to human lines (terminal-safe) or JSON lines.
//! * [`reactor`]: the only IO. One `mio::Poll` over the listener, every connection (one
//!   `Slab`), stdin and signals. Each turn: carry out the table's effects, write stdout
//!   once, sleep until the next event or the earliest deadline, read the clock once,
//!   handle events, fire every due deadline.
//! * [`log_sink`]: the logger. Lines go to a bounded buffer and out to stderr with writes
//!   that never block; the reactor writes the rest when stderr is writable.
//!
//! # Run loop contract
//!
//! After any input to the [`peer_table::PeerTable`], call `poll_effect` until it returns
//! `None`; call `handle_timeout(now)` once `poll_timeout()` has passed. A
//! [`peer_table::Effect::Transmit`] must be answered with exactly one `handle_send_done`.

pub mod config;
pub mod console;
pub mod event;
pub mod identity;
pub mod log_sink;
mod os;
pub mod peer_table;
pub mod rate;
mod rate_log;
pub mod reactor;
pub mod render;
pub mod sanitize;
pub mod wire;

pub use os::is_terminal;
