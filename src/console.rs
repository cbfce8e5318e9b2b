//! What the user types: the original's numbered menu and one-line `/` commands.
//!
//! [`Console`] is a pure state machine: feed it one line at a time, get back commands for
//! the peer table and text to show (prompts, hints). The menu's questions ("Enter
//! recipient's IP address: " ...) are states, so typing `1` walks the same steps as the
//! original, and a script can type the same answers on the following lines.

use std::net::SocketAddr;

use crate::address::{self, Host, HostError, parse_port};
use crate::peer_table::{Target, Which};

pub const MENU: &str = "***** Menu *****\n1. Send message\n2. Query active peers\n3. Connect to active peers\n0. Quit\n";
pub const CHOICE: &str = "Enter choice: ";
const ASK_IP: &str = "Enter recipient's IP address: ";
const ASK_PORT: &str = "Enter recipient's port number: ";
const ASK_TEXT: &str = "Enter your message (type exit to disconnect): ";
const ASK_INDEX: &str = "Enter the index of the peer to connect to (Enter 0 to connect to all): ";

pub const HELP: &str = "\
Commands:
  /send ADDR TEXT     send TEXT; ADDR is IP:PORT, #N from the peer list, or a peer's name
  /peers              list active peers
  /connect [all]      send 'connect' to every peer not yet connected
  /connect #N ...     send 'connect' to the listed peers
  /quit               send 'exit' to every peer and leave (also: end of input, Ctrl-D)
  /help               this text
Or use the menu: 1 send message, 2 query active peers, 3 connect to active peers, 0 quit.
";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        target: Target,
        text: String,
    },
    Peers,
    /// Show the peers not yet connected (menu 3's list).
    ConnectCandidates,
    Connect(Which),
    Quit,
}

