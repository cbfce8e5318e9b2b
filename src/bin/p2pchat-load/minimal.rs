//! The minimal receiver: the least work that gives the node's output for the same input,
//! so that every benchmark carries the machine's own limit beside the node's figure.
//!
//! One thread and one epoll (mio, as in the node): accept every waiting connection and read
//! it at once; most have all their bytes and their end already, so they are parsed with
//! the node's own codec (`p2pchat::wire::parse`), closed, and their JSON line (the node's
//! `message` event, same fields) appended to one buffer. Only a connection whose end has
//! not arrived yet is watched until it has. The buffer is written once per turn of the
//! loop, as the node writes its output. No peer table, no timers, no limits, no
//! deregistration (closing a socket removes it from the epoll set).
//!
//! A blocking accept-then-read loop would be less code but is not the machine's limit: it
//! stalls on the first accepted connection whose sender has not written yet (head-of-line
//! blocking), and measured far below the node with concurrent senders.
//!
//! End of stdin ends it, as it ends the node.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use p2pchat::wire::{self, Body};
use serde::Serialize;
use slab::Slab;

/// Same accept queue as the node asks for.
const BACKLOG: i32 = 4096;
pub(crate) const LISTENER: Token = Token(usize::MAX);
pub(crate) const WAKER: Token = Token(usize::MAX - 1);

#[derive(Serialize)]
struct Line<'a> {
    event: &'static str,
    name: Option<&'a str>,
    ip: String,
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct Listening {
    event: &'static str,
    port: u16,
    addr: String,
    name: &'static str,
}

pub fn run(bind: IpAddr, port: u16) -> ExitCode {
    match serve(SocketAddr::new(bind, port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pchat-load minimal-receiver: {e}");
            ExitCode::from(3)
        }
    }
}

struct Conn {
    stream: TcpStream,
    source: IpAddr,
    buf: Vec<u8>,
}

enum Read_ {
    /// The peer closed its side: the whole message is in the buffer.
    Eof,
    /// More may come.
    Open,
    Failed,
}

/// Reads until the socket would block or the peer closes.
fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, scratch: &mut [u8]) -> Read_ {
    loop {
        match stream.read(scratch) {
            Ok(0) => return Read_::Eof,
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read_::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Read_::Failed,
        }
    }
}

/// What a minimal receiver starts with: its listener (deep backlog) registered under
/// [`LISTENER`], and a waker under [`WAKER`] that fires when stdin ends (the tool's way
/// of saying "stop"); its `listening` line, naming it `name`, is already on stdout.
pub(crate) struct Serving {
    pub listener: TcpListener,
    pub poll: Poll,
    /// Kept alive here too: a waker closed before the wake is seen would lose it.
    pub _waker: Arc<Waker>,
}

pub(crate) fn start_serving(addr: SocketAddr, name: &'static str) -> io::Result<Serving> {
    let mut listener = TcpListener::bind(addr)?;
    // SAFETY: listen on a socket we own (Linux lets the backlog be changed this way).
    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    let local = listener.local_addr()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(io::Error::other)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let wake = waker.clone();
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = wake.wake();
    });
    let mut out = Vec::new();
    serde_json::to_writer(
        &mut out,
        &Listening {
            event: "listening",
            port: local.port(),
            addr: local.to_string(),
            name,
        },
    )?;
    out.push(b'\n');
    let mut stdout = io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(Serving {
        listener,
        poll,
        _waker: waker,
    })
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let Serving {
        listener,
        mut poll,
        _waker,
    } = start_serving(addr, "minimal")?;
    let mut stdout = io::stdout().lock();
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {
                    stdout.write_all(&out)?;
                    return stdout.flush();
                }
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, peer)) => {
                            let mut buf = Vec::new();
                            match read_some(&mut stream, &mut buf, &mut scratch) {
                                Read_::Eof => print_message(&mut out, peer.ip(), &buf),
                                Read_::Failed => {}
                                Read_::Open => {
                                    let entry = conns.vacant_entry();
                                    let token = Token(entry.key());
                                    if poll
                                        .registry()
                                        .register(&mut stream, token, Interest::READABLE)
                                        .is_ok()
                                    {
                                        entry.insert(Conn {
                                            stream,
                                            source: peer.ip(),
                                            buf,
                                        });
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                            ) => {}
                        // Out of descriptors or anything else: try again at the next event.
                        Err(_) => break,
                    }
                },
                Token(key) => {
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    match read_some(&mut conn.stream, &mut conn.buf, &mut scratch) {
                        Read_::Open => {}
                        Read_::Eof => {
                            let conn = conns.remove(key);
                            print_message(&mut out, conn.source, &conn.buf);
                        }
                        Read_::Failed => {
                            conns.remove(key);
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            stdout.write_all(&out)?;
            stdout.flush()?;
            out.clear();
        }
    }
}

fn print_message(out: &mut Vec<u8>, source: IpAddr, payload: &[u8]) {
    let Ok(msg) = wire::parse(payload) else {
        return;
    };
    let (event, text) = match &msg.body {
        Body::Text(t) => ("message", Some(t.as_str())),
        Body::Connect => ("connected_with_you", None),
        Body::Exit => ("peer_left", None),
    };
    let line = Line {
        event,
        name: msg.name.as_deref(),
        ip: source.to_string(),
        port: msg.port,
        text,
    };
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}
