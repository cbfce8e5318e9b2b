//! One outbound send's socket: connect, write the payload the table encoded, half-close,
//! read until the peer closes. A thin driver: it reports what happened on the socket
//! ([`Progress`]) and the peer table decides what that means, when the send times out and
//! what bytes it carries (see `peer_table::send`).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::peer_table::SendId;

/// Most bytes read back from a peer before the send is given up on as unconfirmed. Some
/// implementations answer on the socket (`IP:PORT NAME connected`); what they say is kept
/// for the debug log. A peer that streams more is not read any further: it would keep the
/// node reading (and a core busy) until the deadline.
const REPLY_CAP: usize = 256;

/// What happened on the socket, for the peer table.
#[derive(Debug)]
pub enum Progress {
    /// Connected; this is the connection's local address. Nothing more happens until the
    /// payload arrives ([`Outbound::set_payload`]).
    Connected(SocketAddr),
    /// The payload is written and the sending side shut down.
    Written,
    /// The peer closed cleanly. The send is over.
    Closed,
    /// The peer wrote back more than [`REPLY_CAP`] bytes instead of closing; reading
    /// stopped. The send is over.
    TalkedBack,
    /// The socket failed. The send is over.
    Failed(io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    /// Connected and reported; waiting for the table's payload.
    AwaitingPayload,
    Writing,
    /// Written and half-closed; reading until the peer closes.
    AwaitingClose,
}

#[derive(Debug)]
pub struct Outbound {
    pub stream: TcpStream,
    pub id: SendId,
    pub to: SocketAddr,
    stage: Stage,
    payload: Bytes,
    written: usize,
    /// The first bytes read back, for the log.
    reply: Vec<u8>,
    /// All bytes read back.
    replied: usize,
}

impl Outbound {
    pub fn new(stream: TcpStream, id: SendId, to: SocketAddr) -> Self {
        Outbound {
            stream,
            id,
            to,
            stage: Stage::Connecting,
            payload: Bytes::new(),
            written: 0,
            reply: Vec::new(),
            replied: 0,
        }
    }

    /// The bytes to write, once connected. Ignored at any other stage.
    pub fn set_payload(&mut self, payload: Bytes) {
        if self.stage == Stage::AwaitingPayload {
            self.payload = payload;
            self.stage = Stage::Writing;
        }
    }

    /// Advances as far as the socket allows; `Some` when there is news for the table.
    /// Call again after news that does not end the send (`Connected`, `Written`).
    pub fn drive(&mut self, scratch: &mut [u8]) -> Option<Progress> {
        loop {
            let step = match self.stage {
                Stage::Connecting => self.finish_connect(),
                Stage::AwaitingPayload => return None,
                Stage::Writing => self.write(),
                Stage::AwaitingClose => self.await_close(scratch),
            };
            match step {
                Step::Again => continue,
                Step::Wait => return None,
                Step::News(p) => return Some(p),
            }
        }
    }

    fn finish_connect(&mut self) -> Step {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Step::News(Progress::Failed(e));
        }
        match self.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Again,
            Err(e) => return Step::News(Progress::Failed(e)),
        }
        match self.stream.local_addr() {
            Ok(local) => {
                self.stage = Stage::AwaitingPayload;
                Step::News(Progress::Connected(local))
            }
            Err(e) => Step::News(Progress::Failed(e)),
        }
    }

    fn write(&mut self) -> Step {
        while self.written < self.payload.len() {
            match self.stream.write(&self.payload[self.written..]) {
                Ok(0) => {
                    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
                    return Step::News(Progress::Failed(reset));
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::News(Progress::Failed(e)),
            }
        }
        if let Err(e) = self.stream.shutdown(std::net::Shutdown::Write) {
            // A reset that arrived since the write shows as "not connected" here; the
            // socket's pending error says what really happened.
            let e = self.stream.take_error().ok().flatten().unwrap_or(e);
            return Step::News(Progress::Failed(e));
        }
        self.stage = Stage::AwaitingClose;
        Step::News(Progress::Written)
    }

    fn await_close(&mut self, scratch: &mut [u8]) -> Step {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    if !self.reply.is_empty() {
                        log::debug!(
                            "{} replied on the socket: {:?}",
                            self.to,
                            String::from_utf8_lossy(&self.reply)
                        );
                    }
                    return Step::News(Progress::Closed);
                }
                Ok(n) => {
                    let room = REPLY_CAP.saturating_sub(self.reply.len());
                    self.reply.extend_from_slice(&scratch[..n.min(room)]);
                    self.replied += n;
                    if self.replied > REPLY_CAP {
                        log::warn!(
                            "{}: kept writing back after our message instead of closing \
                             ({} bytes so far, starting {:?}): stopped reading, closed; \
                             the message was written but not confirmed",
                            self.to,
                            self.replied,
                            String::from_utf8_lossy(&self.reply)
                        );
                        return Step::News(Progress::TalkedBack);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::News(Progress::Failed(e)),
            }
        }
    }
}

enum Step {
    Again,
    Wait,
    News(Progress),
}
