//! What the user types: the original's numbered menu and one-line `/` commands.
//!
//! [`Console`] is a pure state machine: feed it one line at a time, get back commands for
//! the peer table and text to show (prompts, hints). The menu's questions ("Enter
//! recipient's IP address: " ...) are states, so typing `1` walks the same steps as the
//! original, and a script can type the same answers on the following lines.

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::address::{self, Host, HostError, parse_port};
use crate::peer_table::{Target, Which};

pub const MENU: &str = "***** Menu *****\n1. Send message\n2. Query active peers\n3. Connect to active peers\n0. Quit\n";
pub const CHOICE: &str = "Enter choice: ";
const ASK_IP: &str = "Enter recipient's IP address: ";
const ASK_PORT: &str = "Enter recipient's port number: ";
const ASK_TEXT: &str = "Enter your message (type exit to disconnect): ";
const ASK_INDEX: &str = "Enter the index of the peer to connect to (Enter 0 to connect to all): ";

/// Every command word, for completion (aliases left out): see [`help_for`].
pub const COMMANDS: &[&str] = &[
    "/msg", "/send", "/query", "/peers", "/connect", "/forget", "/nick", "/whoami", "/verify",
    "/trust", "/help", "/quit",
];

/// One command's help: its words, how it is typed, one line for the list, and more.
struct CommandHelp {
    words: &'static [&'static str],
    usage: &'static str,
    summary: &'static str,
    detail: &'static str,
}

const COMMAND_HELP: &[CommandHelp] = &[
    CommandHelp {
        words: &["/msg", "/send", "/s"],
        usage: "/msg TARGET TEXT",
        summary: "send TEXT to TARGET (also /send)",
        detail: "TARGET is #N from the peer list, a peer's name, or IP:PORT (a link-local \
                 IPv6 address takes its interface: [fe80::1%eth0]:9000). TEXT keeps its \
                 spaces. `exit` tells the peer you leave it; `connect` connects to it.",
    },
    CommandHelp {
        words: &["/query"],
        usage: "/query [TARGET]",
        summary: "talk to TARGET: plain text goes there; alone, stop",
        detail: "TARGET is #N, a name or IP:PORT, as for /msg. The peer is kept by its number, \
                 so a departure never sends to someone else: if it leaves, the next plain \
                 line says so and nothing is sent. /query alone stops sending plain text.",
    },
    CommandHelp {
        words: &["/peers", "/list", "/p"],
        usage: "/peers",
        summary: "list active peers with their numbers (#N)",
        detail: "A peer keeps its number for the whole run; numbers are never reused.",
    },
    CommandHelp {
        words: &["/connect", "/c"],
        usage: "/connect [all | #N ...]",
        summary: "send 'connect' to every peer not yet connected, or to those listed",
        detail: "Without arguments (or with `all`), every peer not yet connected.",
    },
    CommandHelp {
        words: &["/forget"],
        usage: "/forget TARGET",
        summary: "remove a peer from the list without sending it anything",
        detail: "For a mistyped address, or a peer you no longer want listed. A send to it \
                 already under way still reports how it went. It is listed again (under a \
                 new number) if it writes to you or you send to it.",
    },
    CommandHelp {
        words: &["/nick"],
        usage: "/nick NAME",
        summary: "change the name your later messages carry",
        detail: "NAME follows the rules of --name: no spaces, no control or invisible \
                 characters, at most 256 bytes, not ending with ':'. Messages already \
                 waiting to go keep the old name.",
    },
    CommandHelp {
        words: &["/whoami"],
        usage: "/whoami",
        summary: "your name, listening address and key's fingerprint",
        detail: "The fingerprint is what a peer compares with /verify: four groups of five \
                 digits, to read out over a call.",
    },
    CommandHelp {
        words: &["/verify"],
        usage: "/verify TARGET [yes]",
        summary: "compare fingerprints with a peer; `yes` marks its key verified",
        detail: "Shows your code and the peer's as seen here. Compare them with the peer by \
                 voice; if they match, /verify TARGET yes records the key as verified \
                 (kept in known_peers).",
    },
    CommandHelp {
        words: &["/trust"],
        usage: "/trust TARGET",
        summary: "accept the new key of a peer whose key changed",
        detail: "Messages to a peer whose key changed fail with `key_changed` until you run \
                 this. Check the new key with them first (/verify).",
    },
    CommandHelp {
        words: &["/help", "/h", "/?"],
        usage: "/help [COMMAND]",
        summary: "this list, or more about one command",
        detail: "/help query explains /query, and so on.",
    },
    CommandHelp {
        words: &["/quit", "/q"],
        usage: "/quit",
        summary: "send 'exit' to every peer and leave (also: end of input, Ctrl-D)",
        detail: "The node waits for those sends at most one --timeout.",
    },
];

