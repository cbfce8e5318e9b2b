//! The command line and the node's settings.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

/// Exit codes, documented in README.md.
pub mod exit_code {
    /// Normal quit (`0`, `/quit`, end of input, SIGINT/SIGTERM).
    pub const OK: i32 = 0;
    /// A runtime failure after start-up (the poll loop failed, stdout could not be written).
    pub const RUNTIME: i32 = 1;
    /// Bad command line or missing name/port without a terminal to ask on.
    pub const USAGE: i32 = 2;
    /// Could not listen: port in use, no permission, address not on this machine.
    pub const LISTEN: i32 = 3;
}

/// A terminal peer-to-peer chat node that speaks the legacy course protocol.
#[derive(Debug, Parser)]
#[command(name = "p2pchat", version, about, long_about = None)]
pub struct Cli {
    /// Your name as peers see it (no spaces). Asked for when missing and stdin is a terminal.
    #[arg(long, env = "P2PCHAT_NAME")]
    pub name: Option<String>,
    /// Port to listen on; 0 picks a free one. Asked for when missing and stdin is a terminal.
    #[arg(long, env = "P2PCHAT_PORT")]
    pub port: Option<u16>,
    /// Local IP to listen on. `::` (the default) listens on every IPv6 and IPv4 address
    /// (falling back to 0.0.0.0 where IPv6 is off); 0.0.0.0 on IPv4 only.
    #[arg(long, default_value = "::", value_name = "IP")]
    pub bind: IpAddr,
    /// IP to put in message headers [default: the local address of each outgoing
    /// connection, i.e. the address the peer sees us at].
    #[arg(long, value_name = "IP")]
    pub advertise: Option<IpAddr>,
    /// A mandatory peer, greeted at start-up (repeatable). A link-local IPv6 address takes
    /// its interface: [fe80::1%eth0]:9000.
    #[arg(long = "peer", value_name = "IP:PORT", value_parser = crate::address::parse_socket_addr)]
    pub peers: Vec<SocketAddr>,
    /// Text sent to each --peer at start-up.
    #[arg(long, default_value = "hello", value_name = "TEXT")]
    pub greeting: String,
    /// Send deadline in seconds: connect, write and confirmation must finish within it.
    #[arg(long, default_value = "20", value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Largest inbound message in bytes; a longer stream is dropped and its connection closed.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES", value_parser = parse_max_message)]
    pub max_message: usize,
    /// Deadline in seconds for a whole inbound message (not an idle timer).
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    pub read_timeout: Duration,
    /// Most unfinished inbound connections open at once (lowered to fit the open-files
    /// limit); when full, one from the source holding the most, dripping most, else the
    /// oldest message, is closed to admit a new one.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_inbound: usize,
    /// Most inbound connections open at once from one source IP.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_inbound_per_ip: usize,
    /// Most peers in the list. When it is full, a new peer takes the place of the one that
    /// has only ever sent to us and was heard from longest ago; if every peer listed is one
    /// we sent to, messages from new peers are shown but not listed.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_peers: usize,
    /// Most peers listed from one host (an IPv6 host: its /64) that have only ever sent to
    /// us; past it, messages from that host's new peers are shown but not listed. This
    /// machine's own addresses are exempt unless --limit-local.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_peers_per_host: usize,
    /// Messages per second allowed from one source IP on average (0: no limit).
    #[arg(long, default_value_t = 50.0, value_name = "PER_SEC")]
    pub rate: f64,
    /// Messages one source IP may send at once above the rate.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub burst: u32,
    /// Messages per second one source IP may send on fast-path streams, in bursts of a
    /// second's worth (0: no limit). Past it the source is read more slowly, nothing is
    /// dropped. This machine's own addresses are exempt unless --limit-local.
    #[arg(long, default_value_t = 100_000, value_name = "PER_SEC")]
    pub stream_rate: u32,
    /// Apply the per-IP limits (--rate, --max-inbound-per-ip, --max-peers-per-host) to this
    /// machine's own addresses too; by default local processes are limited only by
    /// --max-inbound and --max-peers.
    #[arg(long)]
    pub limit_local: bool,
    /// Speak only the legacy protocol: no fast path (no probes sent, none answered, no
    /// streams), exactly as the original program.
    #[arg(long)]
    pub legacy_only: bool,
    /// Keep the fast path but send its streams unencrypted (benchmarks, trusted links).
    /// Encrypted streams from peers are still accepted. No effect with --legacy-only.
    #[arg(long)]
    pub plaintext: bool,
    /// Directory for the node's own files (key, known_peers, history) [default:
    /// $XDG_CONFIG_HOME/p2pchat, else ~/.config/p2pchat].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// One JSON object per line on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Colour on a terminal: auto (when stdout is a terminal and NO_COLOR is not set),
    /// always, or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// More log detail on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Append every event shown, with the local date and time, to FILE (created 0600):
    /// a chat log. A write error is reported once and logging stops; the chat goes on.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Print a completion script for SHELL to stdout and exit (no node is started).
    #[arg(long, value_name = "SHELL", help_heading = "Documentation")]
    pub completions: Option<clap_complete::Shell>,
    /// Print the manual page (roff) to stdout and exit (no node is started).
    #[arg(long, conflicts_with = "completions", help_heading = "Documentation")]
    pub man: bool,
}

