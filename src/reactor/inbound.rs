//! One inbound connection: read to end of stream under a size cap, split unframed messages.
//!
//! A connection normally carries one message. Some implementations keep theirs open and
//! write several, each on its own; a new message is recognised only where new bytes
//! arrive and repeat the first message's `ADDR NAME ` header ([`wire::new_message_at`]),
//! never inside one arrival, so a text quoting its sender's header is not cut. Bytes that
//! arrive after a message was shown and carry no header continue that sender's text: they
//! are shown as a further message from it (always as text), not dropped.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use crate::wire;

/// Arrivals remembered at most while undecided (a header trickling in); more are merged.
const MAX_ARRIVALS: usize = 8;

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
    /// The socket's peer address: its IP is the evidence of who sent the bytes (its scope
    /// id, for an IPv6 link-local peer, the interface to answer through).
    pub source: SocketAddr,
    buf: BytesMut,
    /// Offsets in `buf` where bytes arrived after a quiet moment (a new read pass), not yet
    /// known to start a new message or not.
    arrivals: Vec<usize>,
    /// The `ADDR NAME ` prefix of the connection's first message, once it has arrived.
    header: Option<Bytes>,
    /// When bytes last arrived (or the accept): the stalest connection is evicted first.
    pub last_arrival: Instant,
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

/// One message's bytes taken from a connection.
#[derive(Debug)]
pub struct Piece {
    pub bytes: Bytes,
    /// Set when the bytes continue a paused text: the connection's header to read them
    /// under ([`wire::parse_continuation`]).
    pub continues: Option<Bytes>,
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
    pub fn new(
        stream: TcpStream,
        source: SocketAddr,
        data: &[u8],
        now: Instant,
        read_deadline: Instant,
    ) -> Self {
        let mut conn = Inbound {
            stream,
            source,
            buf: BytesMut::from(data),
            arrivals: Vec::new(),
            header: None,
            last_arrival: now,
            received: data.len(),
            delivered: 0,
            read_deadline,
            flush_at: None,
        };
        conn.learn_header();
        conn
    }

    /// Remembers the first message's header once it has arrived whole.
    fn learn_header(&mut self) {
        if self.header.is_none() {
            self.header = wire::header_prefix(&self.buf).map(Bytes::copy_from_slice);
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
    /// The cap holds for what arrives in one pass (one message at most); a message that
    /// grows past it across passes is caught by [`Inbound::over`] once split.
    pub fn read(&mut self, cap: usize, scratch: &mut [u8]) -> ReadState {
        let start = self.buf.len();
        if start > 0 && self.arrivals.len() < MAX_ARRIVALS {
            self.arrivals.push(start);
        }
        let state = loop {
            match self.stream.read(scratch) {
                Ok(0) => break ReadState::Eof,
                Ok(n) => {
                    self.received += n;
                    if self.buf.len() - start + n > cap {
                        self.buf = BytesMut::new();
                        break ReadState::TooLarge;
                    }
                    self.buf.extend_from_slice(&scratch[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadState::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break ReadState::Failed(e),
            }
        };
        self.learn_header();
        state
    }

    /// Every message known to be complete because new bytes began another one.
    pub fn complete(&mut self) -> Vec<Piece> {
        std::iter::from_fn(|| self.next_complete()).collect()
    }

    /// The next message known to be complete because new bytes began another one.
    fn next_complete(&mut self) -> Option<Piece> {
        let header = self.header.clone()?;
        while let Some(&at) = self.arrivals.first() {
            match wire::new_message_at(&self.buf, at, &header) {
                Some(true) => return Some(self.split(at)),
                Some(false) => {
                    self.arrivals.remove(0);
                }
                None => return None, // the header is still arriving
            }
        }
        None
    }

    /// The buffered message, if it is already whole (the sender went quiet without
    /// closing). Bytes that may be the start of a further header stay buffered.
    pub fn take_if_whole(&mut self) -> Option<Piece> {
        let end = self.arrivals.first().copied().unwrap_or(self.buf.len());
        let raw = &self.buf[..end];
        let whole = match &self.header {
            _ if raw.is_empty() => false,
            Some(h) if raw.starts_with(h) => wire::parse(raw).is_ok(),
            // The next message's header, still arriving.
            Some(h) if h.starts_with(raw) => false,
            // The rest of a paused text: shown under the connection's header.
            Some(_) => true,
            None => wire::parse(raw).is_ok(),
        };
        whole.then(|| self.split(end))
    }

    /// Whatever remains once the stream has ended.
    pub fn take_rest(&mut self) -> Piece {
        let end = self.buf.len();
        self.split(end)
    }

    /// Takes `buf[..at]` as one message.
    fn split(&mut self, at: usize) -> Piece {
        let bytes = self.buf.split_to(at).freeze();
        self.arrivals.retain_mut(|a| {
            *a = a.saturating_sub(at);
            *a > 0
        });
        // Bytes complete by now (a new message followed, the stream ended, or the idle
        // flush found them whole) that lack the header: the rest of a paused text, even
        // when they happen to look like the start of a header (`127`).
        let continues = match &self.header {
            Some(h) if !bytes.is_empty() && !bytes.starts_with(h) => Some(h.clone()),
            _ => None,
        };
        Piece { bytes, continues }
    }

    /// The message being read has grown past `cap` (pieces that did not start a new
    /// message were added to it).
    pub fn over(&self, cap: usize) -> bool {
        self.buf.len() > cap
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
