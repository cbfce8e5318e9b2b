//! The few operating-system calls std and mio do not offer. Used by the reactor and main,
//! and by `address` to look up an interface name.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// What a standard descriptor is, which decides how the reactor reads or writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A person at a terminal.
    Terminal,
    /// A pipe: pollable.
    Stream,
    /// A socket (socat `EXEC:`, inetd, systemd socket activation): pollable, and every
    /// call says "do not wait" itself, as a socket cannot be reopened.
    Socket,
    /// A regular file or a device such as /dev/null: always ready, not pollable.
    File,
}

pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

pub fn input_kind(fd: RawFd) -> InputKind {
    if is_terminal(fd) {
        return InputKind::Terminal;
    }
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return InputKind::File; // closed: reads as end of input, writes fail at once
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => InputKind::Stream,
        libc::S_IFSOCK => InputKind::Socket,
        _ => InputKind::File,
    }
}

/// A standard descriptor (0, 1 or 2) set up so that reading or writing it never blocks,
/// without changing it for the processes that share it (the shell, the other end of a
/// pipe, a sibling writing the same terminal):
///
/// * a terminal or a pipe is reopened through `/proc/self/fd` as a second description of
///   our own, with `O_NONBLOCK`;
/// * a socket cannot be reopened: each `recv`/`send` says `MSG_DONTWAIT` itself;
/// * a regular file or a device such as `/dev/null` never blocks: used as it is;
/// * a terminal or pipe that cannot be reopened (no `/proc`, or the node runs as another
///   user than the one who made the pipe): last resort, `O_NONBLOCK` is set on the shared
///   description and the old flags are put back when this is dropped. A blocking
///   descriptor is never used on the loop's path.
#[derive(Debug)]
pub struct StdFd {
    fd: RawFd,
    kind: InputKind,
    how: How,
}

#[derive(Debug)]
enum How {
    /// Our own description; closed on drop.
    Reopened(File),
    Socket,
    /// `O_NONBLOCK` set on the shared description; these flags come back on drop.
    Shared(libc::c_int),
    /// Used as it is (never blocks; not pollable).
    Plain,
}

impl StdFd {
    /// Sets up `fd` for `mode` (`O_RDONLY` or `O_WRONLY`). The error, if any, says why the
    /// last resort was taken (the caller logs it).
    pub fn open(fd: RawFd, mode: libc::c_int) -> (StdFd, Option<io::Error>) {
        let kind = input_kind(fd);
        let mut why = None;
        let how = match kind {
            InputKind::File => How::Plain,
            InputKind::Socket => How::Socket,
            InputKind::Terminal | InputKind::Stream => match reopen(fd, mode) {
                Ok(f) => How::Reopened(f),
                Err(e) => {
                    why = Some(e);
                    match set_nonblocking(fd) {
                        Ok(old) => How::Shared(old),
                        // Not even that: the descriptor is unusable (writes fail at once).
                        Err(_) => How::Plain,
                    }
                }
            },
        };
        let fd = match &how {
            How::Reopened(f) => f.as_raw_fd(),
            _ => fd,
        };
        (StdFd { fd, kind, how }, why)
    }

    /// What the descriptor is (a terminal, a pipe...).
    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// The descriptor to register with the poll, or `None` when it is always ready.
    pub fn pollable_fd(&self) -> Option<RawFd> {
        match self.how {
            How::Plain => None,
            _ => Some(self.fd),
        }
    }

    /// Reads what is there now; `WouldBlock` when nothing is.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.still_nonblocking();
        // SAFETY: `buf` is valid for `buf.len()` bytes of writing.
        let n = unsafe {
            match self.how {
                How::Socket => libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                ),
                _ => libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()),
            }
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes what fits now; `WouldBlock` when nothing does. A closed pipe or socket is
    /// `BrokenPipe` (a socket reset too: its reader has gone all the same), never a signal.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.still_nonblocking();
        // SAFETY: `buf` is valid for `buf.len()` bytes of reading.
        let n = unsafe {
            match self.how {
                How::Socket => libc::send(
                    self.fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                ),
                _ => libc::write(self.fd, buf.as_ptr().cast(), buf.len()),
            }
        };
        usize::try_from(n).map_err(|_| match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ECONNRESET) => io::ErrorKind::BrokenPipe.into(),
            e => e,
        })
    }
}

