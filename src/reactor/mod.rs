//! The reactor: the only module that does IO.
//!
//! One `mio::Poll` multiplexes the listening socket, every inbound and outbound connection
//! (one [`Slab`]), stdin and the termination signals. Each turn of the loop:
//!
//! 1. carries out the peer table's effects (show, transmit, exit) and writes stdout once;
//! 2. sleeps until the next event or the earliest deadline (connection deadlines, the
//!    table's own timers, an accept back-off), never longer, never busy;
//! 3. reads the clock once, handles every event, then fires every due deadline whether or
//!    not events came.
//!
//! Tokens carry a generation beside the slab key, so an event for a closed connection can
//! never reach a new one that reused its key. Every connection tells the table its outcome
//! before its key is freed.

mod inbound;
mod outbound;
mod stdin;
mod stdout;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::console::{self, Command, Console, Reply};
use crate::event::{Event, SendFailure, SendOutcome};
use crate::identity::LocalAddrs;
use crate::log_sink;
use crate::os;
use crate::peer_table::{Effect, PeerStatus, PeerTable, TableConfig, Target, Transmit};
use crate::rate::RateLimiter;
use crate::rate_log::{RateLog, SourceLog, WARN_INTERVAL};
use crate::wire;

use inbound::{FirstRead, Inbound, Piece, ReadState};
use outbound::{Outbound, Sender};

const LISTENER: Token = Token(usize::MAX);
const STDIN: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const STDOUT: Token = Token(usize::MAX - 3);
/// stderr, registered only while log lines wait for it (see `log_sink::watch`).
const STDERR: Token = Token(usize::MAX - 4);

/// Accept queue depth asked of the kernel (capped by net.core.somaxconn).
const BACKLOG: i32 = 4096;
/// How long accepting pauses when the process runs out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A connection kept open after a whole message has been written is delivered once it has
/// been quiet this long (an implementation that sends several messages on one connection,
/// or waits for a reply). Longer than two TCP retransmissions at a short round trip
/// (200 ms + 400 ms), so a message split across segments by a lost packet is rarely cut.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// Why the node could not start or stopped early.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    PortInUse(SocketAddr),
    NotLocal(SocketAddr),
    ListenDenied(SocketAddr),
    Listen(SocketAddr, io::Error),
    Poll(io::Error),
    /// stdout failed (not merely closed): the node quit, the user could not be told things.
    Output(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::PortInUse(a) => write!(
                f,
                "port {} is in use (listening on {a}): choose another with --port (0 picks a \
                 free one)",
                a.port()
            ),
            RunError::NotLocal(a) => write!(
                f,
                "cannot listen on {a}: {} is not an address of this machine (see --bind)",
                a.ip()
            ),
            RunError::ListenDenied(a) => write!(
                f,
                "not allowed to listen on {a}: ports below 1024 need privileges; use --port"
            ),
            RunError::Listen(a, e) => write!(f, "cannot listen on {a}: {e}"),
            RunError::Poll(e) => write!(f, "the event loop failed: {e}"),
            RunError::Output(e) => write!(f, "cannot write to stdout ({e}): quit"),
        }
    }
}

impl std::error::Error for RunError {}

/// A connection in the slab.
#[derive(Debug)]
enum Conn {
    In(Inbound),
    Out(Outbound),
}

#[derive(Debug)]
struct Slot {
    conn: Conn,
    generation: u32,
    deadline: Instant,
}

fn conn_token(key: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | key)
}

fn split_token(token: Token) -> (usize, u32) {
    (token.0 & 0xffff_ffff, (token.0 >> 32) as u32)
}

/// A bound node, ready to [`Node::run`].
pub struct Node {
    cfg: Config,
    poll: Poll,
    listener: TcpListener,
    local: SocketAddr,
    conns: Slab<Slot>,
    /// Connection deadlines: `(when, slab key, generation)`.
    deadlines: BTreeSet<(Instant, usize, u32)>,
    next_generation: u32,
    table: PeerTable,
    console: Console,
    stdin: stdin::Stdin,
    stdout: stdout::Stdout,
    signals: Signals,
    inbound_open: usize,
    inbound_per_ip: HashMap<IpAddr, usize>,
    accept_paused_until: Option<Instant>,
    /// Per-source-IP message rate limiting.
    rate: RateLimiter,
    /// stdout is backlogged: the network is not read until it drains.
    paused: bool,
    /// Inbound connections that became readable while paused: `(key, generation)`.
    deferred: Vec<(usize, u32)>,
    /// The listener became readable while paused.
    accept_deferred: bool,
    rejected: RateLog,
    evicted: RateLog,
    fd_exhausted: RateLog,
    /// Warnings caused by what a source sent, rate-limited per source.
    remote_log: SourceLog,
    scratch: Box<[u8]>,
    exit: bool,
    /// A second signal: leave without waiting for a slow stdout reader.
    leave_now: bool,
    /// stdout failed with something other than a closed pipe (a full disk...).
    output_error: Option<io::Error>,
}

