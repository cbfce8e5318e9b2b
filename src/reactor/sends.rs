//! The reactor's side of the user's sends: opening the connection, reporting its progress
//! to the peer table (which owns every send's stage, deadline, bytes and outcome), and at
//! most `max` outbound connections at once (the descriptor limit leaves room for them, see
//! [`crate::admission::fit_to_fd_limit`]): transmits beyond that wait their turn in order.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use mio::Interest;
use mio::net::TcpStream;

use super::outbound::{Outbound, Progress};
use super::{Conn, ConnId, Node};
use crate::peer_table::{IdMap, SendId, Transmit};

/// Outbound connection slots, which connection carries which send, and the transmits
/// waiting for a slot.
#[derive(Debug)]
pub struct Sends {
    max: usize,
    open: IdMap<SendId, ConnId>,
    waiting: VecDeque<Transmit>,
}

impl Sends {
    pub fn new(max: usize) -> Self {
        Sends {
            max: max.max(1),
            open: IdMap::default(),
            waiting: VecDeque::new(),
        }
    }

    /// A send's connection was closed.
    pub fn closed(&mut self, id: SendId) {
        self.open.remove(&id);
    }
}

impl Node {
    /// Starts a send, or queues it while every send slot is taken. Its deadline is the
    /// table's: a send still waiting then is aborted like any other.
    pub(super) fn transmit(&mut self, now: Instant, t: Transmit) {
        if self.sends.open.len() >= self.sends.max {
            if self.sends.waiting.is_empty() {
                log::info!(
                    "{} sends open (the most the open-files limit leaves room for): more wait \
                     their turn",
                    self.sends.open.len()
                );
            }
            self.sends.waiting.push_back(t);
            return;
        }
        let mut stream = match TcpStream::connect(t.to) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("connect to {} failed at once: {e}", t.to);
                self.table.handle_send_error(now, t.id, e);
                return;
            }
        };
        let id = self.conns.next_id();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, id.token(), interest)
        {
            self.table.handle_send_error(now, t.id, e);
            return;
        }
        let conn = Conn::Out(Outbound::new(stream, t.id, t.to));
        let id = self.conns.insert(conn, None);
        self.sends.open.insert(t.id, id);
    }

    /// The table encoded the payload of a connected send.
    pub(super) fn write_send(&mut self, now: Instant, send: SendId, payload: Bytes) {
        let Some(&id) = self.sends.open.get(&send) else {
            return;
        };
        if self.table.send_stage(send).is_none() {
            // Ended in the meantime (its deadline in the same turn): its Abort follows,
            // and a message the user was told failed must not go out.
            return;
        }
        if let Some(Conn::Out(conn)) = self.conns.get_mut(id) {
            conn.set_payload(payload);
            // Edge-triggered: the socket said writable already; write now.
            self.drive_send(now, id);
        }
    }

    /// The table ended a send itself (its deadline, or the node leaving).
    pub(super) fn abort_send(&mut self, now: Instant, send: SendId) {
        if let Some(&id) = self.sends.open.get(&send) {
            self.close_send(now, id);
        } else {
            self.sends.waiting.retain(|t| t.id != send);
        }
    }

    /// Reports what the socket did until it would block or the send is over.
    pub(super) fn drive_send(&mut self, now: Instant, id: ConnId) {
        loop {
            let Some(Conn::Out(conn)) = self.conns.get_mut(id) else {
                return;
            };
            let (send, to) = (conn.id, conn.to);
            let Some(progress) = conn.drive(&mut self.scratch) else {
                return;
            };
            // A report that ends the send comes after its socket is gone.
            match progress {
                Progress::Connected(local) => {
                    // About to write in clear: told first if the peer has a key on record.
                    self.warn_in_clear(to);
                    self.table.handle_send_connected(now, send, local)
                }
                Progress::Written => self.table.handle_send_written(now, send),
                Progress::Closed => {
                    self.close_send(now, id);
                    return self.table.handle_send_closed(now, send);
                }
                Progress::TalkedBack => {
                    self.close_send(now, id);
                    return self.table.handle_send_talked_back(now, send);
                }
                Progress::Failed(e) => {
                    self.close_send(now, id);
                    return self.table.handle_send_error(now, send, e);
                }
            }
        }
    }

    /// Closes a send's connection and gives its slot to the next waiting transmit.
    fn close_send(&mut self, now: Instant, id: ConnId) {
        self.close(id);
        while self.sends.open.len() < self.sends.max {
            let Some(t) = self.sends.waiting.pop_front() else {
                break;
            };
            self.transmit(now, t);
        }
    }
}