impl Cli {
    /// What `--completions` or `--man` asked to print, if either; these need no name or
    /// port, so they are answered before anything is asked.
    pub fn documentation(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(shell) = self.completions {
            clap_complete::generate(shell, &mut Cli::command(), "p2pchat", &mut out);
        } else if self.man {
            // Rendering into a Vec cannot fail.
            let _ = clap_mangen::Man::new(Cli::command()).render(&mut out);
        } else {
            return None;
        }
        Some(out)
    }
}

/// When to colour output (ripgrep's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour, given whether stdout is a terminal and the `NO_COLOR` variable
    /// (<https://no-color.org>: set and not empty means no colour).
    pub fn colour(self, terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s} is out of range (0 < SECS <= 86400)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Largest `--max-message`: what all unfinished inbound messages may hold together.
pub const MAX_MAX_MESSAGE: usize = 16 << 20;

fn parse_max_message(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if !(1..=MAX_MAX_MESSAGE).contains(&n) {
        return Err(format!(
            "{s} is out of range (1 <= BYTES <= {MAX_MAX_MESSAGE})"
        ));
    }
    Ok(n)
}

/// Everything the reactor needs to run a node.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub peers: Vec<SocketAddr>,
    pub greeting: String,
    pub timeout: Duration,
    pub max_message: usize,
    pub read_timeout: Duration,
    pub max_inbound: usize,
    pub max_inbound_per_ip: usize,
    pub max_peers: usize,
    pub max_peers_per_host: usize,
    pub rate: f64,
    pub burst: u32,
    /// `--stream-rate`: messages per second per source IP on streams (0: no limit).
    pub stream_rate: u32,
    pub limit_local: bool,
    /// `--legacy-only`: the fast path is off (see PROTOCOL.md).
    pub legacy_only: bool,
    /// `--plaintext`: streams to p2pchat peers go unencrypted.
    pub plaintext: bool,
    /// `--home`: the node's directory, instead of the default (see `trust::home`).
    pub home: Option<PathBuf>,
    pub json: bool,
    pub color: ColorChoice,
    /// `--log`: the chat log's file.
    pub log: Option<PathBuf>,
}

