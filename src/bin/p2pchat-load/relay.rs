//! The minimal relay: the floor under the node-to-node latency, measured in the same run.
//! Two relays stand in for nodes A and B. A line `/send IP:PORT TEXT` on stdin goes as
//! `TEXT\n` over one TCP connection per target, opened on first use and kept; each line
//! arriving on an accepted connection is printed as `{"event":"message","text":"TEXT"}`.
//! Blocking reads and writes, a thread per connection, no framing, no encryption, no
//! acknowledgements, no peer table: the least any program carrying a line from one
//! process's stdin to another's stdout over TCP does. It relays only the tool's own texts
//! (`t{k}:{due_us}:xxx`), which need no JSON escaping, and only to loopback addresses.

/// Bytes of one line at most (the node's own messages are far shorter).
const MAX_LINE: usize = 256 << 10;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("minimal relay: cannot listen: {e}");
            return ExitCode::from(2);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, r#"{{"event":"listening","port":{port}}}"#);
        let _ = out.flush();
    }
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || print_lines(conn));
        }
    });
    match forward_stdin() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minimal relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// Each complete line read from `conn` becomes one message line on stdout.
fn print_lines(mut conn: TcpStream) {
    let mut buf = vec![0u8; MAX_LINE];
    let mut have = 0;
    let mut out = Vec::with_capacity(64 << 10);
    loop {
        let n = match conn.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        out.clear();
        let mut at = 0;
        while let Some(end) = memchr::memchr(b'\n', &buf[at..have]) {
            out.extend_from_slice(br#"{"event":"message","text":""#);
            out.extend_from_slice(&buf[at..at + end]);
            out.extend_from_slice(b"\"}\n");
            at += end + 1;
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if have == buf.len() {
            return; // a line longer than the buffer: not one of the tool's
        }
        if !out.is_empty() && io::stdout().lock().write_all(&out).is_err() {
            return;
        }
    }
}

/// `/send IP:PORT TEXT` lines from stdin to their targets, until the end of input.
fn forward_stdin() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; MAX_LINE];
    let mut have = 0;
    let mut conns: HashMap<Vec<u8>, TcpStream> = HashMap::new();
    let mut outs: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    loop {
        let n = stdin.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut at = 0;
        while let Some(end) = memchr::memchr(b'\n', &buf[at..have]) {
            let line = &buf[at..at + end];
            at += end + 1;
            let Some(rest) = line.strip_prefix(b"/send ") else {
                continue;
            };
            let Some(space) = memchr::memchr(b' ', rest) else {
                continue;
            };
            let (target, text) = (&rest[..space], &rest[space + 1..]);
            let out = outs.entry(target.to_vec()).or_default();
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if have == buf.len() {
            return Err(io::Error::other("a line longer than 256 KiB"));
        }
        for (target, out) in outs.iter_mut().filter(|(_, o)| !o.is_empty()) {
            let conn = match conns.get_mut(target) {
                Some(c) => c,
                None => {
                    let addr: SocketAddr = String::from_utf8_lossy(target)
                        .parse()
                        .map_err(|_| io::Error::other("a target that is not IP:PORT"))?;
                    if !addr.ip().is_loopback() {
                        return Err(io::Error::other("a target that is not a loopback address"));
                    }
                    let c = TcpStream::connect(addr)?;
                    c.set_nodelay(true)?;
                    conns.entry(target.clone()).or_insert(c)
                }
            };
            conn.write_all(out)?;
            out.clear();
        }
    }
}
