//! One accepted connection's socket side: read passes fed to its [`Assembler`], which
//! decides what the bytes mean.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::assembler::Assembler;
use crate::stream::frame;
use crate::trust::session;

/// An accepted connection being read.
#[derive(Debug)]
pub struct Inbound {
    pub stream: TcpStream,
    /// The socket's peer address: the evidence of who sent the bytes.
    pub source: SocketAddr,
    pub asm: Assembler,
    /// Waiting in the reactor's deferred list (output backed up): listed once.
    pub deferred: bool,
    /// The bytes admission counts for this connection (its assembler's, when last told).
    pub accounted: usize,
    /// With the fast path on, the first bytes while they may still be a stream's preface
    /// (fewer than its 8): held back from the assembler until told apart.
    pub sniff: Option<Vec<u8>>,
}

/// What a read pass found.
#[derive(Debug)]
pub enum Found {
    /// Bytes for the assembler (fed already).
    Legacy,
    /// The connection opened with the fast path's preface: hand it, with every byte read
    /// so far, to a stream receiver.
    Stream { bytes: Vec<u8>, pass: Pass },
}

/// How a read pass ended.
#[derive(Debug)]
pub enum Pass {
    /// The socket would block: more may come.
    Open,
    /// The peer closed its side.
    Eof,
    /// The connection failed (reset...).
    Failed(io::Error),
}

/// Whether `buf` (an inbound connection's first bytes) opens a stream, plaintext
/// (`\x89p2pchat`) or encrypted (`\x8ap2pchat`): `None` while it may still be one.
pub fn any_preface(buf: &[u8]) -> Option<bool> {
    match (frame::is_preface(buf), session::is_preface(buf)) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (None, _) | (_, None) => None,
        _ => Some(false),
    }
}

/// Reads until the socket would block, the peer closes, it fails, or `scratch` is full.
/// Returns how the pass ended and how many bytes are in `scratch`. A full scratch (larger
/// than the largest message) ends the pass: the assembler refuses an arrival that big.
pub fn read_pass(stream: &mut TcpStream, scratch: &mut [u8]) -> (Pass, usize) {
    let mut n = 0;
    loop {
        if n == scratch.len() {
            return (Pass::Open, n);
        }
        match stream.read(&mut scratch[n..]) {
            Ok(0) => return (Pass::Eof, n),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (Pass::Open, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Pass::Failed(e), n),
        }
    }
}

impl Inbound {
    /// One read pass into the assembler (or, first, into the preface check).
    pub fn read(&mut self, scratch: &mut [u8], now: Instant) -> Found {
        let (pass, n) = read_pass(&mut self.stream, scratch);
        if let Some(mut head) = self.sniff.take() {
            head.extend_from_slice(&scratch[..n]);
            match any_preface(&head) {
                Some(true) => return Found::Stream { bytes: head, pass },
                None if matches!(pass, Pass::Open) => {
                    self.sniff = Some(head);
                    return Found::Legacy;
                }
                // Not a preface, or the connection ended before one could be: legacy.
                _ => {
                    if !head.is_empty() {
                        self.asm.on_bytes(&head, now);
                    }
                }
            }
        } else if n > 0 {
            self.asm.on_bytes(&scratch[..n], now);
        }
        match pass {
            Pass::Open => {}
            Pass::Eof => self.asm.on_eof(),
            Pass::Failed(e) => {
                log::debug!("{}: connection failed: {e}", self.source);
                self.asm.on_reset();
            }
        }
        Found::Legacy
    }
}
