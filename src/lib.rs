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
//!   `connect`, `quit`, the progress of each send's socket, `handle_timeout`) take `now`;
//!   outputs are [`peer_table::Effect`]s (show an event; open a send's connection, write
//!   its bytes, drop it; exit) pulled with `poll_effect`, and the next wake-up from
//!   `poll_timeout`. Every deadline of a send, its bytes and its outcome are decided there.
//!   No sockets, no clock.
//! * [`assembler`]: one inbound connection's bytes as messages (arrivals, headers, the idle
//!   flush, read deadlines, size caps, cut messages): `on_bytes`/`on_eof`/`on_reset`/
//!   `on_evicted` and `handle_timeout(now)` in, `poll_output` and `poll_timeout` out. Every
//!   message is parsed once, there.
//! * [`admission`]: which inbound connections are taken, kept and closed first (per-source
//!   counts, rate tokens, byte budget, eviction choice, accept back-off, limits fitted to
//!   the open-files limit), pure.
//! * [`rate`]: per-source-IP token buckets, time passed in.
//! * [`console`]: what the user types (the original's menu, `/` commands, plain text for
//!   the current peer), pure;
//!   [`address`]: the addresses typed there (and in `--peer`), IPv6 zones included.
//! * [`render`] and [`sanitize`]: events to human lines (terminal-safe) or JSON lines.
//! * [`reactor`]: the only IO, obeying the pure parts. One `mio::Poll` over the listener,
//!   every connection (one `Slab` behind a typed `ConnId`), stdin, stdout and signals.
//!   Each turn: carry out the table's effects, write stdout, sleep until the next event or
//!   the earliest deadline, read the clock once, handle events, fire every due deadline. A
//!   received message goes accept → read → assembler → admission's rate check →
//!   `PeerTable::handle_message` → `Effect::Show` → stdout.
//! * [`stream`]: the fast path between p2pchat nodes (proof by an empty-connection probe,
//!   one framed pipelined stream per peer, receipts), pure; the peer table routes each
//!   peer's messages by its proof (`peer_table/fast.rs`), the reactor drives the probe and
//!   stream sockets (`reactor/fast.rs`). Off with `--legacy-only`.
//! * [`log_sink`]: the logger. Lines go to a bounded buffer and out to stderr with writes
//!   that never block; the reactor writes the rest when stderr is writable.
//!
//! # Run loop contract
//!
//! After any input to the [`peer_table::PeerTable`], call `poll_effect` until it returns
//! `None`; call `handle_timeout(now)` once `poll_timeout()` has passed. For a
//! [`peer_table::Effect::Transmit`], open the connection and report its progress:
//! `handle_send_connected` (the table answers with [`peer_table::Effect::Write`]), then
//! `handle_send_written`, then `handle_send_closed` or `handle_send_talked_back`; or
//! `handle_send_error` at any point. Reports that end a send come after its socket is
//! dropped; [`peer_table::Effect::Abort`] asks for that when the table ends a send itself.

pub mod address;
pub mod admission;
pub mod assembler;
pub mod config;
pub mod console;
pub mod editor;
pub mod event;
pub mod identity;
pub mod log_sink;
pub mod look;
mod os;
pub mod peer_table;
pub mod rate;
mod rate_log;
pub mod reactor;
pub mod render;
pub mod sanitize;
pub mod stream;
pub mod trust;
pub mod wire;

pub use os::is_terminal;