/// One thing the console wants done or shown, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Run(Command),
    /// A question, shown without a newline (only when a person is typing).
    Prompt(&'static str),
    /// A full line or block of text for the user (help).
    Say(String),
    /// What is wrong with what was typed, and what to do instead.
    Mistake(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum State {
    #[default]
    Choice,
    AskIp,
    AskPort(Host),
    AskText(SocketAddr),
    AskIndex,
}

/// The menu and command-line state machine. See the module documentation.
#[derive(Debug, Default)]
pub struct Console {
    state: State,
}

impl Console {
    pub fn new() -> Self {
        Console::default()
    }

    /// Is the console in the middle of a menu question?
    pub fn in_dialog(&self) -> bool {
        self.state != State::Choice
    }

    /// The question currently awaiting an answer.
    pub fn current_prompt(&self) -> &'static str {
        match self.state {
            State::Choice => CHOICE,
            State::AskIp => ASK_IP,
            State::AskPort(_) => ASK_PORT,
            State::AskText(_) => ASK_TEXT,
            State::AskIndex => ASK_INDEX,
        }
    }

    /// Feeds one line (without its newline). `candidates` is how many peers are not yet
    /// connected, so menu 3 can say there are none without asking for an index.
    pub fn feed(&mut self, line: &str, candidates: usize) -> Vec<Reply> {
        let line = line.trim_end_matches(['\r', '\n']);
        let state = std::mem::take(&mut self.state);
        let mut replies = match state {
            State::Choice => self.choice(line, candidates),
            State::AskIp => self.ask_ip(line.trim()),
            State::AskPort(host) => match parse_port(line.trim()) {
                Some(port) => self.ask(State::AskText(host.with_port(port))),
                None => vec![mistake(format!(
                    "{:?} is not a port number (1-65535)",
                    line.trim()
                ))],
            },
            State::AskText(addr) => match line {
                "" => vec![mistake("empty message: nothing sent".to_owned())],
                text => vec![Reply::Run(Command::Send {
                    target: Target::Addr(addr),
                    text: text.to_owned(),
                })],
            },
            State::AskIndex => match line.trim().parse::<usize>() {
                Ok(0) => vec![Reply::Run(Command::Connect(Which::All))],
                Ok(i) => vec![Reply::Run(Command::Connect(Which::Candidate(i)))],
                Err(_) => vec![mistake(format!("{:?} is not an index", line.trim()))],
            },
        };
        if self.state == State::Choice {
            replies.push(Reply::Prompt(CHOICE));
        }
        replies
    }

    fn ask(&mut self, next: State) -> Vec<Reply> {
        self.state = next;
        vec![Reply::Prompt(self.current_prompt())]
    }

    fn ask_ip(&mut self, line: &str) -> Vec<Reply> {
        if let Ok(addr) = address::parse_socket_addr(line) {
            return self.ask(State::AskText(addr));
        }
        match address::parse_host(line) {
            Ok(host) => self.ask(State::AskPort(host)),
            Err(HostError::NotAnIp) => vec![mistake(format!("{line:?} is not an IP address"))],
            Err(e) => vec![mistake(format!("{line:?}: {e}"))],
        }
    }

    fn choice(&mut self, line: &str, candidates: usize) -> Vec<Reply> {
        match line.trim() {
            "" => vec![],
            "1" => self.ask(State::AskIp),
            "2" => vec![Reply::Run(Command::Peers)],
            "3" if candidates == 0 => vec![Reply::Run(Command::ConnectCandidates)],
            "3" => {
                let mut r = vec![Reply::Run(Command::ConnectCandidates)];
                r.extend(self.ask(State::AskIndex));
                r
            }
            "0" => vec![Reply::Run(Command::Quit)],
            t if t.starts_with('/') => parse_command(line.trim_start()),
            _ => vec![mistake(
                "unknown choice: type 1, 2, 3 or 0, or /help for commands".to_owned(),
            )],
        }
    }
}

fn mistake(s: String) -> Reply {
    Reply::Mistake(s)
}

/// Parses a `/` command line.
fn parse_command(line: &str) -> Vec<Reply> {
    let (word, raw) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = raw.trim();
    let cmd = match word {
        // The text keeps its spaces, trailing ones included, as the menu's does.
        "/send" | "/s" | "/msg" => return parse_send(raw.trim_start()),
        "/peers" | "/list" | "/p" => Command::Peers,
        "/connect" | "/c" => return parse_connect(rest),
        "/quit" | "/q" => Command::Quit,
        "/help" | "/h" | "/?" => return vec![Reply::Say(HELP.trim_end().to_owned())],
        other => {
            return vec![mistake(format!("unknown command {other:?}: type /help"))];
        }
    };
    if !rest.is_empty() {
        return vec![mistake(format!("{word} takes no arguments"))];
    }
    vec![Reply::Run(cmd)]
}

fn parse_send(rest: &str) -> Vec<Reply> {
    let Some((addr, text)) = rest.split_once(char::is_whitespace) else {
        return vec![mistake(
            "usage: /send ADDR TEXT (ADDR: IP:PORT, #N or a name)".to_owned(),
        )];
    };
    let text = text.trim_start();
    if text.is_empty() {
        return vec![mistake(
            "usage: /send ADDR TEXT: the text is missing".to_owned(),
        )];
    }
    match parse_target(addr) {
        Ok(target) => vec![Reply::Run(Command::Send {
            target,
            text: text.to_owned(),
        })],
        Err(why) => vec![mistake(why)],
    }
}

fn parse_connect(rest: &str) -> Vec<Reply> {
    if rest.is_empty() || rest == "all" || rest == "0" {
        return vec![Reply::Run(Command::Connect(Which::All))];
    }
    let mut indices = Vec::new();
    for word in rest.split_whitespace() {
        match word.strip_prefix('#').unwrap_or(word).parse::<usize>() {
            Ok(i) if i > 0 => indices.push(i),
            _ => {
                return vec![mistake(format!(
                    "{word:?} is not a peer number like #1: see /peers"
                ))];
            }
        }
    }
    vec![Reply::Run(Command::Connect(Which::Indices(indices)))]
}

/// `IP:PORT`, `[v6]:PORT`, `[v6%zone]:PORT`, `localhost:PORT`, `#N`, or a name.
pub fn parse_target(word: &str) -> Result<Target, String> {
    if let Some(n) = word.strip_prefix('#') {
        return match n.parse::<usize>() {
            Ok(i) if i > 0 => Ok(Target::Index(i)),
            _ => Err(format!("{word:?} is not a peer number like #1")),
        };
    }
    if word.contains(':') {
        return address::parse_socket_addr(word).map(Target::Addr);
    }
    Ok(Target::Name(word.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(replies: &[Reply]) -> Vec<Command> {
        replies
            .iter()
            .filter_map(|r| match r {
                Reply::Run(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_target_is_a_number_an_address_or_a_name() {
        // What is wrong with an address is said by `address` (tested there).
        let err = |w: &str| parse_target(w).unwrap_err();
        assert!(err("nosuchhost.invalid:80").contains("\"nosuchhost.invalid\" is not an IP"));
        assert!(err("[fe80::1%nosuchif0]:9000").contains("no network interface"));
        assert_eq!(parse_target("#3"), Ok(Target::Index(3)));
        assert_eq!(
            parse_target("localhost:9000"),
            Ok(Target::Addr(addr("127.0.0.1:9000")))
        );
        assert_eq!(parse_target("bob"), Ok(Target::Name("bob".into())));
    }

    #[test]
    fn menu_1_walks_ip_port_message() {
        let mut c = Console::new();
        assert_eq!(c.feed("1", 0), vec![Reply::Prompt(ASK_IP)]);
        assert_eq!(c.feed("127.0.0.1", 0), vec![Reply::Prompt(ASK_PORT)]);
        assert_eq!(c.feed("9001", 0), vec![Reply::Prompt(ASK_TEXT)]);
        let r = c.feed("hello there ", 0);
        assert_eq!(
            runs(&r),
            vec![Command::Send {
                target: Target::Addr(addr("127.0.0.1:9001")),
                text: "hello there ".into()
            }]
        );
        assert_eq!(r.last(), Some(&Reply::Prompt(CHOICE)));
        assert!(!c.in_dialog());
    }

    #[test]
    fn a_link_local_address_takes_its_zone_at_the_menu_and_in_send() {
        let lo = crate::os::interface_index("lo").expect("lo exists");
        let linky = |port: u16| -> SocketAddr {
            std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), port, 0, lo).into()
        };
        let mut c = Console::new();
        c.feed("1", 0);
        assert_eq!(c.feed("fe80::1%lo", 0), vec![Reply::Prompt(ASK_PORT)]);
        c.feed("9000", 0);
        assert_eq!(
            runs(&c.feed("hi", 0)),
            vec![Command::Send {
                target: Target::Addr(linky(9000)),
                text: "hi".into()
            }]
        );
        c.feed("1", 0);
        assert_eq!(
            c.feed("[fe80::1%lo]:9001", 0),
            vec![Reply::Prompt(ASK_TEXT)]
        );
        assert_eq!(
            runs(&c.feed("hi", 0)),
            vec![Command::Send {
                target: Target::Addr(linky(9001)),
                text: "hi".into()
            }]
        );
        assert_eq!(
            runs(&c.feed("/send [fe80::1%lo]:9002 yo", 0)),
            vec![Command::Send {
                target: Target::Addr(linky(9002)),
                text: "yo".into()
            }]
        );
        // A zone that names no interface is explained, at the menu and in /send.
        c.feed("1", 0);
        let r = c.feed("fe80::1%nosuchif0", 0);
        assert!(
            matches!(&r[0], Reply::Mistake(s) if s.contains("no network interface is called")),
            "{r:?}"
        );
        assert!(!c.in_dialog());
        let r = c.feed("/send [fe80::1%nosuchif0]:9000 x", 0);
        assert!(
            matches!(&r[0], Reply::Mistake(s) if s.contains("no network interface is called")),
            "{r:?}"
        );
    }

    #[test]
    fn menu_mistakes_return_to_the_menu_with_a_hint() {
        let mut c = Console::new();
        c.feed("1", 0);
        let r = c.feed("not-an-ip", 0);
        assert!(matches!(&r[0], Reply::Mistake(s) if s.contains("not an IP")));
        assert!(!c.in_dialog());
        c.feed("1", 0);
        c.feed("::1", 0);
        assert!(matches!(&c.feed("70000", 0)[0], Reply::Mistake(_)));
        c.feed("1", 0);
        c.feed("10.0.0.1", 0);
        c.feed("5", 0);
        assert!(runs(&c.feed("", 0)).is_empty());
    }

    #[test]
    fn menu_2_3_0() {
        let mut c = Console::new();
        assert_eq!(runs(&c.feed("2", 0)), vec![Command::Peers]);
        assert_eq!(runs(&c.feed("3", 0)), vec![Command::ConnectCandidates]);
        assert!(!c.in_dialog(), "no index question without candidates");
        let r = c.feed("3", 2);
        assert_eq!(r.last(), Some(&Reply::Prompt(ASK_INDEX)));
        assert_eq!(runs(&c.feed("0", 2)), vec![Command::Connect(Which::All)]);
        c.feed("3", 2);
        assert_eq!(
            runs(&c.feed("2", 2)),
            vec![Command::Connect(Which::Candidate(2))]
        );
        assert_eq!(runs(&c.feed("0", 0)), vec![Command::Quit]);
    }

    #[test]
    fn slash_commands() {
        let mut c = Console::new();
        let send = |c: &mut Console, l: &str| runs(&c.feed(l, 0));
        assert_eq!(
            send(&mut c, "/send 127.0.0.1:9001 hi  there "),
            vec![Command::Send {
                target: Target::Addr(addr("127.0.0.1:9001")),
                text: "hi  there ".into()
            }]
        );
        assert_eq!(
            send(&mut c, "/send [::1]:9 x"),
            vec![Command::Send {
                target: Target::Addr(addr("[::1]:9")),
                text: "x".into()
            }]
        );
        assert_eq!(
            send(&mut c, "/send localhost:9 x"),
            vec![Command::Send {
                target: Target::Addr(addr("127.0.0.1:9")),
                text: "x".into()
            }]
        );
        assert_eq!(
            send(&mut c, "/send #2 x"),
            vec![Command::Send {
                target: Target::Index(2),
                text: "x".into()
            }]
        );
        assert_eq!(
            send(&mut c, "/send bob x"),
            vec![Command::Send {
                target: Target::Name("bob".into()),
                text: "x".into()
            }]
        );
        assert_eq!(send(&mut c, "/peers"), vec![Command::Peers]);
        assert_eq!(send(&mut c, "/connect"), vec![Command::Connect(Which::All)]);
        assert_eq!(
            send(&mut c, "/connect all"),
            vec![Command::Connect(Which::All)]
        );
        assert_eq!(
            send(&mut c, "/connect #1 3"),
            vec![Command::Connect(Which::Indices(vec![1, 3]))]
        );
        assert_eq!(send(&mut c, "/quit"), vec![Command::Quit]);
    }

    #[test]
    fn bad_lines_get_hints_not_commands() {
        let mut c = Console::new();
        for line in [
            "/send",
            "/send 1.2.3.4:9000",
            "/send 1.2.3.4:0 x",
            "/send 1.2.3.4:65536 x",
            "/send #0 x",
            "/send #x x",
            "/connect #0",
            "/connect bob",
            "/peers now",
            "/bogus",
            "hello",
            "42",
        ] {
            let r = c.feed(line, 0);
            assert!(runs(&r).is_empty(), "{line:?} ran {r:?}");
            assert!(matches!(&r[0], Reply::Mistake(_)), "{line:?}: {r:?}");
        }
        assert!(matches!(&c.feed("/help", 0)[0], Reply::Say(s) if s.contains("/send")));
    }
}
