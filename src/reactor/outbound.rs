//! One outbound send: connect, write the whole message, half-close, wait for the peer's
//! close. A clean close is a delivered message; a reset or refusal is a failure; a peer that
//! still holds the connection at the deadline has the message but did not confirm it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::event::{SendFailure, SendOutcome};
use crate::peer_table::SendId;
use crate::wire;

/// Where a send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connecting,
    Writing,
    /// Written and half-closed; waiting for the peer to close.
    AwaitingClose,
}

/// Most reply bytes kept for the debug log (some implementations answer on the socket).
const REPLY_LOG_CAP: usize = 256;

#[derive(Debug)]
pub struct Outbound {
    pub stream: TcpStream,
    pub id: SendId,
    pub to: SocketAddr,
    text: Arc<str>,
    pub stage: Stage,
    payload: Vec<u8>,
    written: usize,
    reply: Vec<u8>,
}

/// Facts needed to build the header once the connection's local address is known.
#[derive(Debug, Clone)]
pub struct Sender<'a> {
    pub name: &'a str,
    pub port: u16,
    pub advertise: Option<IpAddr>,
}

impl Outbound {
    pub fn new(stream: TcpStream, id: SendId, to: SocketAddr, text: Arc<str>) -> Self {
        Outbound {
            stream,
            id,
            to,
            text,
            stage: Stage::Connecting,
            payload: Vec::new(),
            written: 0,
            reply: Vec::new(),
        }
    }

    /// Advances as far as the socket allows. `Some(outcome)` when the send is finished.
    pub fn drive(&mut self, me: &Sender<'_>, scratch: &mut [u8]) -> Option<SendOutcome> {
        loop {
            let step = match self.stage {
                Stage::Connecting => self.finish_connect(me),
                Stage::Writing => self.write(),
                Stage::AwaitingClose => self.await_close(scratch),
            };
            match step {
                Step::Advanced => continue,
                Step::Wait => return None,
                Step::Done(outcome) => return Some(outcome),
            }
        }
    }

    fn finish_connect(&mut self, me: &Sender<'_>) -> Step {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Step::Done(failure(&e, self.stage));
        }
        match self.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::Advanced,
            Err(e) => return Step::Done(failure(&e, self.stage)),
        }
        let ip = match (me.advertise, self.stream.local_addr()) {
            (Some(ip), _) => ip,
            (None, Ok(local)) => local.ip(),
            (None, Err(e)) => return Step::Done(failure(&e, self.stage)),
        };
        match wire::encode(ip, me.port, me.name, &self.text) {
            Ok(p) => self.payload = p,
            Err(e) => return Step::Done(SendOutcome::Failed(SendFailure::Io(e.to_string()))),
        }
        self.stage = Stage::Writing;
        Step::Advanced
    }

    fn write(&mut self) -> Step {
        while self.written < self.payload.len() {
            match self.stream.write(&self.payload[self.written..]) {
                Ok(0) => return Step::Done(SendOutcome::Failed(SendFailure::Reset)),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Done(failure(&e, self.stage)),
            }
        }
        if let Err(e) = self.stream.shutdown(std::net::Shutdown::Write) {
            // A reset that arrived since the write shows as "not connected" here; the
            // socket's pending error says what really happened.
            let e = self.stream.take_error().ok().flatten().unwrap_or(e);
            return Step::Done(failure(&e, self.stage));
        }
        self.stage = Stage::AwaitingClose;
        Step::Advanced
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
                    return Step::Done(SendOutcome::Delivered);
                }
                Ok(n) => {
                    let room = REPLY_LOG_CAP.saturating_sub(self.reply.len());
                    self.reply.extend_from_slice(&scratch[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Done(failure(&e, self.stage)),
            }
        }
    }

    /// The outcome when the deadline passes at the current stage.
    pub fn timed_out(&self) -> SendOutcome {
        match self.stage {
            Stage::Connecting => SendOutcome::Failed(SendFailure::ConnectTimedOut),
            Stage::Writing => SendOutcome::Failed(SendFailure::WriteTimedOut),
            Stage::AwaitingClose => SendOutcome::Unconfirmed,
        }
    }
}

enum Step {
    Advanced,
    Wait,
    Done(SendOutcome),
}

/// Maps a socket error to what the user is told.
pub fn failure(e: &io::Error, stage: Stage) -> SendOutcome {
    let reason = match e.kind() {
        io::ErrorKind::ConnectionRefused => SendFailure::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => SendFailure::Reset,
        // Once connected, "not connected" means the peer tore the connection down.
        io::ErrorKind::NotConnected if stage != Stage::Connecting => SendFailure::Reset,
        io::ErrorKind::TimedOut if stage == Stage::Connecting => SendFailure::ConnectTimedOut,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            SendFailure::Unreachable
        }
        _ => SendFailure::Io(e.to_string()),
    };
    SendOutcome::Failed(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(kind: io::ErrorKind, stage: Stage) -> SendOutcome {
        failure(&io::Error::from(kind), stage)
    }

    #[test]
    fn socket_errors_map_to_what_the_user_is_told() {
        use io::ErrorKind as K;
        let failed = SendOutcome::Failed;
        let connecting = Stage::Connecting;
        let writing = Stage::Writing;
        assert_eq!(
            reason(K::ConnectionRefused, connecting),
            failed(SendFailure::Refused)
        );
        assert_eq!(
            reason(K::ConnectionReset, Stage::AwaitingClose),
            failed(SendFailure::Reset)
        );
        assert_eq!(reason(K::BrokenPipe, writing), failed(SendFailure::Reset));
        assert_eq!(reason(K::NotConnected, writing), failed(SendFailure::Reset));
        assert!(matches!(
            reason(K::NotConnected, connecting),
            SendOutcome::Failed(SendFailure::Io(_))
        ));
        assert_eq!(
            reason(K::TimedOut, connecting),
            failed(SendFailure::ConnectTimedOut)
        );
        assert_eq!(
            reason(K::HostUnreachable, connecting),
            failed(SendFailure::Unreachable)
        );
        assert_eq!(
            reason(K::NetworkUnreachable, connecting),
            failed(SendFailure::Unreachable)
        );
        // EHOSTUNREACH as the kernel reports it on a failed connect.
        assert_eq!(
            failure(
                &io::Error::from_raw_os_error(libc::EHOSTUNREACH),
                connecting
            ),
            failed(SendFailure::Unreachable)
        );
        let SendOutcome::Failed(other) = reason(K::PermissionDenied, connecting) else {
            panic!("permission denied is a failure");
        };
        assert_eq!(other.code(), "io");
    }
}