impl Node {
    /// Binds the listener and sets everything up; nothing is printed yet.
    pub fn bind(cfg: Config) -> Result<Node, RunError> {
        let fd_limit = os::raise_fd_limit();
        log::debug!("open files limit: {fd_limit}");
        let wildcard_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), cfg.listen.port());
        let listener = match os::listen(cfg.listen, BACKLOG) {
            // No IPv6 on this machine: the default listens on IPv4 only.
            Err(e) if cfg.listen == wildcard_v6 && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                log::info!("IPv6 is not available ({e}): listening on IPv4 only");
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.listen.port());
                os::listen(v4, BACKLOG)
            }
            other => other,
        }
        .map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => RunError::PortInUse(cfg.listen),
            io::ErrorKind::AddrNotAvailable => RunError::NotLocal(cfg.listen),
            io::ErrorKind::PermissionDenied => RunError::ListenDenied(cfg.listen),
            _ => RunError::Listen(cfg.listen, e),
        })
        .map(TcpListener::from_std)?;
        let local = listener
            .local_addr()
            .map_err(|e| RunError::Listen(cfg.listen, e))?;
        let poll = Poll::new().map_err(RunError::Poll)?;
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(RunError::Poll)?;
        let mut stdin = stdin::Stdin::open();
        if let Some(fd) = stdin.pollable_fd()
            && let Err(e) = poll
                .registry()
                .register(&mut SourceFd(&fd), STDIN, Interest::READABLE)
        {
            log::debug!("stdin cannot be polled ({e}); reading it eagerly");
            stdin.make_eager();
        }
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(RunError::Poll)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(RunError::Poll)?;
        let interactive = stdin.kind == os::InputKind::Terminal;
        let mut stdout = stdout::Stdout::new(cfg.json, interactive);
        if let Some(fd) = stdout.pollable_fd()
            && let Err(e) = poll
                .registry()
                .register(&mut SourceFd(&fd), STDOUT, Interest::WRITABLE)
        {
            log::debug!("stdout cannot be polled ({e})");
            stdout = stdout::Stdout::new(cfg.json, interactive);
        }
        let table = PeerTable::new(TableConfig {
            name: cfg.name.clone(),
            port: local.port(),
            advertise: cfg.advertise,
            timeout: cfg.timeout,
            local: LocalAddrs::new(os::local_addrs()),
            max_peers: cfg.max_peers,
        });
        Ok(Node {
            stdout,
            rate: RateLimiter::new(cfg.rate, cfg.burst, WARN_INTERVAL),
            paused: false,
            deferred: Vec::new(),
            accept_deferred: false,
            cfg,
            poll,
            listener,
            local,
            conns: Slab::new(),
            deadlines: BTreeSet::new(),
            next_generation: 0,
            table,
            console: Console::new(),
            stdin,
            signals,
            inbound_open: 0,
            inbound_per_ip: HashMap::new(),
            accept_paused_until: None,
            rejected: RateLog::new("inbound connections closed at once (--max-inbound-per-ip)"),
            evicted: RateLog::new(
                "inbound connections quiet longest closed to admit new ones (--max-inbound)",
            ),
            fd_exhausted: RateLog::new("accepts paused: out of file descriptors"),
            remote_log: SourceLog::new(bucket_text),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            exit: false,
            leave_now: false,
            output_error: None,
        })
    }

    /// The address the node listens on (with the real port when `--port 0` was given).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs until the user quits (or a signal, or end of input, or stdout closing).
    pub fn run(mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        self.begin(now);
        loop {
            self.drain_effects(Instant::now());
            if self.exit {
                break;
            }
            self.flush_stdout(Instant::now());
            if self.exit {
                break;
            }
            log_sink::watch(self.poll.registry(), STDERR);
            let now = Instant::now();
            let timeout = self
                .next_wake(now)
                .map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(RunError::Poll(e));
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    STDIN => self.read_stdin(now),
                    SIGNALS => self.signal(now),
                    STDOUT => self.flush_stdout(now),
                    STDERR => {} // log lines: written at the top of every turn
                    token => self.connection_ready(now, token),
                }
            }
            if self.stdin.wants_turn() {
                self.read_stdin(now);
            }
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            self.fire_deadlines(now);
            if self.table.poll_timeout().is_some_and(|t| t <= now) {
                self.table.handle_timeout(now);
            }
            self.rejected.report(now);
            self.evicted.report(now);
            self.fd_exhausted.report(now);
            self.remote_log.report(now);
            for d in self.rate.take_report(now) {
                log::warn!(
                    "{}: {} messages over the rate limit (--rate {}/s, --burst {}) dropped",
                    bucket_text(d.ip),
                    d.count,
                    self.cfg.rate,
                    self.cfg.burst
                );
            }
        }
        self.finish(Instant::now());
        match self.output_error.take() {
            Some(e) => Err(RunError::Output(e)),
            None => Ok(()),
        }
    }

    fn begin(&mut self, now: Instant) {
        log::info!("listening on {} as {:?}", self.local, self.cfg.name);
        self.stdout.event(&Event::Listening {
            addr: self.local,
            name: self.cfg.name.clone(),
        });
        self.stdout.banner(console::MENU);
        self.stdout.set_prompt(Some(self.console.current_prompt()));
        for peer in self.cfg.peers.clone() {
            let greeting = self.cfg.greeting.clone();
            self.table.send(now, Target::Addr(peer), &greeting);
        }
    }

    /// The earliest instant the loop must wake at, or `None` to sleep until an event.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        if self.stdin.wants_turn() {
            return Some(now);
        }
        [
            self.deadlines.first().map(|d| d.0),
            self.table.poll_timeout(),
            self.accept_paused_until,
            self.rate.next_report(now),
            self.rejected.due(),
            self.evicted.due(),
            self.fd_exhausted.due(),
            self.remote_log.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- the peer table's effects -------------------------------------------------------

    fn drain_effects(&mut self, now: Instant) {
        while let Some(effect) = self.table.poll_effect() {
            match effect {
                Effect::Show(event) => self.stdout.event(&event),
                Effect::Transmit(t) => self.transmit(now, t),
                Effect::Exit => self.exit = true,
            }
        }
    }

    fn transmit(&mut self, now: Instant, t: Transmit) {
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
        let (key, token) = self.vacant_token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            let outcome = SendOutcome::Failed(SendFailure::Io(e.to_string()));
            self.table.handle_send_done(now, t.id, outcome);
            return;
        }
        let conn = Conn::Out(Outbound::new(stream, t.id, t.to, t.text));
        self.insert(key, token, conn, t.deadline);
    }

    // ----- connections ------------------------------------------------------------------

    fn vacant_token(&mut self) -> (usize, Token) {
        let key = self.conns.vacant_key();
        self.next_generation = self.next_generation.wrapping_add(1) & 0x7fff_ffff;
        (key, conn_token(key, self.next_generation))
    }

    fn insert(&mut self, key: usize, token: Token, conn: Conn, deadline: Instant) {
        let (_, generation) = split_token(token);
        let got = self.conns.insert(Slot {
            conn,
            generation,
            deadline,
        });
        debug_assert_eq!(got, key);
        self.deadlines.insert((deadline, key, generation));
    }

    /// Frees a connection's slot. The caller has already told the table its outcome.
    fn close(&mut self, key: usize) {
        let slot = self.conns.remove(key);
        self.deadlines
            .remove(&(slot.deadline, key, slot.generation));
        let stream = match slot.conn {
            Conn::In(i) => {
                self.inbound_open -= 1;
                let bucket = limit_bucket(i.source);
                if let Some(n) = self.inbound_per_ip.get_mut(&bucket) {
                    *n -= 1;
                    if *n == 0 {
                        self.inbound_per_ip.remove(&bucket);
                    }
                }
                i.stream
            }
            Conn::Out(o) => o.stream,
        };
        // No `deregister`: the descriptor is never duplicated, so closing it takes it out of
        // the epoll set (one system call per message saved). An event for it still in this
        // turn's batch carries the old generation and is ignored.
        drop(stream);
    }

    fn accept(&mut self, now: Instant) {
        if self.paused {
            self.accept_deferred = true;
            return;
        }
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, addr)) => {
                    // On the dual-stack listener IPv4 peers come as ::ffff:a.b.c.d: one
                    // host, one form, for the limits, the logs and the peer table.
                    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                    self.admit(now, stream, addr)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if os::is_fd_exhaustion(&e) => {
                    self.fd_exhausted.hit(now, || {
                        format!("out of file descriptors ({e}): accepts paused for 100 ms")
                    });
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Whether the per-source limits apply to `ip`: this machine's own processes are limited
    /// only by the overall cap, unless `--limit-local`.
    fn limited(&self, ip: IpAddr) -> bool {
        self.cfg.limit_local || !self.table.config().local.is_local(ip)
    }

    fn admit(&mut self, now: Instant, mut stream: TcpStream, addr: SocketAddr) {
        let ip = addr.ip();
        let bucket = limit_bucket(ip);
        let per_ip = self.limited(ip);
        let from_ip = self.inbound_per_ip.get(&bucket).copied().unwrap_or(0);
        if per_ip && from_ip >= self.cfg.max_inbound_per_ip {
            // One source holding its share of slots only shuts itself out.
            let max_ip = self.cfg.max_inbound_per_ip;
            self.rejected.hit(now, || {
                format!(
                    "{}: {from_ip} inbound connections open (--max-inbound-per-ip \
                     {max_ip}): new ones from it closed at once",
                    bucket_text(bucket)
                )
            });
            return; // dropping the stream closes it
        }
        // One message per connection is the rule: a connection costs one token.
        if per_ip && !self.rate.allow(bucket, now) {
            return; // counted by the limiter, reported once per interval
        }
        // The sender usually wrote and closed before we accepted: read it all now, with no
        // registration, slot or copy. Otherwise watch the connection for the rest.
        let cap = self.cfg.max_message;
        let mut scratch = std::mem::take(&mut self.scratch);
        match inbound::first_read(&mut stream, &mut scratch, cap) {
            // One connection, one arrival: one message (a text quoting its own header
            // is not split).
            FirstRead::Whole(n) => self.deliver(now, ip, &scratch[..n], None, 0),
            FirstRead::TooLarge => log_too_large(&mut self.remote_log, now, ip, cap),
            FirstRead::Failed(e, n) => log_failed(&mut self.remote_log, now, ip, &e, n),
            FirstRead::Partial(n) => self.watch_inbound(now, stream, addr, &scratch[..n]),
        }
        self.scratch = scratch;
    }

    fn watch_inbound(
        &mut self,
        now: Instant,
        mut stream: TcpStream,
        addr: SocketAddr,
        data: &[u8],
    ) {
        let ip = addr.ip();
        if self.inbound_open >= self.cfg.max_inbound {
            // Full: the connection that has been quiet longest makes room, so idle or
            // stalled connections cannot lock everyone else out.
            self.evict_stalest_inbound(now);
        }
        let (key, token) = self.vacant_token();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log::warn!("cannot watch the connection from {addr}: {e}");
            return;
        }
        self.inbound_open += 1;
        *self.inbound_per_ip.entry(limit_bucket(ip)).or_insert(0) += 1;
        let deadline = now + self.cfg.read_timeout;
        let mut conn = Inbound::new(stream, ip, data, now, deadline);
        if !data.is_empty() {
            conn.flush_at = Some(now + IDLE_FLUSH);
        }
        let deadline = conn.next_deadline();
        self.insert(key, token, Conn::In(conn), deadline);
    }

    fn connection_ready(&mut self, now: Instant, token: Token) {
        let (key, generation) = split_token(token);
        match self.conns.get(key) {
            Some(slot) if slot.generation == generation => {}
            _ => return, // a connection closed earlier in this batch
        }
        match self.conns[key].conn {
            Conn::In(_) if self.paused => self.deferred.push((key, generation)),
            Conn::In(_) => self.read_inbound(now, key),
            Conn::Out(_) => self.drive_outbound(now, key),
        }
    }

    fn read_inbound(&mut self, now: Instant, key: usize) {
        let cap = self.cfg.max_message;
        let Conn::In(conn) = &mut self.conns[key].conn else {
            return;
        };
        let before = conn.received;
        let state = conn.read(cap, &mut self.scratch);
        let source = conn.source;
        let mut messages = conn.complete();
        if !messages.is_empty() {
            // A message is done: the next one gets its own read deadline.
            conn.read_deadline = now + self.cfg.read_timeout;
        }
        // What is left is one message being read: its size is capped too.
        let state = if conn.over(cap) {
            ReadState::TooLarge
        } else {
            state
        };
        if conn.received > before {
            conn.last_arrival = now;
            conn.flush_at = (conn.buffered() > 0).then_some(now + IDLE_FLUSH);
        }
        let ended = match state {
            ReadState::Open => false,
            ReadState::Eof => {
                messages.push(conn.take_rest());
                true
            }
            ReadState::TooLarge => {
                log_too_large(&mut self.remote_log, now, source, cap);
                true
            }
            ReadState::Failed(e) => {
                log_failed(&mut self.remote_log, now, source, &e, conn.buffered());
                true
            }
        };
        self.deliver_all(now, key, source, messages);
        if ended {
            self.close(key);
        } else {
            self.reschedule(key);
        }
    }

    /// Moves the connection's entry in the deadline set to its connection's next deadline.
    fn reschedule(&mut self, key: usize) {
        let slot = &mut self.conns[key];
        let Conn::In(conn) = &slot.conn else {
            return;
        };
        let at = conn.next_deadline();
        if at != slot.deadline {
            self.deadlines
                .remove(&(slot.deadline, key, slot.generation));
            slot.deadline = at;
            self.deadlines.insert((at, key, slot.generation));
        }
    }

    /// Ends an unfinished inbound connection early (its deadline, or evicted): what it has
    /// sent that parses is still shown.
    fn end_inbound(&mut self, now: Instant, key: usize) {
        let Conn::In(conn) = &mut self.conns[key].conn else {
            return;
        };
        let source = conn.source;
        let cap = self.cfg.max_message;
        let _ = conn.read(cap, &mut self.scratch);
        let mut messages = conn.complete();
        if conn.over(cap) {
            log_too_large(&mut self.remote_log, now, source, cap);
        } else {
            messages.push(conn.take_rest());
        }
        self.deliver_all(now, key, source, messages);
        self.close(key);
    }

    /// Closes the inbound connection that has been quiet longest.
    fn evict_stalest_inbound(&mut self, now: Instant) {
        let stalest = self
            .conns
            .iter()
            .filter_map(|(key, slot)| match &slot.conn {
                Conn::In(conn) => Some((conn.last_arrival, key)),
                Conn::Out(_) => None,
            })
            .min();
        let Some((_, key)) = stalest else {
            return;
        };
        if let Conn::In(conn) = &self.conns[key].conn {
            let (source, bytes, max) = (conn.source, conn.buffered(), self.cfg.max_inbound);
            let quiet = now.saturating_duration_since(conn.last_arrival);
            log::debug!("{source}: connection quiet for {quiet:?} evicted for a new one");
            self.evicted.hit(now, || {
                format!(
                    "{max} inbound connections open (--max-inbound): the one quiet longest \
                     ({source}, {:.1} s, {bytes} bytes) closed to admit a new one",
                    quiet.as_secs_f64()
                )
            });
        }
        self.end_inbound(now, key);
    }

    /// Delivers messages read from the connection at `key`; every message after the
    /// connection's first costs a rate-limit token.
    fn deliver_all(&mut self, now: Instant, key: usize, source: IpAddr, messages: Vec<Piece>) {
        for m in messages {
            if m.bytes.is_empty() {
                continue;
            }
            let Conn::In(conn) = &mut self.conns[key].conn else {
                return;
            };
            let index = conn.delivered;
            conn.delivered += 1;
            self.deliver(now, source, &m.bytes, m.continues.as_deref(), index);
        }
    }

    /// Pauses reading the network while stdout is backlogged; resumes once it drains.
    fn update_pause(&mut self, now: Instant) {
        if !self.paused && self.stdout.backlogged() {
            log::info!("output is not keeping up: pausing network reads");
            self.paused = true;
        } else if self.paused && self.stdout.drained() {
            log::info!("output drained: resuming network reads");
            self.paused = false;
            for (key, generation) in std::mem::take(&mut self.deferred) {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.read_inbound(now, key);
                }
            }
            if std::mem::take(&mut self.accept_deferred) {
                self.accept(now);
            }
        }
    }

    /// Parses and hands one message to the table. `index` is its place in its connection:
    /// the first was paid for at accept, each later one costs a rate-limit token.
    /// `continues` is the connection's header when `payload` is the rest of a paused text.
    fn deliver(
        &mut self,
        now: Instant,
        source: IpAddr,
        payload: &[u8],
        continues: Option<&[u8]>,
        index: usize,
    ) {
        if index > 0 && self.limited(source) && !self.rate.allow(limit_bucket(source), now) {
            return; // counted by the limiter, reported once per interval
        }
        let parsed = match continues {
            Some(header) => wire::parse_continuation(header, payload),
            None => wire::parse(payload),
        };
        match parsed {
            Ok(msg) => self.table.handle_message(now, source, msg),
            Err(wire::WireError::Empty) => log::debug!("{source}: empty connection (probe)"),
            Err(e) => self
                .remote_log
                .hit(now, limit_bucket(source), MALFORMED, || {
                    format!("{source}: dropped {} bytes: {e}", payload.len())
                }),
        }
    }

    fn drive_outbound(&mut self, now: Instant, key: usize) {
        let me = Sender {
            name: &self.cfg.name,
            port: self.local.port(),
            advertise: self.cfg.advertise,
        };
        let Conn::Out(conn) = &mut self.conns[key].conn else {
            return;
        };
        if let Some(outcome) = conn.drive(&me, &mut self.scratch) {
            let id = conn.id;
            self.close(key);
            self.table.handle_send_done(now, id, outcome);
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(&(at, key, generation)) = self.deadlines.first() {
            if at > now {
                return;
            }
            self.deadlines.pop_first();
            match self.conns.get(key) {
                Some(slot) if slot.generation == generation => {}
                _ => continue,
            }
            match &mut self.conns[key].conn {
                Conn::In(conn) if now < conn.read_deadline => {
                    // Quiet since its last bytes (every read already split off what it
                    // completed): deliver what is already a whole message.
                    conn.flush_at = None;
                    if self.paused {
                        // Output is backed up: no new messages until it drains.
                        conn.flush_at = Some(now + IDLE_FLUSH);
                    } else if let Some(m) = conn.take_if_whole() {
                        let source = conn.source;
                        conn.read_deadline = now + self.cfg.read_timeout;
                        self.deliver_all(now, key, source, vec![m]);
                    }
                    // Its popped entry is put back under its next deadline.
                    self.reschedule(key);
                }
                Conn::In(conn) => {
                    log::info!(
                        "{}: connection still open after {:?} (--read-timeout): closing; {} \
                         bytes pending",
                        conn.source,
                        self.cfg.read_timeout,
                        conn.buffered()
                    );
                    self.end_inbound(now, key);
                }
                Conn::Out(conn) => {
                    let (id, outcome) = (conn.id, conn.timed_out());
                    self.close(key);
                    self.table.handle_send_done(now, id, outcome);
                }
            }
        }
    }

    // ----- stdin, stdout, signals -----------------------------------------------------------

    fn read_stdin(&mut self, now: Instant) {
        let input = self.stdin.read();
        for _ in 0..input.too_long {
            self.stdout
                .say("line longer than 64 KiB: ignored (messages are at most 1 KiB)");
        }
        for line in input.lines {
            self.stdout.answered();
            let candidates = self
                .table
                .peers()
                .filter(|(_, p)| p.status == PeerStatus::YetToConnect)
                .count();
            for reply in self.console.feed(&line, candidates) {
                match reply {
                    Reply::Run(cmd) => self.run_command(now, cmd),
                    Reply::Say(text) => self.stdout.say(&text),
                    Reply::Prompt(_) => {}
                }
            }
            // What the command shows (a peer list) comes before the next question.
            self.drain_effects(now);
            if !self.table.is_quitting() {
                self.stdout.set_prompt(Some(self.console.current_prompt()));
            }
        }
        if input.eof {
            if let Some(fd) = self.stdin.pollable_fd() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
            self.stdout.set_prompt(None);
            if !self.table.is_quitting() {
                log::info!("end of input: quitting");
                self.table.quit(now);
            }
        }
    }

    fn run_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Send { target, text } => self.table.send(now, target, &text),
            Command::Peers => self.table.list(),
            Command::ConnectCandidates => self.table.list_candidates(),
            Command::Connect(which) => self.table.connect(now, which),
            Command::Quit => {
                self.stdout.set_prompt(None);
                self.table.quit(now);
            }
        }
    }

    fn signal(&mut self, now: Instant) {
        for sig in self.signals.pending() {
            if self.table.is_quitting() {
                log::warn!("signal {sig} while quitting: leaving now");
                self.exit = true;
                self.leave_now = true;
            } else {
                log::info!("signal {sig}: quitting (sending exit to every peer)");
                self.stdout.set_prompt(None);
                self.table.quit(now);
            }
        }
    }

    fn flush_stdout(&mut self, now: Instant) {
        if let Err(e) = self.stdout.flush() {
            if e.kind() == io::ErrorKind::BrokenPipe {
                log::info!("stdout closed ({e}): quitting");
            } else {
                log::error!("cannot write to stdout ({e}): quitting");
                self.output_error = Some(e);
            }
            if !self.table.is_quitting() {
                self.table.quit(now);
                self.drain_effects(now);
            }
        }
        self.update_pause(now);
    }

    /// Leaves: every send still open is reported as cut short by the quit.
    fn finish(&mut self, now: Instant) {
        self.table.abandon();
        let open: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in open {
            let id = match &self.conns[key].conn {
                Conn::Out(o) => Some(o.id),
                Conn::In(_) => None,
            };
            self.close(key);
            if let Some(id) = id {
                self.table
                    .handle_send_done(now, id, SendOutcome::Failed(SendFailure::Quit));
            }
        }
        while let Some(effect) = self.table.poll_effect() {
            if let Effect::Show(event) = effect {
                self.stdout.event(&event);
            }
        }
        self.stdout.set_prompt(None);
        // A slow reader gets a bounded wait for the rest; a second signal means "now".
        let drain_limit = if self.leave_now {
            Duration::ZERO
        } else {
            stdout::EXIT_DRAIN
        };
        let signals = &mut self.signals;
        match self
            .stdout
            .flush_before_exit(drain_limit, || signals.pending().next().is_some())
        {
            Ok(0) => {}
            Ok(unwritten) => log::error!(
                "stdout is not taking output: {unwritten} bytes of events were not shown \
                 (waited at most {:.1}s at exit)",
                drain_limit.as_secs_f64()
            ),
            Err(e) => {
                log::error!("cannot write to stdout ({e}) at exit: the last events are lost");
                self.output_error.get_or_insert(e);
            }
        }
        log_sink::flush_before_exit(drain_limit.min(log_sink::EXIT_DRAIN));
    }
}

