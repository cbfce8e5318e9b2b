//! Several hosts: real `p2pchat` nodes in Linux network namespaces that each test creates
//! for itself, so that a node's address is not loopback and the socket's source IP differs
//! from host to host (PROTOCOL.md, "Identity").
//!
//! Topology, per test (names carry the process id and the test's tag):
//!
//! ```text
//!   h1 (10.213.0.1) eth0 ─┐
//!   h2 (10.213.0.2) eth0 ─┼─ p1/p2/p3 ── br0   (bridge in its own namespace)
//!   h3 (10.213.0.3) eth0 ─┘
//! ```
//!
//! The veth pairs are created directly inside the namespaces, so nothing is added to the
//! machine's own network namespace, and no traffic leaves the test's namespaces: 10.213.0.0/24
//! exists only there. [`Net`]'s `Drop` deletes the veth pairs and the namespaces, also when a
//! test panics. Without root, without `ip`, or when `ip netns add` fails (a container without
//! the permission), each test prints `SKIPPED: <reason>` and passes.
//!
//! Raw TCP (a fake peer, a forger) runs in this process on a thread that has joined the
//! namespace with `setns`: a socket belongs to the namespace it was created in.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIN, Node, SOON, accept_one};
use serde_json::{Value, json};

/// The three hosts' addresses (a private range that exists only inside the namespaces).
const SUBNET: &str = "10.213.0";
/// Prefix of every namespace these tests create (then the process id).
const PREFIX: &str = "p2pchat-test-";

/// Where the namespaces of `ip netns` live.
const NETNS_DIR: &str = "/run/netns";

fn find_ip() -> Option<PathBuf> {
    let fixed = Path::new("/usr/sbin/ip");
    if fixed.is_file() {
        return Some(fixed.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ip"))
            .find(|p| p.is_file())
    })
}

/// Runs `ip ARGS`, returning its combined output as the error.
fn run_ip(ip: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ip.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces left by an earlier run of these tests that was killed before its
/// guards ran (their process id is no longer alive). Never touches anyone else's.
fn reap_stale(ip: &Path) {
    let Ok(list) = run_ip(ip, &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_ip(ip, &["netns", "del", name]);
        }
    }
}

/// Three hosts on one bridge, each in its own namespace. Deletes everything on drop.
struct Net {
    ip: PathBuf,
    /// Namespaces created so far (bridge first), deleted on drop.
    created: Vec<String>,
    hosts: [String; 3],
    bridge: String,
}

impl Net {
    /// Builds the topology, or returns why it cannot be built here (the test then skips).
    fn setup(tag: &str) -> Option<Net> {
        match Net::try_setup(tag) {
            Ok(net) => Some(net),
            Err(reason) => {
                eprintln!("SKIPPED: {tag}: {reason}");
                None
            }
        }
    }

