//! Receiving: accepting connections, reading them into their assemblers, making room, and
//! handing what they complete to the peer table. The rules are not here: framing is
//! [`crate::assembler`]'s, admission [`crate::admission`]'s; this file only moves bytes
//! and obeys.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use super::inbound::{self, Found, Inbound, Pass};
use super::{ACCEPTS_PER_TURN, Conn, ConnId, Node};
use crate::admission::{Candidate, Verdict};
use crate::assembler::{Assembler, Dropped, Output};
use crate::identity::limit_bucket;
use crate::os;

impl Node {
    pub(super) fn accept(&mut self, now: Instant) {
        self.accept_pending = true;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.paused || !self.admission.may_accept(now) {
                return;
            }
            match self.listener.accept() {
                Ok((stream, addr)) => {
                    // On the dual-stack listener IPv4 peers come as ::ffff:a.b.c.d: one
                    // host, one form, for the limits, the logs and the peer table.
                    let addr = match addr {
                        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
                            SocketAddr::new(addr.ip().to_canonical(), addr.port())
                        }
                        other => other,
                    };
                    self.admit(now, stream, addr)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if os::is_fd_exhaustion(&e) => {
                    self.admission.out_of_fds(now, &e);
                    return;
                }
                Err(e) => {
                    // Whatever it is (ENOBUFS, ENOMEM...), back off rather than spin.
                    self.admission.accept_failed(now, &e);
                    return;
                }
            }
        }
    }

    pub(super) fn admit(&mut self, now: Instant, mut stream: TcpStream, addr: SocketAddr) {
        match self.admission.on_accept(now, addr.ip()) {
            Verdict::Admit => {}
            // Dropping the stream closes it; both are counted and reported.
            Verdict::SourceFull | Verdict::RateLimited => return,
        }
        // The sender usually wrote and closed before we accepted: read it all now, with no
        // registration, slot or copy. Otherwise watch the connection for the rest.
        let mut scratch = std::mem::take(&mut self.scratch);
        let (pass, n) = inbound::read_pass(&mut stream, &mut scratch);
        let fast = self.table.config().fast.is_some();
        let head = &scratch[..n];
        if fast && inbound::any_preface(head) == Some(true) {
            let bytes = head.to_vec();
            self.scratch = scratch;
            return self.open_stream_in(now, stream, addr, bytes, pass);
        }
        match pass {
            Pass::Eof => {
                if fast && n == 0 {
                    answer_probe(&mut stream, addr, self.proof_version());
                }
                let out = Assembler::whole(&self.framing, head);
                self.show(now, addr, out);
            }
            Pass::Open if fast && inbound::any_preface(head).is_none() => {
                // Nothing yet, or the start of a preface: told apart at the next read.
                let asm = Assembler::new(self.framing, now);
                self.watch(now, stream, addr, asm, Some(head.to_vec()));
            }
            Pass::Open | Pass::Failed(_) => {
                let mut asm = Assembler::new(self.framing, now);
                asm.on_bytes(head, now);
                if let Pass::Failed(e) = pass {
                    log::debug!("{addr}: connection failed at once: {e}");
                    asm.on_reset();
                }
                self.watch(now, stream, addr, asm, None);
            }
        }
        self.scratch = scratch;
    }

    /// Gives a connection that is not complete yet a slot (making room if all are taken).
    pub(super) fn watch(
        &mut self,
        now: Instant,
        mut stream: TcpStream,
        addr: SocketAddr,
        mut asm: Assembler,
        sniff: Option<Vec<u8>>,
    ) {
        if !asm.is_done() {
            if self.admission.full() {
                self.evict(now);
            }
            let id = self.conns.next_id();
            match self
                .poll
                .registry()
                .register(&mut stream, id.token(), Interest::READABLE)
            {
                Ok(()) => {
                    self.admission.opened(addr.ip());
                    let deadline = asm.poll_timeout();
                    let conn = Inbound {
                        stream,
                        source: addr,
                        asm,
                        deferred: false,
                        accounted: 0,
                        sniff,
                    };
                    let id = self.conns.insert(Conn::In(conn), deadline);
                    self.account(id);
                    self.drain_inbound(now, id);
                    if self.admission.over_budget() {
                        self.evict(now);
                    }
                    return;
                }
                Err(e) => {
                    log::warn!("cannot watch the connection from {addr}: {e}");
                    asm.on_reset();
                }
            }
        }
        while let Some(out) = asm.poll_output() {
            self.show(now, addr, out);
        }
    }

    pub(super) fn connection_ready(&mut self, now: Instant, id: ConnId) {
        match self.conns.get(id) {
            Some(Conn::In(_)) => self.service_inbound(now, id, true),
            Some(Conn::Out(_)) => self.drive_send(now, id),
            Some(Conn::Probe(_)) => self.drive_probe(now, id, false),
            Some(Conn::StreamOut(_)) => self.drive_stream_out(now, id),
            Some(Conn::StreamIn(_)) => self.service_stream_in(now, id, true, false),
            None => {} // closed earlier in this batch
        }
    }

    /// Reads (when readable) and fires the due timers of an inbound connection, then shows
    /// what it completed. While output is backed up it only notes that it needs attention.
    pub(super) fn service_inbound(&mut self, now: Instant, id: ConnId, readable: bool) {
        if self.paused {
            return self.defer(id);
        }
        let Some(Conn::In(conn)) = self.conns.get_mut(id) else {
            return;
        };
        if readable && let Found::Stream { bytes, pass } = conn.read(&mut self.scratch, now) {
            return self.upgrade_to_stream(now, id, bytes, pass);
        }
        conn.asm.handle_timeout(now);
        self.account(id);
        self.drain_inbound(now, id);
        if self.admission.over_budget() {
            self.evict(now);
        }
    }

    /// Shows what the connection's assembler has for the user, then closes it if it is
    /// done or sets its next deadline. Stops (and defers the rest) if output backs up.
    pub(super) fn drain_inbound(&mut self, now: Instant, id: ConnId) {
        loop {
            if self.paused {
                return self.defer(id);
            }
            let Some(Conn::In(conn)) = self.conns.get_mut(id) else {
                return;
            };
            let Some(out) = conn.asm.poll_output() else {
                break;
            };
            let source = conn.source;
            if out == Output::Probe && self.table.config().fast.is_some() {
                let version = self.proof_version();
                if let Some(Conn::In(conn)) = self.conns.get_mut(id) {
                    answer_probe(&mut conn.stream, source, version);
                }
            }
            self.show(now, source, out);
        }
        let Some(Conn::In(conn)) = self.conns.get(id) else {
            return;
        };
        if conn.asm.is_done() {
            self.close(id);
        } else {
            let at = conn.asm.poll_timeout();
            self.conns.set_deadline(id, at);
        }
    }

    /// Tells admission what the connection's assembler holds now. Called after every
    /// change to it, so that what a connection is counted for leaves with it.
    fn account(&mut self, id: ConnId) {
        if let Some(Conn::In(conn)) = self.conns.get_mut(id) {
            let now_held = conn.asm.buffered();
            self.admission.buffered_changed(conn.accounted, now_held);
            conn.accounted = now_held;
        }
    }

    /// Remembers that a connection needs attention once output drains; its deadline waits
    /// too (a backed-up output must not make deadlines show messages).
    pub(super) fn defer(&mut self, id: ConnId) {
        let deferred = match self.conns.get_mut(id) {
            Some(Conn::In(conn)) => &mut conn.deferred,
            Some(Conn::StreamIn(conn)) => &mut conn.deferred,
            _ => return,
        };
        if !*deferred {
            *deferred = true;
            self.deferred.push_back(id);
        }
        self.conns.set_deadline(id, None);
    }

    /// Closes one inbound connection to make room (see [`crate::admission`]); what it sent
    /// that parses is shown, marked as cut.
    pub(super) fn evict(&mut self, now: Instant) {
        let candidates: Vec<Candidate<ConnId>> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match c {
                Conn::In(i) if !i.asm.is_done() => Some(Candidate {
                    id,
                    source: i.source.ip(),
                    message_began: i.asm.message_began(),
                    arrivals: i.asm.arrivals_in_message(),
                    buffered: i.asm.buffered(),
                }),
                _ => None,
            })
            .collect();
        let Some(victim) = self.admission.choose_victim(candidates.iter().copied()) else {
            return;
        };
        if let Some(c) = candidates.iter().find(|c| c.id == victim) {
            self.admission.evicted(now, c);
        }
        let Some(Conn::In(conn)) = self.conns.get_mut(victim) else {
            return;
        };
        conn.asm.on_evicted();
        self.account(victim);
        // Shown whatever the output's state: the slot must be free now.
        while let Some(Conn::In(conn)) = self.conns.get_mut(victim) {
            let Some(out) = conn.asm.poll_output() else {
                break;
            };
            let source = conn.source;
            self.show(now, source, out);
        }
        self.close(victim);
    }

    /// Hands one assembled output to the table (or the log).
    pub(super) fn show(&mut self, now: Instant, source: SocketAddr, out: Output) {
        let ip = source.ip();
        match out {
            Output::Message { msg, index, cut } => {
                if !self.admission.allow_message(now, ip, index) {
                    return; // counted by the limiter, reported once per interval
                }
                // A cut message carries its mark to the user: no log line per message.
                match cut {
                    None => self.table.handle_message(now, source, msg),
                    Some(cut) => self.table.handle_cut_message(now, source, msg, cut),
                }
                self.drain_effects(now);
            }
            Output::Probe => log::debug!("{source}: empty connection (probe)"),
            Output::ShownMayBeCut(cut) => {
                self.remote_log.hit(
                    now,
                    limit_bucket(ip),
                    "messages shown at a pause then cut",
                    || {
                        format!(
                            "{source}: the message last shown from this connection (after a pause \
                         in its sending) may be cut short: then {cut}"
                        )
                    },
                );
            }
            Output::Dropped { bytes, why } => {
                let kind = match why {
                    Dropped::Malformed(_) => "malformed messages dropped",
                    Dropped::TooLarge { .. } => "messages longer than --max-message dropped",
                    Dropped::Cut(_) => "connections ended before a whole header arrived",
                };
                self.remote_log.hit(now, limit_bucket(ip), kind, || {
                    format!("{ip}: dropped {bytes} bytes: {why}")
                });
            }
        }
    }
}

/// Answers an empty connection that ended with its sender's close: the fast path's proof
/// (PROTOCOL.md, "Proof"), one non-blocking write, then the caller closes. A sender that
/// has gone (a reset, a closed pipe) simply does not get it.
pub(super) fn answer_probe(stream: &mut TcpStream, source: SocketAddr, version: u8) {
    use std::io::Write;
    let reply = crate::stream::proof::reply(version);
    match stream.write(&reply) {
        Ok(n) if n == reply.len() => log::debug!("{source}: empty connection: proof written"),
        Ok(n) => log::debug!("{source}: empty connection: {n} bytes of the proof written"),
        Err(e) => log::debug!("{source}: empty connection: proof not written ({e})"),
    }
}