/// What the per-source limits count: an IPv4 address, or an IPv6 /64 (one site's
/// allocation: a host there can take any address in it).
fn limit_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(net))
        }
        other => other,
    }
}

fn bucket_text(bucket: IpAddr) -> String {
    match bucket {
        IpAddr::V6(v6) if !v6.is_loopback() => format!("{v6}/64"),
        other => other.to_string(),
    }
}

/// What the per-source warnings' summary lines say was repeated.
const MALFORMED: &str = "malformed messages dropped";
const TOO_LARGE: &str = "messages longer than --max-message dropped";
const FAILED: &str = "connections failed mid-message";

fn log_too_large(log: &mut SourceLog, now: Instant, source: IpAddr, cap: usize) {
    log.hit(now, limit_bucket(source), TOO_LARGE, || {
        format!(
            "{source}: message longer than {cap} bytes (--max-message): dropped, connection \
             closed"
        )
    });
}

fn log_failed(log: &mut SourceLog, now: Instant, source: IpAddr, e: &io::Error, buffered: usize) {
    if buffered > 0 {
        log.hit(now, limit_bucket(source), FAILED, || {
            format!("{source}: connection failed mid-message ({e}): {buffered} bytes dropped")
        });
    } else {
        log::debug!("{source}: connection failed before any data ({e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_limits_count_ipv4_hosts_and_ipv6_slash_64s() {
        assert_eq!(limit_bucket(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(limit_bucket(ip("::1")), ip("::1"));
        let a = limit_bucket(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ip("2001:db8:1:2::"));
        assert_eq!(limit_bucket(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")), a);
        assert_ne!(limit_bucket(ip("2001:db8:1:3::1")), a);
        assert_eq!(bucket_text(a), "2001:db8:1:2::/64");
        assert_eq!(bucket_text(ip("10.1.2.3")), "10.1.2.3");
    }
}