/// The list of commands (`/help`).
pub fn help() -> String {
    let mut out = String::from("Commands:\n");
    for c in COMMAND_HELP {
        out.push_str(&format!("  {:<24}{}\n", c.usage, c.summary));
    }
    out.push_str(
        "Plain text (a line not starting with /) goes to the current peer (/query);\n\
         a lone 0, 1, 2 or 3 is the menu's choice instead (in a multi-line paste, text).\n\
         The menu: 1 send message, 2 query active peers, 3 connect to active peers, 0 quit.\n\
         Keys: Tab completes, Up/Down recall, Ctrl-C clears the line (on an empty one, quits),\n\
         Ctrl-Z suspends. /help COMMAND says more about one command.",
    );
    out
}

/// More about one command (`/help CMD`); `word` with or without its `/`, or an alias.
pub fn help_for(word: &str) -> Option<String> {
    let word = format!("/{}", word.trim_start_matches('/'));
    let c = COMMAND_HELP
        .iter()
        .find(|c| c.words.contains(&word.as_str()))?;
    let mut out = format!("{}: {}\n{}", c.usage, c.summary, c.detail);
    if c.words.len() > 1 {
        out.push_str(&format!("\nAlso typed as: {}", c.words[1..].join(" ")));
    }
    Some(out)
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        target: Target,
        text: String,
    },
    /// Plain text for the current peer, `#number` (the caller checks it is still listed).
    SendCurrent {
        number: usize,
        text: String,
    },
    /// `/query TARGET` makes it the current peer; `/query` alone clears it.
    Query(Option<Target>),
    /// `/forget TARGET`.
    Forget(Target),
    /// `/nick NAME`: checked as `--name` is.
    Nick(String),
    Peers,
    /// `/whoami`.
    Whoami,
    /// `/verify TARGET [yes]`.
    Verify {
        target: Target,
        confirmed: bool,
    },
    /// `/trust TARGET`.
    Trust(Target),
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

/// The peer plain text goes to: its number, and how it was shown when chosen (to say who
/// left, once it has).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Current {
    number: usize,
    label: String,
}

/// The menu and command-line state machine. See the module documentation.
#[derive(Debug, Default)]
pub struct Console {
    state: State,
    current: Option<Current>,
}

/// The hint for plain text with no current peer.
const NO_CURRENT: &str =
    "no current peer: choose one with /query NAME|#N|IP:PORT, or send with /msg TARGET TEXT";

impl Console {
    pub fn new() -> Self {
        Console::default()
    }

    /// Is the console in the middle of a menu question?
    pub fn in_dialog(&self) -> bool {
        self.state != State::Choice
    }

