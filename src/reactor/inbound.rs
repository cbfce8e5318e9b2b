//! One inbound connection: read to end of stream under a size cap, split unframed messages.

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use crate::wire;

/// How a read pass ended.
#[derive(Debug)]
pub enum ReadState {
    /// More may come: wait for the next readable event.
    Open,
    /// The peer closed its side: everything has arrived.
    Eof,
    /// The peer sent more than the cap; the data is dropped.
    TooLarge,
    /// The connection failed (reset mid-message...).
    Failed(io::Error),
}

/// An accepted connection being read.
#[derive(Debug)]
pub struct Inbound {
    pub stream: TcpStream,
    /// The socket's peer address: the evidence of who sent the bytes.
    pub source: IpAddr,
    buf: BytesMut,
    /// How much of `buf` has been searched for a second message header.
    scanned: usize,
    /// Total bytes received on this connection.
    pub received: usize,
    /// Messages delivered from this connection so far.
    pub delivered: usize,
    /// When the message being read must be complete (`--read-timeout`); restarts after
    /// each message delivered, so a kept-open connection is timed per message.
    pub read_deadline: Instant,
    /// When buffered bytes that already form a whole message are delivered if nothing more
    /// has arrived (a sender that keeps its connection open after writing).
    pub flush_at: Option<Instant>,
}

/// What the read straight after `accept` found.
#[derive(Debug)]
pub enum FirstRead {
    /// The whole stream (peer closed) is in `scratch[..n]`: the common case, handled
    /// without registering the connection or copying the bytes.
    Whole(usize),
    /// `scratch[..n]` arrived so far; more is to come.
    Partial(usize),
    TooLarge,
    /// The connection failed after `n` bytes.
    Failed(io::Error, usize),
}

/// Reads what is already there on a just-accepted connection.
pub fn first_read(stream: &mut TcpStream, scratch: &mut [u8], cap: usize) -> FirstRead {
    let mut n = 0;
    loop {
        if n == scratch.len() {
            return FirstRead::Partial(n);
        }
        match stream.read(&mut scratch[n..]) {
            Ok(0) => return FirstRead::Whole(n),
            Ok(k) => {
                n += k;
                if n > cap {
                    return FirstRead::TooLarge;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return FirstRead::Partial(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return FirstRead::Failed(e, n),
        }
    }
}

impl Inbound {
    /// A connection whose first `data` bytes were already read.
    pub fn new(stream: TcpStream, source: IpAddr, data: &[u8], read_deadline: Instant) -> Self {
        Inbound {
            stream,
            source,
            buf: BytesMut::from(data),
            scanned: 0,
            received: data.len(),
            delivered: 0,
            read_deadline,
            flush_at: None,
        }
    }

    /// When this connection next needs attention without a readable event.
    pub fn next_deadline(&self) -> Instant {
        match self.flush_at {
            Some(at) => at.min(self.read_deadline),
            None => self.read_deadline,
        }
    }

    /// Reads until the socket would block, the peer closes, or `cap` is exceeded.
    pub fn read(&mut self, cap: usize, scratch: &mut [u8]) -> ReadState {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadState::Eof,
                Ok(n) => {
                    self.received += n;
                    if self.buf.len() + n > cap {
                        self.buf = BytesMut::new();
                        return ReadState::TooLarge;
                    }
                    self.buf.extend_from_slice(&scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadState::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadState::Failed(e),
            }
        }
    }

    /// The next message known to be complete because another header from the same sender
    /// follows it (several messages on one kept-open connection).
    pub fn next_complete(&mut self) -> Option<Bytes> {
        match wire::next_message_start(&self.buf, self.scanned) {
            Some(at) => {
                self.scanned = 0;
                Some(self.buf.split_to(at).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// The buffered bytes, if they already parse as one whole message (the sender went
    /// quiet without closing). A header still incomplete stays buffered.
    pub fn take_if_whole(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() && wire::parse(&self.buf).is_ok() {
            Some(self.take_rest())
        } else {
            None
        }
    }

    /// Whatever remains once the stream has ended.
    pub fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
