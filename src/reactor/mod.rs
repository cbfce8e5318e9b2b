//! The reactor: the only module that does IO.
//!
//! One `mio::Poll` multiplexes the listening socket, every inbound and outbound connection
//! (`conns::Conns`), stdin, stdout and the termination signals. Each turn of the loop:
//!
//! 1. carries out the peer table's effects (show, transmit, exit) and writes stdout;
//! 2. sleeps until the next event or the earliest deadline (connections, the table's
//!    timers, admission's back-off and summaries), never longer, never busy;
//! 3. reads the clock once, handles every event, then fires every due deadline whether or
//!    not events came.
//!
//! What the bytes mean is decided elsewhere, by pure types stepped with that one `now`:
//! [`crate::assembler`] frames each inbound connection, [`crate::admission`] decides which
//! connections are taken and which are closed first, and the [`PeerTable`] runs the
//! protocol. A received message goes: `accept` → `Node::admit` (read at once; most
//! connections are complete here) → `Node::show` → `PeerTable::handle_message` →
//! `Effect::Show` → stdout.
//!
//! Output is bounded: while more than `stdout::HIGH_WATER` bytes wait for a slow reader,
//! nothing is accepted or read and no deadline shows a message; every message shown checks
//! that bound again, so one burst cannot run past it.

mod chat_log;
mod conns;
mod fast;
mod inbound;
mod keys;
mod outbound;
mod receive;
mod sends;
mod stdin;
mod stdout;
mod terminal;
mod tty;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGTERM, SIGWINCH};
use signal_hook_mio::v1_0::Signals;

use crate::admission::{self, Admission};
use crate::assembler;
use crate::config::Config;
use crate::console::{self, Command, Console, Reply};
use crate::event::Event;
use crate::identity::{LocalAddrs, bucket_text};
use crate::log_sink;
use crate::os;
use crate::peer_table::{
    Effect, FastConfig, IdMap, LinkId, PeerStatus, PeerTable, TableConfig, Target,
};
use crate::rate_log::{SourceLog, WARN_INTERVAL};
use crate::stream::receiver::SessionBook;

use conns::{ConnId, Conns};
use inbound::Inbound;
use outbound::Outbound;

const LISTENER: Token = Token(usize::MAX);
const STDIN: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const STDOUT: Token = Token(usize::MAX - 3);
/// stderr, registered only while log lines wait for it (see `log_sink::watch`).
const STDERR: Token = Token(usize::MAX - 4);

/// Accept queue depth asked of the kernel (capped by net.core.somaxconn).
const BACKLOG: i32 = 4096;
/// Connections accepted in one turn at most: the rest wait for the next turn, so a flood
/// of connections cannot starve stdin, sends and deadlines.
const ACCEPTS_PER_TURN: usize = 256;
/// A connection kept open after a whole message has been written is delivered once it has
/// been quiet this long (an implementation that sends several messages on one connection,
/// or waits for a reply). Longer than two TCP retransmissions at a short round trip
/// (200 ms + 400 ms), so a message split across segments by a lost packet is rarely cut.
const IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Bytes unfinished inbound messages may hold together (whatever `--max-inbound` allows).
const MAX_BUFFERED: usize = 16 << 20;
/// Sends unfinished (queued, in flight, or on a stream and not yet acknowledged) at which
/// piped input stops being read: a million `/send` lines wait in the pipe, not in memory.
/// Also the bound on a burst of outcomes (many sends can reach their deadline at once):
/// 8,192 events and 1 MiB of their text stay well within stdout's `HARD_CAP`.
pub const SENDS_HIGH_WATER: usize = 8_192;
/// Bytes of text of those sends at which input stops being read.
pub const SENDS_HIGH_TEXT: usize = 1 << 20;
/// ... and below which it is read again (half of each: no flapping at the mark).
pub const SENDS_LOW_WATER: usize = SENDS_HIGH_WATER / 2;
pub const SENDS_LOW_TEXT: usize = SENDS_HIGH_TEXT / 2;