    /// The menu question currently awaiting an answer (`Enter choice: ` when none).
    pub fn current_prompt(&self) -> &'static str {
        match self.state {
            State::Choice => CHOICE,
            State::AskIp => ASK_IP,
            State::AskPort(_) => ASK_PORT,
            State::AskText(_) => ASK_TEXT,
            State::AskIndex => ASK_INDEX,
        }
    }

    /// The prompt to show: a menu question while one is asked; otherwise `[LABEL] > `
    /// when there is a current peer (`label` is how to show it now, see
    /// [`Console::current_label`]), or `Enter choice: `.
    pub fn prompt(&self, label: Option<&str>) -> Cow<'static, str> {
        match (&self.state, label) {
            (State::Choice, Some(label)) => Cow::Owned(format!("[{label}] > ")),
            _ => Cow::Borrowed(self.current_prompt()),
        }
    }

    /// The current peer's number (`#N`), if one is chosen.
    pub fn current(&self) -> Option<usize> {
        self.current.as_ref().map(|c| c.number)
    }

    /// How the current peer was shown when it was chosen (its name made safe, or its
    /// address): for when it is no longer listed.
    pub fn current_label(&self) -> Option<&str> {
        self.current.as_ref().map(|c| c.label.as_str())
    }

    /// Plain text goes to `#number` from now on.
    pub fn set_current(&mut self, number: usize, label: String) {
        self.current = Some(Current { number, label });
    }

    /// Plain text goes nowhere from now on.
    pub fn clear_current(&mut self) {
        self.current = None;
    }

    /// Feeds one line (without its newline). `candidates` is how many peers are not yet
    /// connected, so menu 3 can say there are none without asking for an index. A `/`
    /// command typed at a menu question cancels the question and runs.
    pub fn feed(&mut self, line: &str, candidates: usize) -> Vec<Reply> {
        self.feed_line(line, candidates, false)
    }

    /// As [`Console::feed`], for one line of a multi-line paste: with a current peer, a
    /// lone `0`–`3` there is text for that peer, not a menu choice (a pasted "0" must not
    /// quit, nor a "2" list peers, in the middle of what was pasted).
    pub fn feed_pasted(&mut self, line: &str, candidates: usize) -> Vec<Reply> {
        self.feed_line(line, candidates, true)
    }

    /// Cancels the menu question being asked (Ctrl-C at it); false if none was.
    pub fn cancel(&mut self) -> bool {
        let asked = self.in_dialog();
        self.state = State::Choice;
        asked
    }

    fn feed_line(&mut self, line: &str, candidates: usize, pasted: bool) -> Vec<Reply> {
        let line = line.trim_end_matches(['\r', '\n']);
        if pasted
            && self.state == State::Choice
            && let Some(c) = &self.current
            && matches!(line.trim(), "0" | "1" | "2" | "3")
        {
            return vec![
                Reply::Run(Command::SendCurrent {
                    number: c.number,
                    text: line.to_owned(),
                }),
                Reply::Prompt(CHOICE),
            ];
        }
        let mut state = std::mem::take(&mut self.state);
        if line.trim_start().starts_with('/') {
            state = State::Choice;
        }
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
            _ => match &self.current {
                // Plain text, as typed (its spaces kept, as the menu's message keeps them).
                Some(c) => vec![Reply::Run(Command::SendCurrent {
                    number: c.number,
                    text: line.to_owned(),
                })],
                None => vec![mistake(NO_CURRENT.to_owned())],
            },
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
        "/query" => match rest {
            "" => Command::Query(None),
            target => return one_target(word, target, |t| Command::Query(Some(t))),
        },
        "/forget" => return one_target(word, rest, Command::Forget),
        "/nick" => {
            return match crate::config::check_name(rest) {
                _ if rest.is_empty() => vec![mistake("usage: /nick NAME".to_owned())],
                Ok(()) => vec![Reply::Run(Command::Nick(rest.to_owned()))],
                Err(e) => vec![mistake(format!("{e}: name unchanged"))],
            };
        }
        "/peers" | "/list" | "/p" => Command::Peers,
        "/whoami" => Command::Whoami,
        "/trust" => return one_target(word, rest, Command::Trust),
        "/verify" => {
            let (target, confirmed) = match rest.rsplit_once(char::is_whitespace) {
                Some((t, "yes")) => (t.trim(), true),
                _ => (rest, false),
            };
            return one_target(word, target, |t| Command::Verify {
                target: t,
                confirmed,
            });
        }
        "/connect" | "/c" => return parse_connect(rest),
        "/quit" | "/q" => Command::Quit,
        "/help" | "/h" | "/?" => {
            return match rest {
                "" => vec![Reply::Say(help())],
                topic => match help_for(topic) {
                    Some(text) => vec![Reply::Say(text)],
                    None => vec![mistake(format!("no command {topic:?}: /help lists them"))],
                },
            };
        }
        other => {
            return vec![mistake(format!("unknown command {other:?}: type /help"))];
        }
    };
    if !rest.is_empty() {
        return vec![mistake(format!("{word} takes no arguments"))];
    }
    vec![Reply::Run(cmd)]
}

