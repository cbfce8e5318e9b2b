//! The minimal framed receiver: the least work that gives the node's output for the same
//! stream input, as [`crate::minimal`] is for legacy connections. One thread, one epoll
//! (mio). Each connection: the preface, a Hello (its name and port kept), a Welcome written
//! back at once (a new record: `floor = through = fresh_from - 1`), then Data frames,
//! each printed as the node's `message` line (same fields), and one cumulative Ack per
//! read that delivered something. No session book, no dedup, no limits, no deadlines.
//! Output is written once per turn of the loop, as the node writes its output.
//!
//! End of stdin ends it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use mio::net::TcpStream;
use mio::{Events, Interest, Token};
use p2pchat::stream::frame::{self, Frame, MAX_PAYLOAD};
use serde::Serialize;
use slab::Slab;

use crate::minimal::{LISTENER, Serving, WAKER, start_serving};
/// Bytes held per connection at most (as the node's receiver).
const MAX_BUFFER: usize = 256 << 10;

#[derive(Serialize)]
struct Line<'a> {
    event: &'static str,
    name: Option<&'a str>,
    ip: &'a str,
    port: Option<u16>,
    text: &'a str,
}

struct Conn {
    stream: TcpStream,
    ip: String,
    buf: Vec<u8>,
    start: usize,
    preface: bool,
    /// The Hello's claims, once it came.
    hello: Option<(String, u16)>,
    through: u64,
    unacked: u32,
    reply: Vec<u8>,
}

pub fn run(bind: IpAddr, port: u16) -> ExitCode {
    match serve(SocketAddr::new(bind, port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2pchat-load minimal-stream-receiver: {e}");
            ExitCode::from(3)
        }
    }
}

enum Step {
    Open,
    Close,
}

/// Reads what is there, prints the messages, writes the Welcome and one Ack.
fn service(conn: &mut Conn, out: &mut Vec<u8>) -> Step {
    let mut eof = false;
    loop {
        if conn.start > 0 && conn.start == conn.buf.len() {
            conn.buf.clear();
            conn.start = 0;
        }
        let held = conn.buf.len() - conn.start;
        if held >= MAX_BUFFER {
            break;
        }
        if conn.buf.capacity() - conn.buf.len() < 16 * 1024 {
            conn.buf.drain(..conn.start);
            conn.start = 0;
            conn.buf.reserve(64 * 1024);
        }
        let len = conn.buf.len();
        let cap = conn.buf.capacity().min(conn.start + MAX_BUFFER);
        conn.buf.resize(cap, 0);
        match conn.stream.read(&mut conn.buf[len..]) {
            Ok(0) => {
                conn.buf.truncate(len);
                eof = true;
                break;
            }
            Ok(n) => conn.buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.buf.truncate(len);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => conn.buf.truncate(len),
            Err(_) => return Step::Close,
        }
        if parse(conn, out).is_err() {
            return Step::Close;
        }
    }
    if parse(conn, out).is_err() {
        return Step::Close;
    }
    if conn.unacked > 0 {
        frame::encode_ack(&mut conn.reply, conn.through);
        conn.unacked = 0;
    }
    if !conn.reply.is_empty() {
        match conn.stream.write(&conn.reply) {
            Ok(n) => {
                conn.reply.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Step::Close,
        }
    }
    if eof { Step::Close } else { Step::Open }
}

fn parse(conn: &mut Conn, out: &mut Vec<u8>) -> Result<(), ()> {
    if !conn.preface {
        match frame::is_preface(&conn.buf[conn.start..]) {
            Some(true) => {
                conn.start += frame::MAGIC.len();
                conn.preface = true;
            }
            Some(false) => return Err(()),
            None => return Ok(()),
        }
    }
    loop {
        let (f, len) = match frame::decode(&conn.buf[conn.start..], MAX_PAYLOAD) {
            Ok(x) => x,
            Err(frame::FrameError::Incomplete) => return Ok(()),
            Err(_) => return Err(()),
        };
        match (f, &conn.hello) {
            (Frame::Hello(h), None) => {
                conn.through = h.fresh_from - 1;
                frame::encode_welcome(&mut conn.reply, h.version, conn.through, conn.through);
                conn.hello = Some((h.name.to_owned(), h.port));
            }
            (Frame::Data { seq, text }, Some((name, port))) => {
                let line = Line {
                    event: "message",
                    name: Some(name),
                    ip: &conn.ip,
                    port: Some(*port),
                    text: &String::from_utf8_lossy(text),
                };
                let _ = serde_json::to_writer(&mut *out, &line);
                out.push(b'\n');
                conn.through = seq;
                conn.unacked += 1;
            }
            _ => return Err(()),
        }
        conn.start += len;
    }
}

fn serve(addr: SocketAddr) -> io::Result<()> {
    let Serving {
        listener,
        mut poll,
        _waker,
    } = start_serving(addr, "minimal-stream")?;
    let mut stdout = io::stdout().lock();
    let mut out: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut events = Events::with_capacity(1024);
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
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            if poll
                                .registry()
                                .register(&mut stream, token, Interest::READABLE)
                                .is_ok()
                            {
                                let conn = entry.insert(Conn {
                                    stream,
                                    ip: peer.ip().to_string(),
                                    buf: Vec::with_capacity(64 * 1024),
                                    start: 0,
                                    preface: false,
                                    hello: None,
                                    through: 0,
                                    unacked: 0,
                                    reply: Vec::new(),
                                });
                                if let Step::Close = service(conn, &mut out) {
                                    conns.remove(token.0);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                            ) => {}
                        Err(_) => break,
                    }
                },
                Token(key) => {
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if let Step::Close = service(conn, &mut out) {
                        conns.remove(key);
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
