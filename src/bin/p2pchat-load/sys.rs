//! The operating-system facts and knobs the load tool needs: open-files limit, the
//! ephemeral port range, CPU affinity.

use std::io;

/// Raises the soft open-files limit to the hard limit; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let new = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), inclusive.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// Checks that `base..base+count` lies outside the ephemeral range (or it would collide
/// with the sockets the senders and the node open).
pub fn check_port_range(base: u16, count: usize) -> Result<(), String> {
    let last = u32::from(base) + count as u32 - 1;
    if base == 0 || last > 65535 {
        return Err(format!(
            "ports {base}..={last} do not fit in 1..=65535: lower --base-port or --peers"
        ));
    }
    if let Some((lo, hi)) = ephemeral_range()
        && u32::from(base) <= u32::from(hi)
        && last >= u32::from(lo)
    {
        return Err(format!(
            "simulated peers' ports {base}..={last} overlap the ephemeral range {lo}..={hi} \
             (/proc/sys/net/ipv4/ip_local_port_range): choose --base-port so that they do not"
        ));
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Restricts `pid` (0: the calling thread, and so every thread it starts later) to `cpus`.
pub fn pin(pid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: sched_setaffinity reads a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Which CPUs the receiver and the load generator get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinning {
    pub receiver: Vec<usize>,
    pub load: Vec<usize>,
}

impl Pinning {
    /// The receiver on the first allowed CPU, the load on the others; `None` with fewer
    /// than two CPUs (nothing to separate).
    pub fn split() -> Option<Pinning> {
        let cpus = allowed_cpus();
        if cpus.len() < 2 {
            return None;
        }
        Some(Pinning {
            receiver: vec![cpus[0]],
            load: cpus[1..].to_vec(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "receiver on CPU {:?}, load generator on CPU {:?}",
            self.receiver, self.load
        )
    }
}

/// Lets the calling thread run as soon as it is runnable, ahead of the sender threads
/// that share its CPU: real-time FIFO priority 1 if allowed, else the lowest nice value
/// allowed. The receivers' output readers use it, so that time stamps are taken when a
/// line is written, not when a reader gets its turn among hundreds of senders (a reader
/// that falls behind also fills the receiver's stdout pipe, which distorts the receiver).
/// Returns what was obtained.
pub fn prefer_this_thread() -> &'static str {
    // SAFETY: scheduling calls on the calling thread (tid 0), with a param struct we own.
    unsafe {
        let param = libc::sched_param { sched_priority: 1 };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 {
            return "fifo";
        }
        for nice in [-20, -10, -5] {
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 {
                return "nice";
            }
        }
    }
    "normal"
}

/// Asks the kernel to wake the calling thread from a sleep within 1 µs of when asked,
/// not up to 50 µs later (the default timer slack): the paced writer's lateness would
/// count as latency.
pub fn precise_timers() {
    // SAFETY: prctl with an integer argument (nanoseconds) on the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
    }
}