/// A command that takes exactly one TARGET.
fn one_target(word: &str, rest: &str, cmd: impl FnOnce(Target) -> Command) -> Vec<Reply> {
    let mut words = rest.split_whitespace();
    let (Some(target), None) = (words.next(), words.next()) else {
        return vec![mistake(format!(
            "usage: {word} TARGET (TARGET: #N, a name or IP:PORT)"
        ))];
    };
    match parse_target(target) {
        Ok(t) => vec![Reply::Run(cmd(t))],
        Err(why) => vec![mistake(why)],
    }
}

fn parse_send(rest: &str) -> Vec<Reply> {
    let Some((addr, text)) = rest.split_once(char::is_whitespace) else {
        return vec![mistake(
            "usage: /msg TARGET TEXT (TARGET: #N, a name, or IP:PORT)".to_owned(),
        )];
    };
    let text = text.trim_start();
    if text.is_empty() {
        return vec![mistake(
            "usage: /msg TARGET TEXT: the text is missing".to_owned(),
        )];
    }
    // Room for the prompt `feed_line` adds: one allocation per line sent, not two.
    let mut replies = Vec::with_capacity(2);
    replies.push(match parse_target(addr) {
        Ok(target) => Reply::Run(Command::Send {
            target,
            text: text.to_owned(),
        }),
        Err(why) => mistake(why),
    });
    replies
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

/// Tab completion of `word`, given the text `head` before it on the line and the peers
/// (number, name): a `/command` as the first word; a command's name after `/help`; `#N`
/// (or `all`) after `/connect`; a peer (`#N` or name) as the first argument of `/msg`,
/// `/send`, `/query` and `/forget`, nothing in their text; a peer's name anywhere in plain
/// text (as IRC clients complete nicks). Sorted, without duplicates.
pub fn completions<'a>(
    head: &str,
    word: &str,
    peers: impl Iterator<Item = (usize, Option<&'a str>)> + Clone,
) -> Vec<String> {
    let words: Vec<&str> = head.split_whitespace().collect();
    let command = words.first().copied().filter(|w| w.starts_with('/'));
    let mut out: Vec<String> = Vec::new();
    let numbers = |out: &mut Vec<String>| {
        let digits = word.strip_prefix('#').or(word.is_empty().then_some(""));
        if let Some(digits) = digits {
            out.extend(
                peers
                    .clone()
                    .map(|(n, _)| n.to_string())
                    .filter(|n| n.starts_with(digits))
                    .map(|n| format!("#{n}")),
            );
        }
    };
    let names = |out: &mut Vec<String>| {
        if !word.starts_with('#') {
            out.extend(
                peers
                    .clone()
                    .filter_map(|(_, name)| name)
                    .filter(|n| n.starts_with(word) && !n.is_empty())
                    .map(str::to_owned),
            );
        }
    };
    match (command, words.len()) {
        (None, 0) if word.starts_with('/') => out.extend(
            COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| (*c).to_owned()),
        ),
        (None, _) => names(&mut out),
        (Some("/help" | "/h" | "/?"), 1) => out.extend(
            COMMANDS
                .iter()
                .map(|c| &c[1..])
                .filter(|c| c.starts_with(word))
                .map(str::to_owned),
        ),
        (Some("/connect" | "/c"), _) => {
            numbers(&mut out);
            if words.len() == 1 && "all".starts_with(word) {
                out.push("all".to_owned());
            }
        }
        (Some("/msg" | "/send" | "/s" | "/query" | "/forget"), 1) => {
            numbers(&mut out);
            names(&mut out);
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn completion_offers_what_fits_where_the_word_is() {
        let peers = [(1, Some("alice")), (2, Some("albert")), (12, None)];
        let c = |head: &str, word: &str| completions(head, word, peers.iter().copied());
        assert_eq!(c("", "/qu"), ["/query", "/quit"]);
        assert_eq!(c("/help ", "q"), ["query", "quit"]);
        assert_eq!(c("/connect ", ""), ["#1", "#12", "#2", "all"]);
        assert_eq!(
            c("/connect ", "al"),
            ["all"],
            "names are not what /connect takes"
        );
        assert_eq!(c("/msg ", "al"), ["albert", "alice"]);
        assert_eq!(c("/msg ", "#1"), ["#1", "#12"]);
        assert!(c("/msg #1 ", "").is_empty(), "nothing in a message's text");
        assert!(c("/nick ", "al").is_empty());
        assert_eq!(c("hello ", "ali"), ["alice"], "names in plain text");
        assert_eq!(c("", "ali"), ["alice"]);
    }

    #[test]
    fn a_pasted_lone_digit_goes_to_the_current_peer_and_a_typed_one_is_a_choice() {
        let mut c = Console::new();
        c.set_current(3, "bob".into());
        let pasted = c.feed_pasted("0", 0);
        assert_eq!(
            pasted[0],
            Reply::Run(Command::SendCurrent {
                number: 3,
                text: "0".into()
            })
        );
        assert_eq!(c.feed("0", 0)[0], Reply::Run(Command::Quit));
        // Without a current peer a pasted digit is still the menu's.
        let mut none = Console::new();
        assert_eq!(none.feed_pasted("2", 0)[0], Reply::Run(Command::Peers));
    }

    #[test]
    fn cancel_ends_a_question_and_says_whether_there_was_one() {
        let mut c = Console::new();
        assert!(!c.cancel());
        c.feed("1", 0);
        assert!(c.in_dialog());
        assert!(c.cancel());
        assert!(!c.in_dialog());
        assert_eq!(c.current_prompt(), CHOICE);
    }

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
        assert_eq!(send(&mut c, "/whoami"), vec![Command::Whoami]);
        assert_eq!(
            send(&mut c, "/verify #2"),
            vec![Command::Verify {
                target: Target::Index(2),
                confirmed: false
            }]
        );
        assert_eq!(
            send(&mut c, "/verify bob yes"),
            vec![Command::Verify {
                target: Target::Name("bob".into()),
                confirmed: true
            }]
        );
        assert_eq!(
            send(&mut c, "/trust 127.0.0.1:9"),
            vec![Command::Trust(Target::Addr(addr("127.0.0.1:9")))]
        );
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
        for line in [
            "/query a b",
            "/query #0",
            "/forget",
            "/forget #x",
            "/nick",
            "/nick two words",
            "/nick b\u{200b}ob",
            "/help nosuch",
        ] {
            let r = c.feed(line, 0);
            assert!(runs(&r).is_empty(), "{line:?} ran {r:?}");
            assert!(matches!(&r[0], Reply::Mistake(_)), "{line:?}: {r:?}");
        }
    }

    #[test]
    fn plain_text_goes_to_the_current_peer_or_gets_one_hint() {
        let mut c = Console::new();
        let r = c.feed("hello there", 0);
        assert_eq!(
            r,
            vec![Reply::Mistake(NO_CURRENT.into()), Reply::Prompt(CHOICE)]
        );
        assert!(NO_CURRENT.contains("/query NAME|#N|IP:PORT") && NO_CURRENT.contains("/msg"));
        assert_eq!(c.prompt(None), CHOICE);
        c.set_current(3, "bob".into());
        assert_eq!(c.prompt(Some("bob")), "[bob] > ");
        assert_eq!((c.current(), c.current_label()), (Some(3), Some("bob")));
        // Spaces kept; a lone 0-3 is still the menu; any other number is text.
        assert_eq!(
            runs(&c.feed(" hi  there ", 0)),
            vec![Command::SendCurrent {
                number: 3,
                text: " hi  there ".into()
            }]
        );
        assert_eq!(runs(&c.feed("2", 0)), vec![Command::Peers]);
        assert_eq!(
            runs(&c.feed("42", 0)),
            vec![Command::SendCurrent {
                number: 3,
                text: "42".into()
            }]
        );
        assert!(
            c.feed("   ", 0)
                .iter()
                .all(|r| matches!(r, Reply::Prompt(_)))
        );
        // A menu question is the prompt while it is asked.
        c.feed("1", 0);
        assert_eq!(c.prompt(Some("bob")), ASK_IP);
        c.feed("/peers", 0);
        c.clear_current();
        assert_eq!(c.current(), None);
        assert!(matches!(&c.feed("hi", 0)[0], Reply::Mistake(_)));
    }

    #[test]
    fn query_forget_nick_and_msg() {
        let mut c = Console::new();
        let run = |c: &mut Console, l: &str| runs(&c.feed(l, 0));
        assert_eq!(
            run(&mut c, "/query bob"),
            vec![Command::Query(Some(Target::Name("bob".into())))]
        );
        assert_eq!(
            run(&mut c, "/query #2"),
            vec![Command::Query(Some(Target::Index(2)))]
        );
        assert_eq!(
            run(&mut c, "/query 127.0.0.1:9001"),
            vec![Command::Query(Some(Target::Addr(addr("127.0.0.1:9001"))))]
        );
        assert_eq!(run(&mut c, "/query"), vec![Command::Query(None)]);
        assert_eq!(
            run(&mut c, "/forget #4"),
            vec![Command::Forget(Target::Index(4))]
        );
        assert_eq!(run(&mut c, "/nick zoë"), vec![Command::Nick("zoë".into())]);
        assert_eq!(
            run(&mut c, "/msg bob  hi "),
            vec![Command::Send {
                target: Target::Name("bob".into()),
                text: "hi ".into()
            }]
        );
        // An invisible character in a new name is refused, as --name refuses it.
        let r = c.feed("/nick bob\u{a0}x", 0);
        assert!(
            matches!(&r[0], Reply::Mistake(s) if s.contains("name unchanged")),
            "{r:?}"
        );
        let r = c.feed("/nick b\u{200b}ob", 0);
        assert!(
            matches!(&r[0], Reply::Mistake(s) if s.contains("U+200B")),
            "{r:?}"
        );
    }

    #[test]
    fn a_command_at_a_menu_question_cancels_it_and_runs() {
        for steps in [&["1"][..], &["1", "10.0.0.1"], &["1", "10.0.0.1:9"], &["3"]] {
            let mut c = Console::new();
            for s in steps {
                c.feed(s, 2);
            }
            assert!(c.in_dialog(), "{steps:?}");
            let r = c.feed("/peers", 2);
            assert_eq!(runs(&r), vec![Command::Peers], "{steps:?}");
            assert!(!c.in_dialog());
            assert_eq!(r.last(), Some(&Reply::Prompt(CHOICE)));
        }
        // Even a mistyped one: the question is gone, the mistake explained.
        let mut c = Console::new();
        c.feed("1", 0);
        c.feed("10.0.0.1:9", 0);
        assert!(matches!(&c.feed("/bogus", 0)[0], Reply::Mistake(_)));
        assert!(!c.in_dialog());
    }

    #[test]
    fn help_lists_every_command_and_explains_one() {
        let all = help();
        for word in COMMANDS {
            assert!(all.contains(word), "{word} missing from /help");
            let one = help_for(word).unwrap_or_else(|| panic!("no help for {word}"));
            assert!(one.contains(word.trim_start_matches('/')), "{one}");
        }
        // Every command of the help is in COMMANDS (completion offers them all).
        for c in COMMAND_HELP {
            assert!(
                COMMANDS.contains(&c.words[0]),
                "{} not in COMMANDS",
                c.words[0]
            );
        }
        assert_eq!(help_for("query"), help_for("/query"));
        assert!(help_for("q").unwrap().starts_with("/quit"));
        assert!(help_for("send").unwrap().starts_with("/msg"));
        let mut c = Console::new();
        assert!(
            matches!(&c.feed("/help forget", 0)[0], Reply::Say(s) if s.starts_with("/forget TARGET"))
        );
    }
}