    fn try_setup(tag: &str) -> Result<Net, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: network namespaces need CAP_SYS_ADMIN".into());
        }
        let ip = find_ip().ok_or("`ip` (iproute2) not found in /usr/sbin or PATH")?;
        reap_stale(&ip);
        let base = format!("{PREFIX}{}-{tag}", std::process::id());
        let mut net = Net {
            ip,
            created: Vec::new(),
            hosts: ["h1", "h2", "h3"].map(|h| format!("{base}-{h}")),
            bridge: format!("{base}-br"),
        };
        // From here on, a failure drops `net`, which deletes what was created.
        let all: Vec<String> = std::iter::once(net.bridge.clone())
            .chain(net.hosts.iter().cloned())
            .collect();
        for ns in &all {
            net.ip(&["netns", "add", ns])
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            net.created.push(ns.clone());
            net.ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // `ip netns exec` also needs to mount a fresh /sys: check it works here.
        net.ip(&[
            "netns",
            "exec",
            &net.hosts[0],
            &net.ip.to_string_lossy(),
            "link",
        ])
        .map_err(|e| format!("cannot run a program in a network namespace: {e}"))?;
        let br = net.bridge.clone();
        net.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        net.ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, ns) in net.hosts.clone().iter().enumerate() {
            let port = format!("p{}", i + 1);
            let addr = format!("{}/24", host_ip(i));
            let veth = ["type", "veth", "peer", "name", &port, "netns", &br];
            net.ip(&[&["-n", ns, "link", "add", "eth0"][..], &veth].concat())?;
            net.ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            net.ip(&["-n", &br, "link", "set", &port, "up"])?;
            net.ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            net.ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        for i in 0..3 {
            net.wait_link_up(i)?;
        }
        Ok(net)
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run_ip(&self.ip, args)
    }

    /// `ip -n HOST ARGS`, which must succeed.
    fn host_ip_cmd(&self, host: usize, args: &[&str]) {
        let mut all = vec!["-n", self.hosts[host].as_str()];
        all.extend_from_slice(args);
        self.ip(&all).unwrap();
    }

    fn wait_link_up(&self, host: usize) -> Result<(), String> {
        let end = Instant::now() + SOON;
        loop {
            let out = self.ip(&["-n", &self.hosts[host], "-o", "link", "show", "eth0"])?;
            if out.contains("LOWER_UP") && out.contains("state UP") {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!("eth0 in h{} never came up: {out}", host + 1));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `p2pchat` in `host`, listening on every IPv4 address there.
    fn node(&self, host: usize, name: &str, extra: &[&str]) -> Node {
        self.node_on(host, name, "0.0.0.0", extra)
    }

    /// Starts `p2pchat` in `host`, listening on `bind` (`::`: IPv6 and IPv4).
    fn node_on(&self, host: usize, name: &str, bind: &str, extra: &[&str]) -> Node {
        let mut cmd = Command::new(&self.ip);
        cmd.env("XDG_CONFIG_HOME", common::config_home())
            .args(["netns", "exec", &self.hosts[host], BIN])
            .args([
                "--name", name, "--port", "0", "--bind", bind, "--json", "-v",
            ])
            .args(extra)
            .env_remove("P2PCHAT_NAME")
            .env_remove("P2PCHAT_PORT")
            .stdin(Stdio::piped());
        let node = Node::spawn(name, cmd);
        let listening = &node.seen[0];
        let want = SocketAddr::new(bind.parse().unwrap(), node.port);
        assert_eq!(listening["addr"], want.to_string(), "{listening}");
        node
    }

    /// Runs `f` on a thread that has joined `host`'s network namespace; sockets it creates
    /// stay in that namespace wherever they are used afterwards.
    fn in_host<T: Send + 'static>(&self, host: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("{NETNS_DIR}/{}", self.hosts[host]);
        thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a descriptor we hold; it only changes this thread's namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// A listener on a free port of `host`'s address, as a fake legacy peer.
    fn listener(&self, host: usize) -> (TcpListener, u16) {
        let l = self.in_host(host, move || TcpListener::bind((host_ip(host), 0)).unwrap());
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    /// Sends one raw legacy message from `host` (connect, write, half-close, read to the
    /// end). Returns whether the receiver then closed cleanly.
    fn send_raw(&self, host: usize, to: SocketAddr, payload: &[u8]) -> bool {
        let payload = payload.to_vec();
        let s = self.in_host(host, move || TcpStream::connect_timeout(&to, SOON).unwrap());
        let mut s = s;
        s.set_read_timeout(Some(SOON)).unwrap();
        s.write_all(&payload).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).is_ok()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth ends in it (and so their peers); deleting
        // the links first makes that immediate even if something still holds a namespace.
        for ns in &self.hosts {
            if self.created.contains(ns) {
                let _ = self.ip(&["-n", ns, "link", "del", "eth0"]);
            }
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = self.ip(&["netns", "del", ns]) {
                eprintln!("warning: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// The address of host `i` (0-based): 10.213.0.1, .2, .3.
fn host_ip(i: usize) -> String {
    format!("{SUBNET}.{}", i + 1)
}

fn sock(host: usize, port: u16) -> SocketAddr {
    format!("{}:{port}", host_ip(host)).parse().unwrap()
}

/// Panics with the node's history if it has exited (rather than with a bare broken pipe).
fn check_alive(node: &mut Node) {
    if let Some(status) = node.child.try_wait().unwrap() {
        node.drain(SOON);
        panic!(
            "{} exited unexpectedly ({status}); events: {:#?}\nstderr:\n{}",
            node.name,
            node.seen,
            node.stderr_text()
        );
    }
}

/// Types one line into a node that must still be running.
fn say(node: &mut Node, line: &str) {
    check_alive(node);
    node.type_line(line);
}

fn peer_list(node: &mut Node) -> Vec<Value> {
    check_alive(node);
    node.peers()
}

fn quit(node: &mut Node) {
    check_alive(node);
    node.quit();
}

/// Waits until every predicate has matched some event from now on, in any order.
fn expect_all<P: Fn(&Value) -> bool>(node: &mut Node, preds: impl IntoIterator<Item = P>) {
    let left = std::cell::RefCell::new(preds.into_iter().collect::<Vec<P>>());
    let n = left.borrow().len();
    node.expect(&format!("{n} events in any order"), |v| {
        let mut left = left.borrow_mut();
        if let Some(i) = left.iter().position(|p| p(v)) {
            left.swap_remove(i);
        }
        left.is_empty()
    });
}

fn count(node: &Node, event: &str) -> usize {
    node.seen.iter().filter(|v| v["event"] == event).count()
}

fn peer_addrs(peers: &[Value]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = peers
        .iter()
        .map(|p| {
            (
                p["ip"].as_str().unwrap().to_owned(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Case 1: A message crosses hosts: the receiver sees the sender's real address and listening
/// port, and the header the sender wrote carries its real address (the connection's local
/// address), byte for byte.
#[test]
fn messages_cross_hosts_with_real_addresses() {
    let Some(net) = Net::setup("msg") else { return };
    let (raw, raw_port) = net.listener(2);
    let mut alice = net.node(0, "alice", &[]);
    let mut bob = net.node(1, "bob", &[]);

    say(
        &mut alice,
        &format!("/send {}:{} hello from h1", host_ip(1), bob.port),
    );
    let from_alice = [
        ("name", json!("alice")),
        ("ip", json!(host_ip(0))),
        ("port", json!(alice.port)),
    ];
    bob.expect_event("new_peer", &from_alice);
    let mut fields = from_alice.to_vec();
    fields.push(("text", json!("hello from h1")));
    bob.expect_event("message", &fields);
    alice.expect_event(
        "sent",
        &[
            ("name", json!(null)),
            ("ip", json!(host_ip(1))),
            ("port", json!(bob.port)),
            ("kind", json!("text")),
            ("text", json!("hello from h1")),
            ("confirmed", json!(true)),
        ],
    );

    // Bob answers by name: the dial address is alice's socket host and listening port.
    say(&mut bob, "/send alice hi from h2");
    alice.expect_event(
        "message",
        &[
            ("name", json!("bob")),
            ("ip", json!(host_ip(1))),
            ("port", json!(bob.port)),
            ("text", json!("hi from h2")),
        ],
    );
    bob.expect_event(
        "sent",
        &[
            ("name", json!("alice")),
            ("ip", json!(host_ip(0))),
            ("port", json!(alice.port)),
            ("confirmed", json!(true)),
        ],
    );

    // The exact bytes alice writes, as a legacy listener in h3 receives them.
    let reader = thread::spawn(move || accept_one(&raw));
    say(
        &mut alice,
        &format!("/send {}:{raw_port} raw  check", host_ip(2)),
    );
    let (from, bytes) = reader.join().unwrap();
    assert_eq!(
        from.ip().to_string(),
        host_ip(0),
        "source address seen in h3"
    );
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        format!("{}:{} alice raw  check", host_ip(0), alice.port),
        "the header carries h1's real address and alice's listening port"
    );
    alice.expect_event(
        "sent",
        &[
            ("ip", json!(host_ip(2))),
            ("port", json!(raw_port)),
            ("text", json!("raw  check")),
            ("confirmed", json!(true)),
        ],
    );

    // h1's own interface address is this node itself, not a peer.
    let to_myself = format!("/send {}:{} to myself", host_ip(0), alice.port);
    say(&mut alice, &to_myself);
    alice.expect_event(
        "error",
        &[(
            "detail",
            json!(format!("{}:{} is this node itself", host_ip(0), alice.port)),
        )],
    );

    // Headers agreed with the sockets everywhere: no mismatch notice on either side.
    let peers = peer_list(&mut bob);
    assert_eq!(peer_addrs(&peers), [(host_ip(0), alice.port as u64)]);
    assert_eq!(peers[0]["name"], "alice");
    let peers = peer_list(&mut alice);
    assert_eq!(
        peer_addrs(&peers),
        [(host_ip(1), bob.port as u64), (host_ip(2), raw_port as u64)]
    );
    assert_eq!(count(&alice, "address_mismatch"), 0, "{:#?}", alice.seen);
    assert_eq!(count(&bob, "address_mismatch"), 0, "{:#?}", bob.seen);
    quit(&mut alice);
    quit(&mut bob);
}

/// Case 2: One node connects to two others on two other hosts, then quits: both are told, each
/// with the quitter's real address.
#[test]
fn connect_and_quit_across_three_hosts() {
    let Some(net) = Net::setup("conn") else {
        return;
    };
    let mut n1 = net.node(0, "one", &[]);
    let mut n2 = net.node(1, "two", &[]);
    let mut n3 = net.node(2, "three", &[]);
    let n1_addr = format!("{}:{}", host_ip(0), n1.port);

    say(&mut n2, &format!("/send {n1_addr} hi from two"));
    say(&mut n3, &format!("/send {n1_addr} hi from three"));
    expect_all(
        &mut n1,
        [("two", 1, n2.port), ("three", 2, n3.port)].map(|(name, host, port)| {
            move |v: &Value| {
                v["event"] == "message"
                    && v["name"] == name
                    && v["ip"] == host_ip(host)
                    && v["port"] == port
            }
        }),
    );
    say(&mut n1, "/connect all");
    let me = [
        ("name", json!("one")),
        ("ip", json!(host_ip(0))),
        ("port", json!(n1.port)),
    ];
    n2.expect_event("connected_with_you", &me);
    n3.expect_event("connected_with_you", &me);
    // Both connects run at once; they finish in either order.
    expect_all(
        &mut n1,
        [(1, n2.port), (2, n3.port)].map(|(host, port)| {
            move |v: &Value| {
                v["event"] == "sent"
                    && v["ip"] == host_ip(host)
                    && v["port"] == port
                    && v["kind"] == "connect"
                    && v["confirmed"] == true
            }
        }),
    );
    let peers = peer_list(&mut n1);
    assert_eq!(
        peer_addrs(&peers),
        [(host_ip(1), n2.port as u64), (host_ip(2), n3.port as u64)]
    );
    assert!(
        peers.iter().all(|p| p["status"] == "Connected"),
        "{peers:?}"
    );

    let start = Instant::now();
    say(&mut n1, "/quit");
    n2.expect_event("peer_left", &me);
    n3.expect_event("peer_left", &me);
    let status = n1.wait_exit(SOON);
    assert!(status.success(), "{status}");
    assert!(start.elapsed() < SOON);
    n1.drain(SOON); // the rest of its events, up to its exit
    for (host, port) in [(1, n2.port), (2, n3.port)] {
        assert!(
            n1.seen.iter().any(|v| v["event"] == "sent"
                && v["kind"] == "exit"
                && v["ip"] == host_ip(host)
                && v["port"] == port
                && v["confirmed"] == true),
            "exit to h{} not confirmed: {:#?}",
            host + 1,
            n1.seen
        );
    }
    assert!(peer_list(&mut n2).is_empty());
    assert!(peer_list(&mut n3).is_empty());
    quit(&mut n2);
    quit(&mut n3);
}

/// Case 3: The identity rule between real hosts: a forger in h3 claiming to be h1 can neither
/// remove h1 from h2's list nor speak as h1; what it says is filed under its own address.
#[test]
fn forged_header_from_another_host_cannot_impersonate() {
    let Some(net) = Net::setup("forge") else {
        return;
    };
    let mut n1 = net.node(0, "h1name", &[]);
    let mut n2 = net.node(1, "h2name", &[]);
    let n2_sock = sock(1, n2.port);
    let real = [
        ("name", json!("h1name")),
        ("ip", json!(host_ip(0))),
        ("port", json!(n1.port)),
    ];
    let forged = [
        ("name", json!("h1name")),
        ("ip", json!(host_ip(2))),
        ("port", json!(n1.port)),
    ];

    say(&mut n1, &format!("/send {n2_sock} hello"));
    n2.expect_event("message", &real);

    // A forged `exit` claiming h1's address, from h3.
    let claim = format!("{}:{} h1name", host_ip(0), n1.port);
    assert!(net.send_raw(2, n2_sock, format!("{claim} exit").as_bytes()));
    let peers = peer_list(&mut n2);
    assert_eq!(
        peer_addrs(&peers),
        [(host_ip(0), n1.port as u64)],
        "a forged exit removed or added a peer: {:#?}",
        n2.seen
    );
    // It names the entry (h3, h1's port), which does not exist: ignored (PROTOCOL.md:
    // "absent, exit received: nothing"), not even the once-per-peer mismatch notice; only the
    // log says what was claimed.
    let logged = format!(
        "exit from {} (header claims {}) for port {}",
        host_ip(2),
        host_ip(0),
        n1.port
    );
    n2.expect_stderr(&logged);
    let kinds: Vec<&str> = n2
        .seen
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["listening", "new_peer", "message", "peers"]);

    // A forged text: a separate peer keyed by the forger's real address, with a notice.
    assert!(net.send_raw(2, n2_sock, format!("{claim} I am h1").as_bytes()));
    n2.expect_event("new_peer", &forged);
    let mut mismatch = forged.to_vec();
    mismatch.push(("claimed", json!(host_ip(0))));
    n2.expect_event("address_mismatch", &mismatch);
    let mut text = forged.to_vec();
    text.push(("text", json!("I am h1")));
    n2.expect_event("message", &text);
    let peers = peer_list(&mut n2);
    assert_eq!(
        peer_addrs(&peers),
        [(host_ip(0), n1.port as u64), (host_ip(2), n1.port as u64)]
    );

    // The notice is shown once per peer.
    assert!(net.send_raw(2, n2_sock, format!("{claim} still h1").as_bytes()));
    text.pop();
    text.push(("text", json!("still h1")));
    n2.expect_event("message", &text);

    // The forged exit again: now it removes the forger's own entry, and only that.
    assert!(net.send_raw(2, n2_sock, format!("{claim} exit").as_bytes()));
    n2.expect_event("peer_left", &forged);
    let peers = peer_list(&mut n2);
    assert_eq!(peer_addrs(&peers), [(host_ip(0), n1.port as u64)]);
    let mismatches: Vec<&Value> = n2
        .seen
        .iter()
        .filter(|v| v["event"] == "address_mismatch")
        .collect();
    assert_eq!(mismatches.len(), 1, "{mismatches:#?}");
    let left: Vec<&Value> = n2
        .seen
        .iter()
        .filter(|v| v["event"] == "peer_left")
        .collect();
    assert_eq!(left.len(), 1, "{left:#?}");

    // The real h1 is still h1 to h2, and its own exit still works.
    say(&mut n1, &format!("/send {n2_sock} really me"));
    let mut text = real.to_vec();
    text.push(("text", json!("really me")));
    n2.expect_event("message", &text);
    quit(&mut n1);
    n2.expect_event("peer_left", &real);
    assert!(peer_list(&mut n2).is_empty());
    quit(&mut n2);
}

/// Case 4: A host's link goes down: a send there fails within its deadline, does not hold up a
/// send to another host meanwhile, and the node keeps serving; the link comes back and
/// sends there work again. Also a host with no route: fails at once, as `io`.
#[test]
fn link_down_fails_the_send_in_time_and_nothing_hangs() {
    let Some(net) = Net::setup("down") else {
        return;
    };
    // One connection per message (--legacy-only): what is tested is how each new
    // connection fails. With the fast path, the last message would ride the stream
    // established by "back again" (an established socket keeps its route) and arrive.
    let mut n1 = net.node(0, "one", &["--timeout", "2", "--legacy-only"]);
    let mut n2 = net.node(1, "two", &[]);
    let mut n3 = net.node(2, "three", &[]);
    let to2 = sock(1, n2.port);
    let to3 = sock(2, n3.port);

    say(&mut n1, &format!("/send {to3} before"));
    n3.expect_event(
        "message",
        &[("text", json!("before")), ("ip", json!(host_ip(0)))],
    );
    n1.expect_event(
        "sent",
        &[("text", json!("before")), ("confirmed", json!(true))],
    );

    net.host_ip_cmd(2, &["link", "set", "eth0", "down"]);
    let start = Instant::now();
    say(&mut n1, &format!("/send {to3} into the void"));
    say(&mut n1, &format!("/send {to2} meanwhile"));
    n2.expect_event(
        "message",
        &[
            ("ip", json!(host_ip(0))),
            ("port", json!(n1.port)),
            ("text", json!("meanwhile")),
        ],
    );
    let failed = n1.expect_within("send_failed to h3", Duration::from_secs(10), |v| {
        v["event"] == "send_failed" && v["ip"] == host_ip(2)
    });
    let took = start.elapsed();
    eprintln!(
        "link down: {} after {took:?}: {}",
        failed["reason"], failed["detail"]
    );
    // `start` came before the send, so its 2 s deadline ends after `start` + 2 s.
    assert!(
        took >= Duration::from_millis(1500),
        "failed before its deadline: {took:?}"
    );
    assert_eq!(failed["port"], json!(n3.port));
    assert_eq!(failed["text"], "into the void");
    assert!(
        failed["reason"] == "connect_timeout" || failed["reason"] == "unreachable",
        "{failed}"
    );
    // The send to h2 finished first: one slow host holds up no other.
    let pos = |pred: &dyn Fn(&Value) -> bool| n1.seen.iter().position(pred).unwrap();
    let sent2 = pos(&|v| v["event"] == "sent" && v["text"] == "meanwhile");
    let failed3 = pos(&|v| v["event"] == "send_failed" && v["text"] == "into the void");
    assert!(sent2 < failed3, "{:#?}", n1.seen);

    // Still serving: a message to h2 after the failure.
    say(&mut n1, &format!("/send {to2} after"));
    n2.expect_event("message", &[("text", json!("after"))]);
    n1.expect_event(
        "sent",
        &[("text", json!("after")), ("confirmed", json!(true))],
    );
    // And typing is answered.
    assert_eq!(peer_list(&mut n1).len(), 2);

    // The link comes back: sends to h3 work again.
    net.host_ip_cmd(2, &["link", "set", "eth0", "up"]);
    net.wait_link_up(2).unwrap();
    say(&mut n1, &format!("/send {to3} back again"));
    n3.expect_event("message", &[("text", json!("back again"))]);
    assert_eq!(count(&n3, "message"), 2, "{:#?}", n3.seen);

    // No route at all to h3 from h1: the kernel says so at once; reported as `io`.
    net.host_ip_cmd(
        0,
        &["route", "add", "unreachable", &format!("{}/32", host_ip(2))],
    );
    // The reason says the kernel refused it, not that its 2 s deadline passed.
    let start = Instant::now();
    say(&mut n1, &format!("/send {to3} no route"));
    let failed = n1.expect_event("send_failed", &[("text", json!("no route"))]);
    eprintln!(
        "no route: {} after {:?}: {}",
        failed["reason"],
        start.elapsed(),
        failed["detail"]
    );
    assert_eq!(failed["reason"], "unreachable", "{failed}");
    say(&mut n1, &format!("/send {to2} last"));
    n2.expect_event("message", &[("text", json!("last"))]);
    net.host_ip_cmd(
        0,
        &["route", "del", "unreachable", &format!("{}/32", host_ip(2))],
    );
    say(&mut n1, &format!("/send {to3} route back"));
    n3.expect_event("message", &[("text", json!("route back"))]);

    // Quit while h3 is down again: h2 is told at once, and the quit is bounded by one
    // timeout (2 s) however h3's exit ends.
    net.host_ip_cmd(2, &["link", "set", "eth0", "down"]);
    let start = Instant::now();
    say(&mut n1, "/quit");
    n2.expect_event(
        "peer_left",
        &[("ip", json!(host_ip(0))), ("port", json!(n1.port))],
    );
    let status = n1.wait_exit(SOON);
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "quit took {took:?}");
    n1.drain(SOON);
    eprintln!("quit with h3 down took {took:?}");
    let exit3: Vec<&Value> = n1
        .seen
        .iter()
        .filter(|v| v["kind"] == "exit" && v["ip"] == host_ip(2))
        .collect();
    assert_eq!(exit3.len(), 1, "{:#?}", n1.seen);
    assert_eq!(exit3[0]["event"], "send_failed", "{:#?}", exit3);
    assert!(
        ["connect_timeout", "unreachable", "quit"].contains(&exit3[0]["reason"].as_str().unwrap()),
        "{exit3:#?}"
    );
    assert!(peer_list(&mut n2).is_empty());
    quit(&mut n2);
    // h3 never heard of the quit; back up, its own quit finds nobody at h1 (refused).
    net.host_ip_cmd(2, &["link", "set", "eth0", "up"]);
    net.wait_link_up(2).unwrap();
    say(&mut n3, "/quit");
    assert!(n3.wait_exit(SOON).success());
    n3.drain(SOON);
    assert!(
        n3.seen.iter().any(|v| v["event"] == "send_failed"
            && v["kind"] == "exit"
            && v["ip"] == host_ip(0)
            && v["reason"] == "refused"),
        "{:#?}",
        n3.seen
    );
}

/// Case 5: IPv6 link-local peers. A link-local address names a host only with the interface
/// it is reached through: the user types it with its zone (`[fe80::2%eth0]:PORT`), and a
/// node answers a peer it learnt from a link-local source through the interface the
/// message came in on (before, the zone was dropped and the answer failed with "Invalid
/// argument").
#[test]
fn link_local_peers_are_reached_through_their_interface() {
    let Some(net) = Net::setup("ll") else { return };
    // Fixed link-local addresses, usable at once (no duplicate address detection).
    for (host, addr) in [(0, "fe80::1/64"), (1, "fe80::2/64")] {
        net.host_ip_cmd(host, &["addr", "add", addr, "dev", "eth0", "nodad"]);
    }
    let mut alice = net.node_on(0, "alice", "::", &[]);
    let mut bob = net.node_on(1, "bob", "::", &[]);

    // Without its zone the address is refused, with the fix; with it, the message goes.
    say(&mut alice, &format!("/send [fe80::2]:{} hello", bob.port));
    let e = alice.expect_event("error", &[]);
    assert!(
        e["detail"].as_str().unwrap().contains("add its interface"),
        "{e}"
    );
    say(
        &mut alice,
        &format!("/send [fe80::2%eth0]:{} hello over the link", bob.port),
    );
    let link_local = |v: &Value| {
        v["ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("fe80::") && ip.contains('%'))
    };
    let alice_port = alice.port;
    let seen = bob.expect("alice's message from a link-local address", |v| {
        v["event"] == "message" && v["name"] == "alice" && v["port"] == alice_port
    });
    assert!(link_local(&seen), "{seen}");
    alice.expect_event(
        "sent",
        &[
            ("text", json!("hello over the link")),
            ("confirmed", json!(true)),
        ],
    );

    // Bob answers by name: through the interface alice's message came in on.
    say(&mut bob, "/send alice hi back");
    let back = alice.expect_event(
        "message",
        &[("name", json!("bob")), ("text", json!("hi back"))],
    );
    assert!(link_local(&back), "{back}");
    bob.expect_event(
        "sent",
        &[
            ("name", json!("alice")),
            ("text", json!("hi back")),
            ("confirmed", json!(true)),
        ],
    );
    assert_eq!(count(&bob, "send_failed"), 0, "{:#?}", bob.seen);
    quit(&mut alice);
    quit(&mut bob);
}
