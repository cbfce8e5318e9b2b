//! The event-driven sender: the same workload as [`crate::sender::run`], but each load
//! CPU runs one thread with one epoll (mio) that keeps its share of the `concurrency`
//! connections in flight. A "slot" stands for one concurrent sender: it owns a fixed set
//! of peers (the same [`Spread::schedule`]) and sends their messages one at a time, in
//! order, each on its own connection (connect, write, shut down writing, wait for the
//! receiver to close), with a deadline per message.
//!
//! Compared with one blocking thread per concurrent sender, it spends no time switching
//! between hundreds of threads, so one CPU sends more: the receivers are pushed harder.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::sender::{Failure, Plan, Record, Sent};
use crate::workload::{self, Spread};

enum Stage {
    /// Connecting, or connected with the message not yet (all) written.
    Writing { written: usize },
    /// Written and half-closed: waiting for the receiver to close.
    AwaitingClose,
}

struct InFlight {
    stream: TcpStream,
    stage: Stage,
    payload: Vec<u8>,
    peer: u32,
    seq: u32,
    start: Instant,
    deadline: Instant,
}

struct Slot {
    schedule: Vec<(u32, u32)>,
    next: usize,
    current: Option<InFlight>,
}

/// Runs the workload with `threads` event loops (at least one, at most one per slot).
pub fn run(plan: &Plan, spread: &Spread, threads: usize) -> Sent {
    let slots = plan.concurrency.clamp(1, spread.peers().max(1));
    let threads = threads.clamp(1, slots);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let schedules: Vec<Vec<(u32, u32)>> = (t..slots)
                .step_by(threads)
                .map(|s| spread.schedule(s, slots))
                .collect();
            let (plan, barrier) = (plan.clone(), barrier.clone());
            std::thread::Builder::new()
                .name(format!("sender-loop-{t}"))
                .spawn(move || {
                    barrier.wait();
                    event_loop(&plan, schedules)
                })
                .expect("start a sender thread")
        })
        .collect();
    Sent::join(slots, handles)
}

fn event_loop(plan: &Plan, schedules: Vec<Vec<(u32, u32)>>) -> Vec<Record> {
    let total: usize = schedules.iter().map(Vec::len).sum();
    let mut records = Vec::with_capacity(total);
    let mut poll = Poll::new().expect("create a poll");
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Slot> = schedules
        .into_iter()
        .map(|schedule| Slot {
            schedule,
            next: 0,
            current: None,
        })
        .collect();
    let to = SocketAddr::V4(plan.to);
    let mut scratch = [0u8; 512];
    for (i, slot) in slots.iter_mut().enumerate() {
        start_next(&mut poll, slot, i, to, plan, &mut records);
    }
    let mut active = slots.iter().filter(|s| s.current.is_some()).count();
    while active > 0 {
        let now = Instant::now();
        let wake = slots
            .iter()
            .filter_map(|s| s.current.as_ref().map(|c| c.deadline))
            .min();
        let timeout = wake.map(|w| w.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            panic!("sender poll failed: {e}");
        }
        let mut ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        let now = Instant::now();
        ready.extend(
            slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.current.as_ref().is_some_and(|c| c.deadline <= now))
                .map(|(i, _)| i),
        );
        for i in ready {
            if let Some(result) = drive(&mut slots[i], &mut scratch, now) {
                let c = slots[i].current.take().expect("in flight");
                records.push(Record {
                    peer: c.peer,
                    seq: c.seq,
                    start: c.start,
                    end: Instant::now(),
                    result,
                });
                drop(c.stream); // closing removes it from the poll
                start_next(&mut poll, &mut slots[i], i, to, plan, &mut records);
                if slots[i].current.is_none() {
                    active -= 1;
                }
            }
        }
    }
    records
}

/// Starts the slot's next message (recording at once those that fail to start).
fn start_next(
    poll: &mut Poll,
    slot: &mut Slot,
    index: usize,
    to: SocketAddr,
    plan: &Plan,
    records: &mut Vec<Record>,
) {
    while let Some(&(peer, seq)) = slot.schedule.get(slot.next) {
        slot.next += 1;
        let text = workload::text(peer, seq, plan.size);
        let payload = workload::payload(plan.base_port + peer as u16, peer, &text);
        let start = Instant::now();
        let fail = |f: Failure| Record {
            peer,
            seq,
            start,
            end: Instant::now(),
            result: Err(f),
        };
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                records.push(fail(connect_failure(&e)));
                continue;
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if poll
            .registry()
            .register(&mut stream, Token(index), interest)
            .is_err()
        {
            records.push(fail(Failure::Connect));
            continue;
        }
        slot.current = Some(InFlight {
            stream,
            stage: Stage::Writing { written: 0 },
            payload,
            peer,
            seq,
            start,
            deadline: start + plan.timeout,
        });
        return;
    }
}

fn connect_failure(e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Failure::ConnectRefused,
        Some(libc::EADDRNOTAVAIL) => Failure::NoLocalPort,
        Some(libc::ETIMEDOUT) => Failure::ConnectTimeout,
        _ => Failure::Connect,
    }
}

/// Advances the slot's send as far as the socket allows; `Some(result)` when it is over.
fn drive(slot: &mut Slot, scratch: &mut [u8], now: Instant) -> Option<Result<(), Failure>> {
    let c = slot.current.as_mut()?;
    loop {
        match c.stage {
            Stage::Writing { written } => {
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    return Some(Err(connect_failure(&e)));
                }
                match c.stream.write(&c.payload[written..]) {
                    Ok(n) if written + n == c.payload.len() => {
                        if c.stream.shutdown(Shutdown::Write).is_err() {
                            return Some(Err(Failure::Reset));
                        }
                        c.stage = Stage::AwaitingClose;
                    }
                    Ok(n) => {
                        c.stage = Stage::Writing {
                            written: written + n,
                        }
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::NotConnected =>
                    {
                        if now >= c.deadline {
                            return Some(Err(if written == 0 {
                                Failure::ConnectTimeout
                            } else {
                                Failure::WriteTimeout
                            }));
                        }
                        return None;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Some(Err(match e.kind() {
                            io::ErrorKind::ConnectionRefused => Failure::ConnectRefused,
                            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                                Failure::Reset
                            }
                            _ => Failure::Write,
                        }));
                    }
                }
            }
            Stage::AwaitingClose => match c.stream.read(scratch) {
                Ok(0) => return Some(Ok(())),
                Ok(_) => {} // an answer on the socket: ignored
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if now >= c.deadline {
                        return Some(Err(Failure::CloseTimeout));
                    }
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Some(Err(Failure::Reset));
                }
                Err(_) => return Some(Err(Failure::Read)),
            },
        }
    }
}
