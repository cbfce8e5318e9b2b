//! The simulated peers' sending side: one TCP connection per message, in the legacy way.
//!
//! Each message: connect, write it all, shut down the writing side, read until the receiver
//! closes (it closes once it has read the message). Every step has a deadline (the socket's
//! send and receive timeouts), so nothing waits forever. `concurrency` threads send at once;
//! each owns a fixed share of the peers (see [`Spread::schedule`]), so one peer's messages
//! go one at a time, in order.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::workload::{self, Spread};

/// Why one send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    ConnectRefused,
    ConnectTimeout,
    /// No local port was free (EADDRNOTAVAIL): the ephemeral range is exhausted.
    NoLocalPort,
    Connect,
    WriteTimeout,
    Write,
    /// The receiver did not close within the timeout.
    CloseTimeout,
    /// The receiver reset the connection instead of closing it.
    Reset,
    Read,
    /// A stream: no Welcome (refused, closed, or not within the timeout).
    NoWelcome,
    /// A stream: the connection ended (or failed) before this message was acknowledged.
    StreamBroken,
    /// A stream: no acknowledgement within the timeout.
    AckTimeout,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::ConnectRefused => "connect_refused",
            Failure::ConnectTimeout => "connect_timeout",
            Failure::NoLocalPort => "no_local_port",
            Failure::Connect => "connect_other",
            Failure::WriteTimeout => "write_timeout",
            Failure::Write => "write_other",
            Failure::CloseTimeout => "close_timeout",
            Failure::Reset => "reset",
            Failure::Read => "read_other",
            Failure::NoWelcome => "no_welcome",
            Failure::StreamBroken => "stream_broken",
            Failure::AckTimeout => "ack_timeout",
        }
    }
}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

/// Connects to `to` with a deadline of `timeout` on every step (a blocking socket with
/// SO_SNDTIMEO and SO_RCVTIMEO: three system calls, no polling).
fn connect(to: SocketAddrV4, timeout: Duration) -> Result<TcpStream, Failure> {
    // SAFETY: plain socket calls on a descriptor we own; it is wrapped (and so closed) at
    // once, before any early return.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Failure::Connect);
        }
        let stream = TcpStream::from_raw_fd(fd);
        let tv = timeval(timeout);
        let tvp = (&raw const tv).cast::<libc::c_void>();
        let tvlen = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, tvp, tvlen);
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tvp, tvlen);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*to.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&raw const sin).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if r == 0 {
            return Ok(stream);
        }
        Err(match io::Error::last_os_error().raw_os_error() {
            Some(libc::ECONNREFUSED) => Failure::ConnectRefused,
            // A blocking connect cut short by SO_SNDTIMEO reports EINPROGRESS.
            Some(libc::EINPROGRESS | libc::EAGAIN | libc::ETIMEDOUT) => Failure::ConnectTimeout,
            Some(libc::EADDRNOTAVAIL) => Failure::NoLocalPort,
            _ => Failure::Connect,
        })
    }
}

/// Sends one message on its own connection and waits for the receiver to close it.
pub fn send_one(to: SocketAddrV4, payload: &[u8], timeout: Duration) -> Result<(), Failure> {
    let mut s = connect(to, timeout)?;
    if let Err(e) = s.write_all(payload) {
        return Err(match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::WriteTimeout,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Reset,
            _ => Failure::Write,
        });
    }
    if s.shutdown(Shutdown::Write).is_err() {
        return Err(Failure::Reset);
    }
    let mut sink = [0u8; 512];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {} // the receiver answered on the socket: ignored
            Err(e) => {
                return Err(match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::CloseTimeout,
                    io::ErrorKind::ConnectionReset => Failure::Reset,
                    _ => Failure::Read,
                });
            }
        }
    }
}

/// One finished send.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub peer: u32,
    pub seq: u32,
    pub start: Instant,
    pub end: Instant,
    pub result: Result<(), Failure>,
}

/// Everything the senders did.
#[derive(Debug, Default)]
pub struct Sent {
    pub records: Vec<Record>,
    pub first_start: Option<Instant>,
    pub last_end: Option<Instant>,
    /// Sender threads actually used.
    pub threads: usize,
}

impl Sent {
    /// Waits for the sender threads and gathers what they did.
    pub fn join(threads: usize, handles: Vec<std::thread::JoinHandle<Vec<Record>>>) -> Sent {
        let mut sent = Sent {
            threads,
            ..Sent::default()
        };
        for h in handles {
            sent.records.extend(h.join().expect("sender thread"));
        }
        sent.first_start = sent.records.iter().map(|r| r.start).min();
        sent.last_end = sent.records.iter().map(|r| r.end).max();
        sent
    }

    pub fn ok(&self) -> usize {
        self.records.iter().filter(|r| r.result.is_ok()).count()
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for r in &self.records {
            if let Err(f) = r.result {
                *m.entry(f.as_str()).or_insert(0) += 1;
            }
        }
        m
    }
}

/// The inbound workload's parameters.
#[derive(Debug, Clone)]
pub struct Plan {
    pub to: SocketAddrV4,
    pub base_port: u16,
    pub size: usize,
    pub concurrency: usize,
    pub timeout: Duration,
}

/// Runs the whole workload: `plan.concurrency` threads (at most one per peer), started
/// together, each sending its share in order. Returns when every send has finished.
pub fn run(plan: &Plan, spread: &Spread) -> Sent {
    let threads = plan.concurrency.clamp(1, spread.peers().max(1));
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let schedule = spread.schedule(t, threads);
            let barrier = barrier.clone();
            let plan = plan.clone();
            std::thread::Builder::new()
                .name(format!("sender-{t}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut records = Vec::with_capacity(schedule.len());
                    barrier.wait();
                    for &(peer, seq) in &schedule {
                        // The payload is built before the clock starts: only IO is timed.
                        let text = workload::text(peer, seq, plan.size);
                        let payload = workload::payload(plan.base_port + peer as u16, peer, &text);
                        let start = Instant::now();
                        let result = send_one(plan.to, &payload, plan.timeout);
                        records.push(Record {
                            peer,
                            seq,
                            start,
                            end: Instant::now(),
                            result,
                        });
                    }
                    records
                })
                .expect("start a sender thread")
        })
        .collect();
    Sent::join(threads, handles)
}
