//! One accepted connection's socket side: read passes fed to its [`Assembler`], which
//! decides what the bytes mean.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::assembler::Assembler;

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
    /// One read pass into the assembler.
    pub fn read(&mut self, scratch: &mut [u8], now: Instant) {
        let (pass, n) = read_pass(&mut self.stream, scratch);
        if n > 0 {
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
    }
}
