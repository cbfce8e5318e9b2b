//! The `p2pchat` binary: parse the command line, set up logging, run the reactor.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Parser;
use p2pchat::config::{self, BindError, Cli, exit_code};
use p2pchat::log_sink;
use p2pchat::reactor::{Node, RunError};

fn main() -> ExitCode {
    let code = run();
    // Lines a slow stderr has not taken yet get a bounded wait; a gone one none.
    log_sink::close(log_sink::EXIT_DRAIN);
    code
}

/// Error lines go through the log sink too: in order with the log, and never blocking or
/// panicking on a stderr that is full or gone.
fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::from(exit_code::OK as u8);
        }
        Err(e) => {
            // One line: clap's first, without its usage block.
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("bad command line");
            let line = line.strip_prefix("error: ").unwrap_or(line);
            log_sink::say(&format!("p2pchat: {line} (see p2pchat --help)"));
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    if let Some(text) = cli.documentation() {
        // A closed stdout (`| head`) is no error here.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&text).and_then(|()| stdout.flush());
        return ExitCode::from(exit_code::OK as u8);
    }
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    log_sink::init(level);

    let mut ask = |question: &str| -> Option<String> {
        let mut stdout = std::io::stdout();
        let _ = write!(stdout, "{question}"); // a closed stdout: the read below ends it
        let _ = stdout.flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    };
    let interactive = p2pchat::is_terminal(0);
    // A port from the question (not --port or the environment) is asked for again when
    // it will not do.
    let port_asked = interactive && cli.port.is_none();
    let asker: Option<config::Ask<'_>> = if interactive { Some(&mut ask) } else { None };
    let cfg = match config::from_cli(cli, asker) {
        Ok(cfg) => cfg,
        Err(e) => {
            log_sink::say(&format!("p2pchat: {e}"));
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    let asker: Option<config::Ask<'_>> = if port_asked { Some(&mut ask) } else { None };
    let result = match config::bind_asking(cfg, asker, Node::bind, RunError::port_problem) {
        Ok(node) => node.run(),
        Err(BindError::Bind(e)) => Err(e),
        Err(BindError::Config(e)) => {
            log_sink::say(&format!("p2pchat: {e}"));
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit_code::OK as u8),
        Err(e) => {
            log_sink::say(&format!("p2pchat: {e}"));
            let code = match e {
                RunError::Poll(_) | RunError::Output(_) => exit_code::RUNTIME,
                RunError::ChatLog(..) | RunError::Keys(_) => exit_code::USAGE,
                _ => exit_code::LISTEN,
            };
            ExitCode::from(code as u8)
        }
    }
}
