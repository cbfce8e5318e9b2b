//! The simulated peers' listening side: each peer has its own port (`base + i`), so the
//! node can answer it. A peer is one of:
//!
//! * live: listens, accepts, reads each connection to its end, records the payload, closes
//!   (what the original program does); all live peers are served by one mio thread;
//! * dead: listens but never accepts, with its accept queue already full (filled by the
//!   tool itself), so a connection to it is never established;
//! * refusing: nothing listens on its port, so a connection is refused.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Live,
    Dead,
    Refusing,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Dead => "dead",
            Role::Refusing => "refusing",
        }
    }
}

/// One message a live peer received: when, and the exact bytes.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub at: Instant,
    pub payload: Vec<u8>,
}

/// What the live peers received, per peer index.
#[derive(Debug, Default)]
pub struct Received {
    pub per_peer: Vec<Vec<Delivery>>,
    /// Connections still open (not read to their end) when the peers were stopped.
    pub unfinished: usize,
    /// Connections that failed before their end (reset).
    pub broken: usize,
}

/// The running simulated peers.
pub struct Peers {
    waker: Arc<Waker>,
    thread: Option<JoinHandle<Received>>,
    delivered: Arc<AtomicUsize>,
    /// Dead peers' listeners and the connections that fill their accept queues.
    _dead: Vec<(StdListener, Vec<mio::net::TcpStream>)>,
}

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = 1 << 40;
/// How long a probe connection to a dead peer may take before its queue counts as full.
const PROBE_WAIT: Duration = Duration::from_millis(200);
/// Most probe rounds to fill a dead peer's accept queue.
const PROBE_ROUNDS: usize = 8;

impl Peers {
    /// Binds every peer's port and starts serving the live ones.
    pub fn start(base: u16, roles: &[Role]) -> Result<Peers, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER)
                .map_err(|e| format!("cannot create a waker: {e}"))?,
        );
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let port = base + i as u16;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let in_use = |e: io::Error| {
                format!(
                    "cannot listen on {addr} for simulated peer p{i}: {e} (choose another \
                     --base-port)"
                )
            };
            match role {
                Role::Live => {
                    let mut l = TcpListener::bind(addr).map_err(in_use)?;
                    poll.registry()
                        .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)
                        .map_err(|e| format!("cannot watch {addr}: {e}"))?;
                    live.push((i, l));
                }
                Role::Dead => {
                    let l = StdListener::bind(addr).map_err(in_use)?;
                    // The shortest accept queue (Linux holds backlog + 1 connections).
                    // SAFETY: listen on a socket we own.
                    unsafe { libc::listen(l.as_raw_fd(), 0) };
                    dead.push((l, Vec::new()));
                }
                Role::Refusing => {
                    // Nothing may listen there: check the port is free, and leave it so.
                    drop(StdListener::bind(addr).map_err(in_use)?);
                }
            }
        }
        fill_accept_queues(&mut dead)?;
        let delivered = Arc::new(AtomicUsize::new(0));
        let count = delivered.clone();
        let n = roles.len();
        let thread = std::thread::Builder::new()
            .name("peers".into())
            .spawn(move || serve(poll, live, n, count))
            .map_err(|e| format!("cannot start the peers' thread: {e}"))?;
        Ok(Peers {
            waker,
            thread: Some(thread),
            delivered,
            _dead: dead,
        })
    }

    /// Messages the live peers have received so far.
    pub fn delivered(&self) -> usize {
        self.delivered.load(Ordering::Acquire)
    }

    /// Stops serving and returns what every live peer received.
    pub fn stop(mut self) -> Received {
        let _ = self.waker.wake();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.waker.wake();
            let _ = t.join();
        }
    }
}

