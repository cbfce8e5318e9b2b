//! The simulated p2pchat peers' sending side on the fast path: each peer opens ONE
//! persistent stream to the receiver (PROTOCOL.md, "The stream connection"): the preface,
//! a Hello (its name `p{i}`, its port `base + i`, a new session, `fresh_from` 1), waits for
//! the Welcome, then writes its messages as Data frames numbered 1, 2, 3... in batches,
//! many in flight (at most `window` unacknowledged), and reads the cumulative Acks.
//!
//! No proof is needed to open a stream: a receiver takes a stream from anyone whose
//! connection opens with the preface (the proof protects legacy *receivers* from stream
//! bytes; it is the sender's duty, not the receiver's check).
//!
//! One mio loop per load CPU, each owning a share of the peers. A message's `start` is when
//! its batch was written, its `end` when an Ack covered it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use p2pchat::stream::frame::{self, Frame, Hello, MAX_PAYLOAD};

use crate::sender::{Failure, Record, Sent};
use crate::workload::{self, Spread};

/// The stream workload's parameters.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub to: SocketAddrV4,
    pub base_port: u16,
    pub size: usize,
    /// Messages encoded per write at most.
    pub batch: usize,
    /// Messages unacknowledged at most per stream.
    pub window: usize,
    /// No progress on a stream for this long: what it has not had acknowledged fails.
    pub timeout: Duration,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Connecting,
    Welcome,
    Open,
    Done,
}

struct Peer {
    index: u32,
    stream: TcpStream,
    phase: Phase,
    count: u32,
    /// Next workload number to encode (its frame number is this + 1).
    next: u32,
    /// Workload numbers below this are acknowledged.
    acked: u32,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    starts: Vec<Instant>,
    ends: Vec<Option<Instant>>,
    failure: Option<Failure>,
    progress: Instant,
}

impl Peer {
    fn hello(&mut self, base_port: u16, session: u64) {
        self.out.extend_from_slice(&frame::MAGIC);
        let name = workload::peer_name(self.index);
        frame::encode_hello(
            &mut self.out,
            &Hello {
                version: frame::VERSION,
                port: base_port + self.index as u16,
                session,
                fresh_from: 1,
                name: &name,
            },
        );
    }

    /// Reads what the receiver wrote; `Err` when the stream is over for us.
    fn read(&mut self, scratch: &mut [u8], now: Instant) -> Result<(), Failure> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => {
                    return Err(if self.phase == Phase::Open {
                        Failure::StreamBroken
                    } else {
                        Failure::NoWelcome
                    });
                }
                Ok(n) => self.inbuf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::StreamBroken),
            }
        }
        let mut at = 0;
        let result = loop {
            match frame::decode(&self.inbuf[at..], MAX_PAYLOAD) {
                Ok((f, len)) => {
                    at += len;
                    match f {
                        Frame::Welcome { through, .. } if self.phase == Phase::Welcome => {
                            if through != 0 {
                                break Err(Failure::NoWelcome);
                            }
                            self.phase = Phase::Open;
                            self.progress = now;
                        }
                        Frame::Ack { through } if self.phase == Phase::Open => {
                            let through = through.min(u64::from(self.next)) as u32;
                            for e in &mut self.ends[self.acked as usize..through as usize] {
                                *e = Some(now);
                            }
                            if through > self.acked {
                                self.acked = through;
                                self.progress = now;
                            }
                        }
                        Frame::Refuse(_) => break Err(Failure::NoWelcome),
                        _ => break Err(Failure::StreamBroken),
                    }
                }
                Err(frame::FrameError::Incomplete) => break Ok(()),
                Err(_) => break Err(Failure::StreamBroken),
            }
        };
        self.inbuf.drain(..at);
        result
    }

    /// Encodes and writes what the window allows, until the socket is full.
    fn write(&mut self, plan: &StreamPlan, now: Instant) -> Result<(), Failure> {
        loop {
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
                if self.phase != Phase::Open {
                    return Ok(());
                }
                let room = (self.acked as usize + plan.window).saturating_sub(self.next as usize);
                let n = room.min(plan.batch).min((self.count - self.next) as usize);
                if n == 0 {
                    return Ok(());
                }
                for _ in 0..n {
                    encode_message(&mut self.out, self.index, self.next, plan.size);
                    self.starts.push(now);
                    self.next += 1;
                }
            }
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(Failure::StreamBroken),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::StreamBroken),
            }
        }
    }

    fn step(&mut self, plan: &StreamPlan, scratch: &mut [u8], now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::Connecting {
            match self.stream.peer_addr() {
                Ok(_) => self.phase = Phase::Welcome,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.fail(Failure::ConnectRefused),
            }
        }
        let r = self.read(scratch, now).and_then(|()| self.write(plan, now));
        if let Err(f) = r {
            return self.fail(f);
        }
        if self.acked == self.count {
            // Everything acknowledged: our FIN ends the stream.
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            self.phase = Phase::Done;
        }
    }

    fn fail(&mut self, f: Failure) {
        self.failure = Some(f);
        self.phase = Phase::Done;
    }

    fn records(self) -> Vec<Record> {
        let failure = self.failure.unwrap_or(Failure::AckTimeout);
        let never = self.progress;
        (0..self.count)
            .map(|seq| {
                let i = seq as usize;
                let start = self.starts.get(i).copied().unwrap_or(never);
                let end = self.ends.get(i).copied().flatten();
                Record {
                    peer: self.index,
                    seq,
                    start,
                    end: end.unwrap_or(start),
                    result: end.map(|_| ()).ok_or(failure),
                }
            })
            .collect()
    }
}