/// Why the node could not start or stopped early.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    PortInUse(SocketAddr),
    NotLocal(SocketAddr),
    ListenDenied(SocketAddr),
    Listen(SocketAddr, io::Error),
    Poll(io::Error),
    /// `--log`'s file cannot be opened.
    ChatLog(PathBuf, io::Error),
    /// stdout failed (not merely closed): the node quit, the user could not be told things.
    Output(io::Error),
    /// The node's home, key or known_peers cannot be used (the message says why).
    Keys(String),
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
            RunError::ChatLog(path, e) => {
                write!(
                    f,
                    "cannot open the chat log {} ({e}): see --log",
                    path.display()
                )
            }
            RunError::Output(e) => write!(f, "cannot write to stdout ({e}): quit"),
            RunError::Keys(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RunError {}

impl RunError {
    /// What another port would cure, worded for the start-up question: the port is in
    /// use, or needs privileges. `None` for anything else.
    pub fn port_problem(&self) -> Option<String> {
        match self {
            RunError::PortInUse(a) => Some(format!(
                "port {} is in use: choose another (0 picks a free one)",
                a.port()
            )),
            RunError::ListenDenied(a) => Some(format!(
                "port {} needs privileges (ports below 1024): choose another",
                a.port()
            )),
            _ => None,
        }
    }
}

impl Node {
    /// The proof this node answers an empty connection with: 2 (encrypted streams) by
    /// default, 1 with `--plaintext`.
    fn proof_version(&self) -> u8 {
        if self.cfg.plaintext {
            1
        } else {
            crate::stream::proof::VERSION
        }
    }
}

/// The line editor's history file: in `--home` when given, else where README says
/// (`$XDG_STATE_HOME/p2pchat/history`).
fn history_path(cfg: &Config) -> Option<PathBuf> {
    match &cfg.home {
        Some(dir) => Some(dir.join("history")),
        None => crate::editor::History::default_path(),
    }
}

/// A connection in the slab.
#[derive(Debug)]
enum Conn {
    In(Inbound),
    Out(Outbound),
    /// The fast path's probe of a peer.
    Probe(fast::ProbeConn),
    /// Our stream to a proven peer.
    StreamOut(fast::StreamOut),
    /// A peer's stream to us.
    StreamIn(fast::StreamIn),
}

/// A bound node, ready to [`Node::run`].
pub struct Node {
    cfg: Config,
    poll: Poll,
    listener: TcpListener,
    local: SocketAddr,
    conns: Conns<Conn>,
    table: PeerTable,
    admission: Admission,
    framing: assembler::Limits,
    sends: sends::Sends,
    /// The connections of the fast path's probes and outgoing streams, by the table's id.
    links: IdMap<LinkId, ConnId>,
    /// Streams with messages queued this turn, written at the end of it.
    ready_links: Vec<LinkId>,
    /// What this node remembers of senders' stream sessions (dedup across connections).
    book: SessionBook,
    /// `--stream-rate`: incoming stream messages per second per source IP.
    pace: crate::stream::pace::Pace,
    /// Warnings caused by remote input, summed up per source.
    remote_log: SourceLog,
    console: Console,
    stdin: stdin::Stdin,
    stdout: stdout::Stdout,
    /// The line editor, when a person types at a terminal.
    terminal: Option<terminal::Terminal>,
    /// `--log`: every event shown is appended there too.
    chat_log: Option<chat_log::ChatLog>,
    /// The node's key and known peers (none with `--legacy-only`: no stream, no key).
    keys: Option<keys::Keys>,
    signals: Signals,
    /// Output is backed up: nothing is accepted, read or shown until it drains.
    paused: bool,
    /// stdout is registered with the poll (a writable event follows a full pipe).
    stdout_polled: bool,
    /// Inbound connections that needed attention while paused, each listed once.
    deferred: VecDeque<ConnId>,
    /// The listener has connections waiting (paused, or the turn's share was taken).
    accept_pending: bool,
    /// stdin became readable while paused: what it asks would add to the backed-up output.
    stdin_pending: bool,
    /// Too many sends are unfinished ([`SENDS_HIGH_WATER`]): piped input is not read or run
    /// until they drop to [`SENDS_LOW_WATER`].
    sends_full: bool,
    /// Times input was held for that, for the log (the first is told at `info`).
    sends_holds: u64,
    /// Lines read from stdin, not run yet (at most one chunk's worth).
    typed: VecDeque<String>,
    /// The end of input has been acted on.
    typed_ended: bool,
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
        let keys = if cfg.legacy_only {
            None
        } else {
            Some(keys::Keys::load(cfg.home.clone()).map_err(RunError::Keys)?)
        };
        let chat_log = match &cfg.log {
            Some(path) => Some(
                chat_log::ChatLog::open(path).map_err(|e| RunError::ChatLog(path.clone(), e))?,
            ),
            None => None,
        };
        let listener = listen(&cfg)?;
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
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCONT]).map_err(RunError::Poll)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(RunError::Poll)?;
        let interactive = stdin.kind == os::InputKind::Terminal;
        let stdout_terminal = crate::is_terminal(1);
        let colour = !cfg.json
            && cfg
                .color
                .colour(stdout_terminal, std::env::var_os("NO_COLOR").as_deref());
        let mut stdout = stdout::Stdout::new(cfg.json, interactive, colour);
        let terminal = if interactive && stdout_terminal && !cfg.json {
            terminal::Terminal::open(history_path(&cfg))
        } else {
            None
        };
        if let Some(t) = &terminal {
            stdout.use_screen(colour, t.width);
        }
        let stdout_polled = stdout.pollable_fd().is_some_and(|fd| {
            let r = poll
                .registry()
                .register(&mut SourceFd(&fd), STDOUT, Interest::WRITABLE);
            if let Err(e) = &r {
                log::debug!("stdout cannot be polled ({e}): retried every 10 ms while it waits");
            }
            r.is_ok()
        });
        let local_addrs = LocalAddrs::new(os::local_addrs());
        let asked = admission::Limits {
            max_inbound: cfg.max_inbound,
            max_per_source: cfg.max_inbound_per_ip,
            max_buffered: MAX_BUFFERED,
            rate: cfg.rate,
            burst: cfg.burst,
            limit_local: cfg.limit_local,
        };
        let fitted = admission::fit_to_fd_limit(&asked, fd_limit);
        log::debug!("open files limit: {fd_limit}");
        if let Some(note) = &fitted.lowered {
            log::warn!("{note}");
        }
        let table = PeerTable::new(TableConfig {
            name: cfg.name.clone(),
            port: local.port(),
            advertise: cfg.advertise,
            timeout: cfg.timeout,
            local: local_addrs.clone(),
            max_peers: cfg.max_peers,
            max_peers_per_host: cfg.max_peers_per_host,
            limit_local: cfg.limit_local,
            fast: (!cfg.legacy_only).then(|| {
                let mut fast = FastConfig::new(os::random_session());
                fast.encrypt = !cfg.plaintext;
                // A first message waits for the probe: a quarter of its time at most,
                // so a peer that never answers leaves it time to go by legacy.
                fast.proof.probe_timeout = fast.proof.probe_timeout.min(cfg.timeout / 4);
                fast
            }),
        });
        let framing = assembler::Limits {
            max_message: cfg.max_message,
            read_timeout: cfg.read_timeout,
            idle_flush: IDLE_FLUSH,
        };
        // One read pass fits the largest message and one byte more (to see it is larger).
        let scratch_len = (64 * 1024).max(cfg.max_message.saturating_add(1));
        Ok(Node {
            stdout,
            chat_log,
            keys,
            admission: Admission::new(fitted.limits, local_addrs),
            sends: sends::Sends::new(fitted.max_sends),
            links: IdMap::default(),
            ready_links: Vec::new(),
            book: SessionBook::new(SessionBook::DEFAULT_CAP),
            pace: crate::stream::pace::Pace::new(cfg.stream_rate),
            remote_log: SourceLog::new(bucket_text),
            framing,
            paused: false,
            stdout_polled,
            deferred: VecDeque::new(),
            accept_pending: false,
            stdin_pending: false,
            sends_full: false,
            sends_holds: 0,
            typed: VecDeque::new(),
            typed_ended: false,
            cfg,
            poll,
            listener,
            local,
            conns: Conns::default(),
            table,
            console: Console::new(),
            stdin,
            terminal,
            signals,
            scratch: vec![0u8; scratch_len].into_boxed_slice(),
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
        let mut now = Instant::now();
        self.begin(now);
        loop {
            self.drain_effects(now);
            self.flush_ready_links(now);
            self.update_sends_hold(now);
            self.redraw_input(now);
            self.flush_stdout(now);
            if self.exit {
                break;
            }
            log_sink::watch(self.poll.registry(), STDERR);
            let timeout = self
                .next_wake(now)
                .map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(RunError::Poll(e));
            }
            // The one clock reading of this turn.
            now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    STDIN if self.terminal.is_some() => self.read_keys(now),
                    STDIN => self.read_stdin(now),
                    SIGNALS => self.signal(now),
                    STDOUT => self.flush_stdout(now),
                    STDERR => {} // log lines: written at the top of every turn
                    token => self.connection_ready(now, ConnId::from_token(token)),
                }
            }
            self.fire_timers(now);
        }
        self.finish(Instant::now());
        match self.output_error.take() {
            Some(e) => Err(RunError::Output(e)),
            None => Ok(()),
        }
    }

    fn begin(&mut self, now: Instant) {
        log::info!("listening on {} as {:?}", self.local, self.cfg.name);
        self.show_held_log();
        if self.cfg.plaintext {
            log::warn!("--plaintext: messages to p2pchat peers go unencrypted");
        }
        self.tell(&Event::Listening {
            addr: self.local,
            name: self.cfg.name.clone(),
            fingerprint: self.keys.as_ref().map(|k| k.fingerprint().to_string()),
        });
        self.stdout.banner(console::MENU);
        self.stdout.set_prompt(Some(self.prompt()));
        for peer in self.cfg.peers.clone() {
            let greeting = self.cfg.greeting.clone();
            self.table.send(now, Target::Addr(peer), &greeting);
        }
    }

    /// The earliest instant the loop must wake at, or `None` to sleep until an event.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let accept_now = self.accept_pending && !self.paused && self.admission.may_accept(now);
        // Output that could be written now (produced after this turn's write, or for a
        // regular file, which never says it is writable), or paused with nothing left to
        // write: write and resume now rather than sleep until something else happens.
        let output_now = self.stdout.writable_now() || (self.paused && self.stdout.pending() == 0);
        if self.stdin_waiting() || accept_now || output_now {
            return Some(now);
        }
        if self.stdout.pending() > 0 && !self.stdout_polled {
            // Output waits on a descriptor the poll cannot watch: try again shortly.
            return Some(now + Duration::from_millis(10));
        }
        [
            self.conns.next_deadline(),
            self.terminal.as_ref().and_then(|t| t.poll_timeout()),
            self.table.poll_timeout(),
            self.admission.poll_timeout(now),
            self.remote_log.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything due at `now` whether or not an event came.
    fn fire_timers(&mut self, now: Instant) {
        if self.terminal.is_some() {
            if self.stdin.wants_turn() {
                self.read_keys(now);
            }
            self.keys_timeout(now);
        } else if self.stdin_waiting() {
            self.read_stdin(now);
        }
        let admission_due = self.admission.poll_timeout(now).is_some_and(|t| t <= now);
        if (admission_due && self.admission.handle_timeout(now)) || self.accept_pending {
            self.accept(now);
        }
        // Taken once, then serviced: a connection that sets its deadline to `now` again
        // (a stream with read passes left over) waits for the next turn, after every
        // other socket and stdin, instead of being serviced again in this loop.
        let mut due = Vec::new();
        while let Some(id) = self.conns.pop_due(now) {
            due.push(id);
        }
        for id in due {
            match self.conns.get(id) {
                Some(Conn::In(_)) => self.service_inbound(now, id, false),
                Some(Conn::StreamIn(_)) => self.service_stream_in(now, id, true, true),
                Some(Conn::Probe(_)) => self.drive_probe(now, id, true),
                // The handshake's deadline, and read passes left over from the last turn.
                Some(Conn::StreamOut(_)) => self.stream_out_due(now, id),
                // A send's deadline is the table's.
                Some(Conn::Out(_)) | None => {}
            }
        }
        if self.table.poll_timeout().is_some_and(|t| t <= now) {
            self.table.handle_timeout(now);
        }
        self.remote_log.report(now);
    }

    // ----- the peer table's effects -------------------------------------------------------

    /// Carries out the table's effects; what they show goes into the output buffer, whose
    /// bound is checked after each.
    fn drain_effects(&mut self, now: Instant) {
        let mut shown = false;
        while let Some(effect) = self.table.poll_effect() {
            match effect {
                Effect::Show(mut event) => {
                    shown = true;
                    if let Event::Peers(rows) | Event::ConnectCandidates(rows) = &mut event {
                        self.fill_keys(rows);
                    }
                    self.tell(&event);
                }
                Effect::Transmit(t) => self.transmit(now, t),
                Effect::Write { id, payload } => self.write_send(now, id, payload),
                Effect::Abort(id) => self.abort_send(now, id),
                Effect::Probe { link, key, to } => self.open_probe(now, link, key, to),
                Effect::OpenStream {
                    link,
                    key,
                    to,
                    encrypted,
                } => self.open_stream(now, link, key, to, encrypted),
                // Written once per turn (`flush_ready_links`), however many lines of
                // input queued messages for it: one write carries them all.
                Effect::StreamReady { link, .. } => {
                    if !self.ready_links.contains(&link) {
                        self.ready_links.push(link);
                    }
                }
                Effect::CloseStream { link, .. } => self.close_link(link),
                Effect::Exit => self.exit = true,
            }
        }
        // The current peer may have been renamed or have left: the prompt shows it.
        if shown && self.console.current().is_some() && !self.table.is_quitting() {
            self.stdout.set_prompt(Some(self.prompt()));
        }
        if !self.paused && self.stdout.backlogged() {
            log::info!("output is not keeping up: pausing network reads");
            self.paused = true;
        }
    }

    /// Frees a connection's slot. The caller has already told the table its outcome.
    fn close(&mut self, id: ConnId) {
        // No `deregister`: the descriptor is never duplicated, so closing it takes it out of
        // the epoll set (one system call per message saved). An event for it still in this
        // turn's batch carries the old generation and is ignored.
        match self.conns.remove(id) {
            Some(Conn::In(i)) => self.admission.closed(i.source.ip(), i.accounted),
            Some(Conn::Out(o)) => self.sends.closed(o.id),
            Some(Conn::StreamIn(s)) => self.admission.closed(s.source.ip(), 0),
            Some(Conn::Probe(fast::ProbeConn { link, .. }))
            | Some(Conn::StreamOut(fast::StreamOut { link, .. })) => {
                self.links.remove(&link);
            }
            None => {}
        }
    }

    /// Pauses while stdout is backed up; once it drains, catches up with what waited.
    fn update_pause(&mut self, now: Instant) {
        if !self.paused || !self.stdout.drained() {
            return;
        }
        log::info!("output drained: resuming network reads");
        self.paused = false;
        while !self.paused {
            let Some(id) = self.deferred.pop_front() else {
                break;
            };
            match self.conns.get_mut(id) {
                Some(Conn::In(conn)) => {
                    conn.deferred = false;
                    self.service_inbound(now, id, true);
                }
                Some(Conn::StreamIn(conn)) => {
                    conn.deferred = false;
                    self.service_stream_in(now, id, true, true);
                }
                _ => {}
            }
        }
        if self.deferred.is_empty() {
            self.deferred.shrink_to(64);
        }
        if !self.paused && self.accept_pending {
            self.accept(now);
        }
        if !self.paused && self.stdin_pending {
            self.read_stdin(now);
        }
    }

    // ----- stdin, stdout, signals -----------------------------------------------------------

    /// Reads one chunk of what was typed (once the previous chunk's lines have all run)
    /// and runs its lines until output backs up; the rest wait for the next turn.
    fn read_stdin(&mut self, now: Instant) {
        if self.paused || self.sends_backed_up() {
            self.stdin_pending = true;
            return;
        }
        self.stdin_pending = false;
        if self.typed.is_empty() && !self.stdin.ended() {
            let input = self.stdin.read();
            for _ in 0..input.too_long {
                self.tell(&Event::Refused(
                    "line longer than 64 KiB: ignored (messages are at most 1 KiB)".to_owned(),
                ));
            }
            self.typed.extend(input.lines);
        }
        while !self.paused && !self.exit {
            if self.sends_backed_up() {
                // The rest of the chunk waits with the pipe.
                self.stdin_pending = true;
                break;
            }
            let Some(line) = self.typed.pop_front() else {
                break;
            };
            self.run_line(now, &line);
        }
        if self.typed.is_empty() && self.stdin.ended() && !self.typed_ended {
            self.typed_ended = true;
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

    /// Whether typed input waits to be read or run (the loop must not sleep).
    fn stdin_waiting(&self) -> bool {
        if self.terminal.is_some() {
            // Keys are read while paused too: a person's typing adds little output.
            return self.stdin.wants_turn();
        }
        !self.paused && !self.sends_full && (self.stdin.wants_turn() || !self.typed.is_empty())
    }

    /// Whether piped input must wait for sends to finish (see [`SENDS_HIGH_WATER`]); a
    /// person at a terminal is never held (they cannot type that fast).
    fn sends_backed_up(&mut self) -> bool {
        if self.terminal.is_some() {
            return false;
        }
        let unfinished = self.table.pending_sends();
        let text = self.table.pending_text();
        if !self.sends_full && (unfinished >= SENDS_HIGH_WATER || text >= SENDS_HIGH_TEXT) {
            self.sends_full = true;
            self.sends_holds += 1;
            let say = format!(
                "{unfinished} sends unfinished ({text} bytes): input paused until at most \
                 {SENDS_LOW_WATER} ({SENDS_LOW_TEXT} bytes) wait (each ends delivered, sent or \
                 failed by its deadline)"
            );
            match self.sends_holds {
                1 => log::info!("{say}"),
                _ => log::debug!("{say}"),
            }
        }
        self.sends_full
    }

    /// Resumes piped input held by [`Node::sends_backed_up`] once sends have drained to
    /// the low-water mark.
    fn update_sends_hold(&mut self, now: Instant) {
        if !self.sends_full
            || self.table.pending_sends() > SENDS_LOW_WATER
            || self.table.pending_text() > SENDS_LOW_TEXT
        {
            return;
        }
        self.sends_full = false;
        log::debug!(
            "sends drained to {}: input resumed",
            self.table.pending_sends()
        );
        if self.stdin_pending && !self.paused {
            self.read_stdin(now);
        }
    }

    fn run_line(&mut self, now: Instant, line: &str) {
        self.run_line_as(now, line, false);
    }

    /// Runs a typed line; `pasted`: one line of a multi-line paste (see
    /// [`Console::feed_pasted`]).
    fn run_line_as(&mut self, now: Instant, line: &str, pasted: bool) {
        self.stdout.answered();
        let candidates = self
            .table
            .peers()
            .filter(|(_, p)| p.status == PeerStatus::YetToConnect)
            .count();
        let replies = if pasted {
            self.console.feed_pasted(line, candidates)
        } else {
            self.console.feed(line, candidates)
        };
        for reply in replies {
            match reply {
                Reply::Run(cmd) => self.run_command(now, cmd),
                Reply::Say(text) => self.stdout.say(&text),
                Reply::Mistake(text) => self.tell(&Event::Refused(text)),
                Reply::Prompt(_) => {}
            }
        }
        // What the command shows (a peer list) comes before the next question.
        self.drain_effects(now);
        if !self.table.is_quitting() {
            self.stdout.set_prompt(Some(self.prompt()));
        }
    }

    /// Shows `event`, and appends it to the chat log (`--log`). The log's first write
    /// error is told (and logged) once; logging stops there, the chat goes on.
    fn tell(&mut self, event: &Event) {
        // Peer events carry the peer's key's fingerprint in --json (when one is known).
        let fingerprint = match event {
            Event::NewPeer(v) | Event::ConnectedWithYou(v) | Event::PeerLeft(v) => {
                self.fingerprint_of(v)
            }
            _ => None,
        };
        self.stdout.event_keyed(event, fingerprint.as_deref());
        if let Some(log) = &mut self.chat_log
            && let Some(why) = log.record(SystemTime::now(), event)
        {
            log::error!("{why}");
            self.stdout.event(&Event::Info(why));
        }
    }

    /// The current peer (`/query`) as the prompt shows it: its name made safe or its
    /// address, marked once it has left the list.
    pub fn current_label(&self) -> Option<String> {
        let number = self.console.current()?;
        Some(match self.table.label(number) {
            Some(label) => label,
            None => format!("{} (left)", self.console.current_label().unwrap_or("?")),
        })
    }

    /// The prompt: the menu's question, `[LABEL] > ` with a current peer, or
    /// `Enter choice: `.
    pub fn prompt(&self) -> Cow<'static, str> {
        self.console.prompt(self.current_label().as_deref())
    }

    /// Sends still unfinished 1 s after they were asked for (to show as pending).
    pub fn slow_sends(&self, now: Instant) -> usize {
        self.table.slow_sends(now)
    }

    /// Plain text for the current peer `#number`, if it is still listed; if not, nothing
    /// is sent, the user is told, and there is no current peer any more.
    fn send_current(&mut self, now: Instant, number: usize, text: String) {
        if self.table.peer_by_number(number).is_some() {
            self.table.send(now, Target::Index(number), text);
            return;
        }
        let label = self.console.current_label().unwrap_or("?");
        let why = format!("#{number} {label} has left: nothing sent; /query someone else");
        self.console.clear_current();
        self.tell(&Event::Refused(why));
    }

    fn run_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Send { target, text } => self.table.send(now, target, text),
            Command::SendCurrent { number, text } => self.send_current(now, number, text),
            Command::Query(None) => {
                self.console.clear_current();
                self.tell(&Event::QueryEnded);
            }
            Command::Query(Some(target)) => {
                if let Some(number) = self.table.query(now, &target) {
                    let label = self.table.label(number).unwrap_or_default();
                    self.console.set_current(number, label);
                }
            }
            Command::Forget(target) => {
                let forgotten = self.table.forget(&target);
                if forgotten.is_some() && forgotten == self.console.current() {
                    self.console.clear_current();
                    // After the table's notice of it.
                    self.drain_effects(now);
                    self.tell(&Event::QueryEnded);
                }
            }
            Command::Nick(name) => {
                self.table.set_name(&name);
                self.cfg.name = name;
            }
            Command::Peers => self.table.list(),
            Command::Whoami => self.whoami(),
            Command::Verify { target, confirmed } => self.verify(&target, confirmed),
            Command::Trust(target) => self.trust(now, &target),
            Command::ConnectCandidates => self.table.list_candidates(),
            Command::Connect(which) => self.table.connect(now, which),
            Command::Quit => self.quit_typed(now),
        }
    }

    /// The user asked to quit: no more prompt or input line; `exit` to every peer.
    fn quit_typed(&mut self, now: Instant) {
        if self.terminal.is_some()
            && !self.table.is_quitting()
            && self.table.peers().next().is_some()
        {
            // However the quit began (Ctrl-C, Ctrl-D, /quit, 0, a signal): how not to wait.
            self.tell(&Event::Info(
                "quitting: telling every peer (Ctrl-C to leave at once)".to_owned(),
            ));
        }
        self.stdout.set_prompt(None);
        self.stdout.end_input();
        self.table.quit(now);
    }

    /// SIGINT, SIGTERM and SIGHUP (the terminal closed) quit: `exit` to every peer. A
    /// second signal while quitting leaves at once.
    fn signal(&mut self, now: Instant) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            if sig == SIGWINCH {
                self.resized();
            } else if sig == SIGCONT {
                self.continued();
            } else if self.table.is_quitting() {
                log::warn!("signal {sig} while quitting: leaving now");
                self.exit = true;
                self.leave_now = true;
            } else {
                log::info!("signal {sig}: quitting (sending exit to every peer)");
                self.quit_typed(now);
            }
        }
    }

    fn flush_stdout(&mut self, now: Instant) {
        self.show_held_log();
        if let Err(e) = self.stdout.flush() {
            if e.kind() == io::ErrorKind::BrokenPipe || self.stdout.hung_up(&e) {
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

    /// Leaves: the table reports every send still open as cut short by the quit.
    fn finish(&mut self, now: Instant) {
        self.table.abandon();
        for id in self.conns.ids() {
            self.close(id);
        }
        while let Some(effect) = self.table.poll_effect() {
            if let Effect::Show(event) = effect {
                self.tell(&event);
            }
        }
        self.stdout.set_prompt(None);
        self.stdout.end_input();
        self.show_held_log();
        self.stdout.tell_not_shown_at_exit();
        // A slow reader gets a bounded wait for the rest; a second signal means "now".
        let drain_limit = if self.leave_now {
            Duration::ZERO
        } else {
            stdout::EXIT_DRAIN
        };
        let signals = &mut self.signals;
        let mut signalled = false;
        let mut give_up = || {
            signalled |= signals.pending().any(|s| s != SIGWINCH && s != SIGCONT);
            signalled
        };
        let drained = self.stdout.flush_before_exit(drain_limit, &mut give_up);
        if signalled {
            self.leave_now = true;
        }
        match drained {
            Ok(0) => {}
            Ok(unwritten) => log::error!(
                "stdout is not taking output: {unwritten} bytes of events were not shown \
                 (waited at most {:.1}s at exit)",
                drain_limit.as_secs_f64()
            ),
            Err(e) if self.stdout.hung_up(&e) => log::info!("stdout closed ({e}) at exit"),
            Err(e) => {
                log::error!("cannot write to stdout ({e}) at exit: the last events are lost");
                self.output_error.get_or_insert(e);
            }
        }
        // The terminal gets its settings back before the last log lines go to stderr.
        if let Some(mut t) = self.terminal.take() {
            t.close();
        }
        // Summaries still due are written now rather than lost.
        let later = now + WARN_INTERVAL;
        self.admission.handle_timeout(later);
        self.remote_log.report(later);
        let log_limit = if self.leave_now {
            Duration::ZERO
        } else {
            log_sink::EXIT_DRAIN
        };
        log_sink::flush_before_exit(log_limit);
    }
}

/// The listening socket: `--bind` and `--port`, dual stack by default.
fn listen(cfg: &Config) -> Result<TcpListener, RunError> {
    let wildcard_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), cfg.listen.port());
    match os::listen(cfg.listen, BACKLOG) {
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
    .map(TcpListener::from_std)
}