/// Connects to every dead peer until a connection is no longer established within
/// [`PROBE_WAIT`]: its accept queue is then full, and nothing more gets in.
fn fill_accept_queues(dead: &mut [(StdListener, Vec<TcpStream>)]) -> Result<(), String> {
    let mut filling: Vec<usize> = (0..dead.len()).collect();
    for _ in 0..PROBE_ROUNDS {
        if filling.is_empty() {
            return Ok(());
        }
        let mut poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        let mut probes = Vec::new();
        for &d in &filling {
            let addr = dead[d].0.local_addr().map_err(|e| e.to_string())?;
            let mut s = TcpStream::connect(addr)
                .map_err(|e| format!("cannot probe dead peer {addr}: {e}"))?;
            poll.registry()
                .register(&mut s, Token(d), Interest::WRITABLE)
                .map_err(|e| e.to_string())?;
            probes.push((d, s));
        }
        let end = Instant::now() + PROBE_WAIT;
        let mut events = Events::with_capacity(1024);
        while Instant::now() < end {
            let _ = poll.poll(
                &mut events,
                Some(end.saturating_duration_since(Instant::now())),
            );
        }
        let mut still = Vec::new();
        for (d, mut s) in probes {
            let connected = matches!(s.take_error(), Ok(None)) && s.peer_addr().is_ok();
            let _ = poll.registry().deregister(&mut s);
            if connected {
                dead[d].1.push(s);
                still.push(d);
            }
            // A probe still connecting is dropped: its SYN was not answered, the queue is
            // full.
        }
        filling = still;
    }
    if filling.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "could not fill the accept queue of {} dead peer(s) in {PROBE_ROUNDS} tries",
            filling.len()
        ))
    }
}

struct Conn {
    peer: usize,
    stream: TcpStream,
    buf: Vec<u8>,
}

fn serve(
    mut poll: Poll,
    mut listeners: Vec<(usize, TcpListener)>,
    peers: usize,
    delivered: Arc<AtomicUsize>,
) -> Received {
    let mut got = Received {
        per_peer: vec![Vec::new(); peers],
        ..Received::default()
    };
    let by_peer: std::collections::HashMap<usize, usize> = listeners
        .iter()
        .enumerate()
        .map(|(slot, (peer, _))| (*peer, slot))
        .collect();
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("simulated peers: poll failed: {e}");
            break;
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {
                    got.unfinished = conns.len();
                    return got;
                }
                Token(t) if t >= LISTENER_BASE => {
                    let peer = t - LISTENER_BASE;
                    let listener = &listeners[by_peer[&peer]].1;
                    loop {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let entry = conns.vacant_entry();
                                let key = entry.key();
                                if poll
                                    .registry()
                                    .register(&mut stream, Token(key), Interest::READABLE)
                                    .is_ok()
                                {
                                    entry.insert(Conn {
                                        peer,
                                        stream,
                                        buf: Vec::new(),
                                    });
                                    drain(
                                        &mut poll,
                                        &mut conns,
                                        key,
                                        &mut scratch,
                                        &mut got,
                                        &delivered,
                                    );
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                log::warn!("simulated peer p{peer}: accept failed: {e}");
                                break;
                            }
                        }
                    }
                }
                Token(key) => {
                    if conns.contains(key) {
                        drain(
                            &mut poll,
                            &mut conns,
                            key,
                            &mut scratch,
                            &mut got,
                            &delivered,
                        );
                    }
                }
            }
        }
    }
    listeners.clear();
    got.unfinished = conns.len();
    got
}

/// Reads a connection until it would block; at its end, records the message and closes.
fn drain(
    poll: &mut Poll,
    conns: &mut Slab<Conn>,
    key: usize,
    scratch: &mut [u8],
    got: &mut Received,
    delivered: &AtomicUsize,
) {
    let conn = &mut conns[key];
    let done = loop {
        match conn.stream.read(scratch) {
            Ok(0) => break Some(true),
            Ok(n) => conn.buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break Some(false),
        }
    };
    let Some(clean) = done else { return };
    let mut conn = conns.remove(key);
    let _ = poll.registry().deregister(&mut conn.stream);
    if clean && conn.buf.is_empty() {
        // An empty connection is a liveness probe (the node's fast-path probe): the
        // original ignores it, so do these legacy peers.
    } else if clean {
        got.per_peer[conn.peer].push(Delivery {
            at: Instant::now(),
            payload: conn.buf,
        });
        delivered.fetch_add(1, Ordering::Release);
    } else {
        got.broken += 1;
    }
}
