//! The reactor's side of the user's sends: at most `max` outbound connections at once
//! (the descriptor limit leaves room for them, see [`crate::admission::fit_to_fd_limit`]);
//! transmits beyond that wait their turn in order, within their deadline.

use std::collections::VecDeque;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use super::outbound::{self, Outbound};
use super::{Conn, ConnId, Node};
use crate::event::{SendFailure, SendOutcome};
use crate::peer_table::Transmit;

/// Outbound connection slots and the transmits waiting for one.
#[derive(Debug)]
pub struct Sends {
    max: usize,
    open: usize,
    waiting: VecDeque<Transmit>,
}

impl Sends {
    pub fn new(max: usize) -> Self {
        Sends {
            max: max.max(1),
            open: 0,
            waiting: VecDeque::new(),
        }
    }

    pub fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// The earliest deadline of a waiting transmit.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.iter().map(|t| t.deadline).min()
    }

    pub fn take_waiting(&mut self) -> Vec<Transmit> {
        self.waiting.drain(..).collect()
    }
}

impl Node {
    /// Starts a send, or queues it while every send slot is taken.
    pub(super) fn transmit(&mut self, now: Instant, t: Transmit) {
        if self.sends.open >= self.sends.max {
            if self.sends.waiting.is_empty() {
                log::info!(
                    "{} sends open (the most the open-files limit allows): more wait their turn",
                    self.sends.open
                );
            }
            self.sends.waiting.push_back(t);
            return;
        }
        if t.deadline <= now {
            let outcome = SendOutcome::Failed(SendFailure::ConnectTimedOut);
            self.table.handle_send_done(now, t.id, outcome);
            return;
        }
        let mut stream = match TcpStream::connect(t.to) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("connect to {} failed at once: {e}", t.to);
                let outcome = outbound::failure(&e, outbound::Stage::Connecting);
                self.table.handle_send_done(now, t.id, outcome);
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
            let outcome = SendOutcome::Failed(SendFailure::Io(e.to_string()));
            self.table.handle_send_done(now, t.id, outcome);
            return;
        }
        self.sends.open += 1;
        let conn = Conn::Out(Outbound::new(stream, t.id, t.to, t.text));
        self.conns.insert(conn, Some(t.deadline));
    }

    pub(super) fn drive_send(&mut self, now: Instant, id: ConnId) {
        let me = outbound::Sender {
            name: &self.cfg.name,
            port: self.local.port(),
            advertise: self.cfg.advertise,
        };
        let Some(Conn::Out(conn)) = self.conns.get_mut(id) else {
            return;
        };
        if let Some(outcome) = conn.drive(&me, &mut self.scratch) {
            let send = conn.id;
            self.close_send(now, id);
            self.table.handle_send_done(now, send, outcome);
        }
    }

    pub(super) fn send_timed_out(&mut self, now: Instant, id: ConnId) {
        let Some(Conn::Out(conn)) = self.conns.get(id) else {
            return;
        };
        let (send, outcome) = (conn.id, conn.timed_out());
        self.close_send(now, id);
        self.table.handle_send_done(now, send, outcome);
    }

    /// Closes a send's connection and gives its slot to the next waiting transmit.
    fn close_send(&mut self, now: Instant, id: ConnId) {
        self.close(id);
        while self.sends.open < self.sends.max {
            let Some(t) = self.sends.waiting.pop_front() else {
                break;
            };
            self.transmit(now, t);
        }
    }

    /// Waiting transmits whose deadline passed fail without a connection.
    pub(super) fn expire_waiting_sends(&mut self, now: Instant) {
        if self.sends.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        let (late, keep): (Vec<Transmit>, Vec<Transmit>) = self
            .sends
            .waiting
            .drain(..)
            .partition(|t| t.deadline <= now);
        self.sends.waiting.extend(keep);
        for t in late {
            let outcome = SendOutcome::Failed(SendFailure::ConnectTimedOut);
            self.table.handle_send_done(now, t.id, outcome);
        }
    }
}