impl Config {
    /// A node on loopback with defaults; handy for tests and the load tool.
    pub fn loopback(name: &str) -> Config {
        Config {
            name: name.to_owned(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            advertise: None,
            peers: Vec::new(),
            greeting: "hello".to_owned(),
            timeout: Duration::from_secs(20),
            max_message: 64 * 1024,
            read_timeout: Duration::from_secs(10),
            max_inbound: 1024,
            max_inbound_per_ip: 256,
            max_peers: 10_000,
            max_peers_per_host: 64,
            rate: 50.0,
            burst: 200,
            stream_rate: 100_000,
            limit_local: false,
            legacy_only: false,
            plaintext: false,
            home: None,
            json: false,
            color: ColorChoice::Never,
            log: None,
        }
    }
}

/// Why the settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    BadName(String),
    BadPort(String),
    Missing(&'static str),
    /// Input ended at the prompt for it.
    NotAnswered(&'static str),
    BadGreeting(String),
    BadRate(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadName(why) => write!(f, "bad name: {why}"),
            ConfigError::BadPort(s) => write!(f, "bad port {s:?}: use a number from 0 to 65535"),
            ConfigError::NotAnswered(what) => write!(
                f,
                "no {what} given (input ended at the prompt): pass --{what} (or set P2PCHAT_{})",
                what.to_uppercase()
            ),
            ConfigError::Missing(what) => write!(
                f,
                "no {what} given and stdin is not a terminal: pass --{what} (or set P2PCHAT_{})",
                what.to_uppercase()
            ),
            ConfigError::BadGreeting(why) => write!(f, "bad --greeting: {why}"),
            ConfigError::BadRate(r) => write!(f, "bad --rate {r}: use 0 (no limit) or more"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks a node name: what peers will parse as one header word.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::BadName("it is empty".into()));
    }
    if name.len() > crate::wire::MAX_NAME {
        return Err(ConfigError::BadName(format!(
            "longer than {} bytes",
            crate::wire::MAX_NAME
        )));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::BadName(
            "it contains spaces or control characters (peers split on spaces)".into(),
        ));
    }
    if let Some(c) = name.chars().find(|&c| crate::sanitize::invisible(c)) {
        return Err(ConfigError::BadName(format!(
            "it contains U+{:04X}, an invisible or space-like character (peers would see \
             <U+{:04X}>)",
            c as u32, c as u32
        )));
    }
    if name.ends_with(':') {
        return Err(ConfigError::BadName("it must not end with ':'".into()));
    }
    Ok(())
}

/// Asks the person at the terminal a question; `None` at end of input.
pub type Ask<'a> = &'a mut dyn FnMut(&str) -> Option<String>;

/// Asks `question` until the (trimmed) answer passes `check`; a bad answer is explained
/// before the question is asked again. End of input: `what` is missing.
fn ask_until_valid<T>(
    ask: &mut dyn FnMut(&str) -> Option<String>,
    what: &'static str,
    question: &str,
    check: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    ask_again(ask, what, None, question, check)
}

/// [`ask_until_valid`], saying `why` (what was wrong with the last answer) first.
fn ask_again<T>(
    ask: &mut dyn FnMut(&str) -> Option<String>,
    what: &'static str,
    why: Option<&str>,
    question: &str,
    check: impl Fn(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let mut q = match why {
        Some(why) => format!("{why}\n{question}"),
        None => question.to_owned(),
    };
    loop {
        let answer = ask(&q).ok_or(ConfigError::NotAnswered(what))?;
        match check(answer.trim()) {
            Ok(v) => return Ok(v),
            Err(e) => q = format!("{e}\n{question}"),
        }
    }
}

const ASK_PORT: &str = "Enter your port number: ";

/// Asks for the port to listen on, saying `why` first (why the last one will not do).
fn ask_port(ask: Ask<'_>, why: Option<&str>) -> Result<u16, ConfigError> {
    ask_again(ask, "port", why, ASK_PORT, |s| {
        s.parse::<u16>()
            .map_err(|_| ConfigError::BadPort(s.to_owned()))
    })
}

/// Why [`bind_asking`] gave up.
#[derive(Debug)]
pub enum BindError<E> {
    /// Binding failed and the port is not to be asked for again.
    Bind(E),
    /// Input ended while the port was asked for again.
    Config(ConfigError),
}

/// Binds with `bind`. When the port came from the start-up question (`ask` is given only
/// then) and binding fails for a reason that another port could cure (`why_another`
/// words it: the port is in use...), the question is asked again, with the reason, until
/// a port binds or input ends. Otherwise the error is returned as it is.
pub fn bind_asking<T, E>(
    mut cfg: Config,
    mut ask: Option<Ask<'_>>,
    mut bind: impl FnMut(Config) -> Result<T, E>,
    why_another: impl Fn(&E) -> Option<String>,
) -> Result<T, BindError<E>> {
    loop {
        let err = match bind(cfg.clone()) {
            Ok(bound) => return Ok(bound),
            Err(e) => e,
        };
        let (Some(ask), Some(why)) = (ask.as_mut(), why_another(&err)) else {
            return Err(BindError::Bind(err));
        };
        let port = ask_port(*ask, Some(&why)).map_err(BindError::Config)?;
        cfg.listen.set_port(port);
    }
}

/// Builds the [`Config`] from the command line, asking `ask` (a terminal prompt, or `None`
/// when there is no terminal) for a missing name or port.
pub fn from_cli(cli: Cli, mut ask: Option<Ask<'_>>) -> Result<Config, ConfigError> {
    let name = match cli.name {
        Some(n) => {
            check_name(&n)?;
            n
        }
        None => match ask.as_mut() {
            Some(ask) => {
                ask_until_valid(*ask, "name", "Enter your name (without spaces): ", |s| {
                    check_name(s).map(|()| s.to_owned())
                })?
            }
            None => return Err(ConfigError::Missing("name")),
        },
    };
    let port = match cli.port {
        Some(p) => p,
        None => match ask.as_mut() {
            Some(ask) => ask_port(*ask, None)?,
            None => return Err(ConfigError::Missing("port")),
        },
    };
    if !(cli.rate >= 0.0 && cli.rate.is_finite()) {
        return Err(ConfigError::BadRate(cli.rate.to_string()));
    }
    if cli.greeting.is_empty() || cli.greeting.contains(['\n', '\r']) {
        return Err(ConfigError::BadGreeting(
            "must be one non-empty line".into(),
        ));
    }
    Ok(Config {
        name,
        listen: SocketAddr::new(cli.bind, port),
        advertise: cli.advertise,
        peers: cli.peers,
        greeting: cli.greeting,
        timeout: cli.timeout,
        max_message: cli.max_message.max(1),
        read_timeout: cli.read_timeout,
        max_inbound: cli.max_inbound.max(1),
        max_inbound_per_ip: cli.max_inbound_per_ip.max(1),
        max_peers: cli.max_peers,
        max_peers_per_host: cli.max_peers_per_host,
        rate: cli.rate,
        burst: cli.burst,
        stream_rate: cli.stream_rate,
        limit_local: cli.limit_local,
        legacy_only: cli.legacy_only,
        plaintext: cli.plaintext,
        home: cli.home,
        json: cli.json,
        color: cli.color,
        log: cli.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("p2pchat").chain(args.iter().copied()))
    }

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        use std::ffi::OsStr;
        let auto = cli(&[]).unwrap().color;
        assert_eq!(auto, ColorChoice::Auto);
        assert!(auto.colour(true, None));
        assert!(!auto.colour(false, None), "not a terminal");
        assert!(!auto.colour(true, Some(OsStr::new("1"))), "NO_COLOR set");
        assert!(
            auto.colour(true, Some(OsStr::new(""))),
            "NO_COLOR empty counts as unset"
        );
        let always = cli(&["--color", "always"]).unwrap().color;
        assert!(always.colour(false, Some(OsStr::new("1"))));
        let never = cli(&["--color", "never"]).unwrap().color;
        assert!(!never.colour(true, None));
        assert!(cli(&["--color", "sometimes"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let c = cli(&[
            "--name",
            "al",
            "--port",
            "0",
            "--peer",
            "127.0.0.1:9",
            "--peer",
            "[::1]:8",
            "--timeout",
            "1.5",
            "--json",
            "-vv",
        ])
        .unwrap();
        assert_eq!(c.peers.len(), 2);
        // A link-local peer takes its interface, by name or index.
        let c2 = cli(&["--peer", "[fe80::1%lo]:9", "--peer", "[fe80::1%3]:9"]).unwrap();
        assert!(
            c2.peers
                .iter()
                .all(|p| matches!(p, SocketAddr::V6(v6) if v6.scope_id() != 0))
        );
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.verbose, 2);
        let cfg = from_cli(c, None).unwrap();
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.name, "al");
        assert_eq!(cfg.max_peers_per_host, 64);
        let c = cli(&["--name", "al", "--port", "0", "--max-peers-per-host", "3"]).unwrap();
        assert_eq!(from_cli(c, None).unwrap().max_peers_per_host, 3);
    }

    #[test]
    fn completions_and_the_manual_come_from_the_flags() {
        let c = cli(&["--completions", "bash"]).unwrap();
        let text = String::from_utf8(c.documentation().unwrap()).unwrap();
        assert!(text.contains("--name") && text.contains("--log"), "{text}");
        let c = cli(&["--man"]).unwrap();
        let text = String::from_utf8(c.documentation().unwrap()).unwrap();
        assert!(
            text.contains(".TH p2pchat 1") && text.contains(".SH NAME"),
            "{text}"
        );
        assert!(cli(&["--man", "--completions", "zsh"]).is_err());
        assert!(cli(&["--completions", "tcsh"]).is_err());
        assert!(cli(&["--name", "a"]).unwrap().documentation().is_none());
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(cli(&["--port", "65536"]).is_err());
        assert!(cli(&["--port", "abc"]).is_err());
        assert!(cli(&["--peer", "1.2.3.4"]).is_err());
        assert!(cli(&["--peer", "[fe80::1%nosuchif0]:9"]).is_err());
        assert!(cli(&["--bind", "nonsense"]).is_err());
        assert!(cli(&["--timeout", "0"]).is_err());
        assert!(cli(&["--timeout", "-3"]).is_err());
        assert!(cli(&["-v", "-q"]).is_err());
        // A size that would be allocated at start-up is bounded (it panicked or aborted).
        assert!(cli(&["--max-message", "18446744073709551615"]).is_err());
        assert!(cli(&["--max-message", "1000000000000"]).is_err());
        assert!(cli(&["--max-message", "0"]).is_err());
        assert!(cli(&["--max-message", "16777216"]).is_ok());
    }

    #[test]
    fn missing_name_without_terminal_is_a_usage_error() {
        let c = cli(&["--port", "1"]).unwrap();
        assert!(matches!(
            from_cli(c, None),
            Err(ConfigError::Missing("name"))
        ));
        let c = cli(&["--name", "a"]).unwrap();
        assert!(matches!(
            from_cli(c, None),
            Err(ConfigError::Missing("port"))
        ));
    }

    #[test]
    fn prompts_are_used_when_given() {
        let c = cli(&[]).unwrap();
        let mut answers = vec!["9000\n".to_owned(), "bob\n".to_owned()];
        let mut asked = Vec::new();
        let mut ask = |q: &str| {
            asked.push(q.to_owned());
            answers.pop()
        };
        let cfg = from_cli(c, Some(&mut ask)).unwrap();
        assert_eq!((cfg.name.as_str(), cfg.listen.port()), ("bob", 9000));
        assert_eq!(asked[0], "Enter your name (without spaces): ");
    }

    #[test]
    fn a_bad_answer_is_explained_and_asked_again() {
        let c = cli(&[]).unwrap();
        let mut answers = vec!["9000\n", "port\n", "bob\n", "two words\n"];
        let mut asked = Vec::new();
        let mut ask = |q: &str| {
            asked.push(q.to_owned());
            answers.pop().map(str::to_owned)
        };
        let cfg = from_cli(c, Some(&mut ask)).unwrap();
        assert_eq!((cfg.name.as_str(), cfg.listen.port()), ("bob", 9000));
        assert_eq!(asked.len(), 4);
        assert!(asked[1].starts_with("bad name"), "{:?}", asked[1]);
        assert!(asked[1].ends_with("Enter your name (without spaces): "));
        assert!(asked[3].contains("port"), "{:?}", asked[3]);
        assert!(asked[3].ends_with("Enter your port number: "));
        // End of input while asking: the port is missing.
        let c = cli(&["--name", "a"]).unwrap();
        let mut ask = |_: &str| None;
        assert!(matches!(
            from_cli(c, Some(&mut ask)),
            Err(ConfigError::NotAnswered("port"))
        ));
    }

    #[test]
    fn a_port_that_will_not_bind_is_asked_for_again_with_the_reason() {
        let cfg = Config::loopback("al");
        let mut answers = vec!["9002\n", "no\n", "9001\n"];
        let mut asked = Vec::new();
        let mut ask = |q: &str| {
            asked.push(q.to_owned());
            answers.pop().map(str::to_owned)
        };
        let mut tried = Vec::new();
        let bind = |c: Config| {
            tried.push(c.listen.port());
            match c.listen.port() {
                9002 => Ok(c.listen.port()),
                p => Err(format!("port {p} is in use")),
            }
        };
        let why = |e: &String| Some(format!("{e}: choose another"));
        let bound = bind_asking(cfg.clone(), Some(&mut ask), bind, why);
        assert_eq!(bound.unwrap(), 9002);
        assert_eq!(tried, [0, 9001, 9002]);
        assert_eq!(
            asked,
            [
                "port 0 is in use: choose another\nEnter your port number: ",
                "port 9001 is in use: choose another\nEnter your port number: ",
                "bad port \"no\": use a number from 0 to 65535\nEnter your port number: ",
            ]
        );
        // Given on the command line (no asker), or an error another port cannot cure: as
        // it is.
        let fail = |c: Config| Err::<(), _>(c.listen.port());
        assert!(matches!(
            bind_asking(cfg.clone(), None, fail, |_| Some(String::new())),
            Err(BindError::Bind(0))
        ));
        let mut ask = |_: &str| -> Option<String> { panic!("asked") };
        assert!(matches!(
            bind_asking(cfg.clone(), Some(&mut ask), fail, |_| None),
            Err(BindError::Bind(0))
        ));
        // Input ends at the question: the port is missing.
        let mut ask = |_: &str| None;
        assert!(matches!(
            bind_asking(cfg, Some(&mut ask), fail, |_| Some(String::new())),
            Err(BindError::Config(ConfigError::NotAnswered("port")))
        ));
    }

    #[test]
    fn names_that_would_break_the_header_are_refused() {
        for bad in [
            "",
            "a b",
            "a\tb",
            "a\u{1b}",
            "team:",
            &"n".repeat(300),
            "bob\u{a0}",
            "b\u{200b}ob",
            "bob\u{feff}",
            "bo\u{ad}b",
            "bob\u{e0041}",
            "bob\u{202e}",
            "bob\u{3000}x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("alice-42_é").unwrap();
    }
}