/// Appends the Data frame of workload message `seq` of `peer` (frame number `seq + 1`),
/// its text as [`workload::text`] makes it, without an allocation.
pub fn encode_message(out: &mut Vec<u8>, peer: u32, seq: u32, size: usize) {
    use std::io::Write as _;
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, frame::Kind::Data as u8]);
    out.extend_from_slice(&(u64::from(seq) + 1).to_be_bytes());
    let text_at = out.len();
    let _ = write!(out, "p{peer}:{seq}:");
    let len = out.len() - text_at;
    if len < size {
        out.resize(text_at + size, b'x');
    }
    let body = (out.len() - at - frame::HEADER_LEN) as u32;
    out[at..at + 4].copy_from_slice(&body.to_be_bytes());
}

/// Runs the workload: `threads` loops, each with every `threads`-th peer, started together.
pub fn run(plan: &StreamPlan, spread: &Spread, threads: usize) -> Sent {
    let threads = threads.clamp(1, spread.peers().max(1));
    let barrier = Arc::new(Barrier::new(threads));
    let session_base = session_seed();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<u32> = (t..spread.peers())
                .step_by(threads)
                .map(|p| p as u32)
                .collect();
            let counts: Vec<u32> = mine.iter().map(|&p| spread.count(p)).collect();
            let barrier = barrier.clone();
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("stream-sender-{t}"))
                .spawn(move || {
                    barrier.wait();
                    run_loop(&plan, &mine, &counts, session_base)
                })
                .expect("start a stream sender thread")
        })
        .collect();
    Sent::join(threads, handles)
}

fn session_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

fn run_loop(plan: &StreamPlan, mine: &[u32], counts: &[u32], session_base: u64) -> Vec<Record> {
    let mut poll = Poll::new().expect("a poll for the stream senders");
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut peers: Vec<Peer> = Vec::with_capacity(mine.len());
    for (k, (&index, &count)) in mine.iter().zip(counts).enumerate() {
        let stream = TcpStream::connect(SocketAddr::V4(plan.to));
        let mut peer = match stream {
            Ok(s) => Peer {
                index,
                stream: s,
                phase: Phase::Connecting,
                count,
                next: 0,
                acked: 0,
                out: Vec::with_capacity(plan.batch * (frame::DATA_OVERHEAD + plan.size + 16)),
                written: 0,
                inbuf: Vec::new(),
                starts: Vec::with_capacity(count as usize),
                ends: vec![None; count as usize],
                failure: None,
                progress: start,
            },
            Err(_) => {
                // Cannot even make the socket: every message of this peer fails.
                return mine
                    .iter()
                    .zip(counts)
                    .flat_map(|(&p, &c)| {
                        (0..c).map(move |seq| Record {
                            peer: p,
                            seq,
                            start,
                            end: start,
                            result: Err(Failure::Connect),
                        })
                    })
                    .collect();
            }
        };
        let _ = peer.stream.set_nodelay(true);
        let session = session_base.wrapping_add((index as u64) << 1).max(1);
        peer.hello(plan.base_port, session);
        if poll
            .registry()
            .register(
                &mut peer.stream,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            peer.fail(Failure::Connect);
        }
        peers.push(peer);
    }
    let mut open = peers.iter().filter(|p| p.phase != Phase::Done).count();
    while open > 0 {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        let now = Instant::now();
        for ev in events.iter() {
            let k = ev.token().0;
            if let Some(p) = peers.get_mut(k) {
                let was_done = p.phase == Phase::Done;
                p.step(plan, &mut scratch, now);
                if !was_done && p.phase == Phase::Done {
                    open -= 1;
                }
            }
        }
        // Stalled streams fail after the timeout without progress.
        for p in peers.iter_mut() {
            if p.phase != Phase::Done && now.duration_since(p.progress) > plan.timeout {
                p.fail(match p.phase {
                    Phase::Open => Failure::AckTimeout,
                    _ => Failure::NoWelcome,
                });
                open -= 1;
            }
        }
    }
    peers.into_iter().flat_map(Peer::records).collect()
}