impl StdFd {
    /// A shared description can be made blocking again by another user of it (our own
    /// stdout handle putting its flags back while stderr is the same pipe): set it again.
    fn still_nonblocking(&self) {
        if let How::Shared(_) = self.how {
            let _ = set_nonblocking(self.fd);
        }
    }
}

impl Drop for StdFd {
    fn drop(&mut self) {
        if let How::Shared(flags) = self.how {
            // SAFETY: puts back the flags read from this descriptor when it was set up.
            unsafe { libc::fcntl(self.fd, libc::F_SETFL, flags) };
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`'s (shared) description; returns the flags it had.
fn set_nonblocking(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor number; errors are checked.
    unsafe {
        let old = libc::fcntl(fd, libc::F_GETFL);
        if old < 0 || libc::fcntl(fd, libc::F_SETFL, old | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// Opens a second, non-blocking description of `fd` (a terminal or a pipe) with `mode`
/// (`O_RDONLY`/`O_WRONLY`), so that making it non-blocking does not change the shell's
/// own descriptor. Fails for a socket (`ENXIO`) and, for a pipe, when nobody holds its
/// read end.
fn reopen(fd: RawFd, mode: i32) -> io::Result<File> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    // SAFETY: a valid C string; the result is checked.
    let new = unsafe {
        libc::open(
            path.as_ptr(),
            mode | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// Deepens a listening socket's accept queue (Linux lets `listen` be called again).
/// A non-blocking listening socket on `addr` with a `backlog`-deep accept queue. On the
/// IPv6 wildcard it takes IPv4 too (dual stack), whatever `net.ipv6.bindv6only` says.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the soft open-files limit to the hard limit (many sends and receives at once).
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return want;
            }
        }
        lim.rlim_cur
    }
}

/// Every address of this machine's interfaces.
pub fn local_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(sa as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// A random non-zero 64-bit number for this run's fast-path session (PROTOCOL.md), from
/// `/dev/urandom`; if that cannot be read, the clock and the process id mixed, which still
/// differ from one run to the next.
pub fn random_session() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    let mut n = u64::from_ne_bytes(b);
    if let Err(e) = read {
        log::warn!("cannot read /dev/urandom ({e}): session taken from the clock");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        n = t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    }
    n.max(1)
}

/// The index of the network interface called `name` (`lo`, `eth0`), if there is one: what
/// a typed IPv6 zone (`fe80::1%eth0`) means.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads the NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Is this error "too many open files" (per process or system-wide)?
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// How long a reader that takes nothing is waited for as the process ends.
pub const EXIT_STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// The last writes as the process ends, to a reader that may be slow: `write` writes what
/// `fd` takes now and returns how many bytes still wait. Between writes it waits for `fd`
/// to be writable: at most `limit` in all, never [`EXIT_STALL`] without progress (a
/// reader that takes nothing is not waited for), and not once `give_up` says so. Returns
/// how many bytes were left.
pub fn drain_at_exit(
    fd: RawFd,
    limit: std::time::Duration,
    mut write: impl FnMut() -> io::Result<usize>,
    mut give_up: impl FnMut() -> bool,
) -> io::Result<usize> {
    let start = std::time::Instant::now();
    let deadline = start + limit;
    let mut stalled_at = start + EXIT_STALL;
    let mut least = usize::MAX;
    loop {
        let waiting = write()?;
        if waiting == 0 {
            return Ok(0);
        }
        let now = std::time::Instant::now();
        if waiting < least {
            least = waiting;
            stalled_at = now + EXIT_STALL;
        }
        let wait = deadline.min(stalled_at).saturating_duration_since(now);
        if wait.is_zero() || give_up() {
            return Ok(waiting);
        }
        if let Err(e) = wait_writable(fd, wait) {
            log::debug!("waiting to write at exit: {e}");
            return Ok(waiting);
        }
    }
}

/// Waits until `fd` can be written, or `limit` passes (a signal ends the wait early).
pub fn wait_writable(fd: RawFd, limit: std::time::Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, its count is 1.
    let r = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The local wall-clock time as (hour, minute), for the stamps on interactive output.
pub fn local_hour_minute() -> (u8, u8) {
    // SAFETY: time(NULL) and localtime_r into a tm we own; the result is checked.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return (0, 0);
        }
        (tm.tm_hour as u8, tm.tm_min as u8)
    }
}
