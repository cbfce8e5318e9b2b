//! The `p2pchat` binary: parse the command line, set up logging, run the reactor.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Parser;
use p2pchat::config::{self, Cli, exit_code};
use p2pchat::reactor::{Node, RunError};

fn main() -> ExitCode {
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
            eprintln!("p2pchat: {line} (see p2pchat --help)");
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .env()
        .init();

    let mut ask = |question: &str| -> Option<String> {
        print!("{question}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    };
    let interactive = p2pchat::is_terminal(0);
    let asker: Option<config::Ask<'_>> = if interactive { Some(&mut ask) } else { None };
    let cfg = match config::from_cli(cli, asker) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("p2pchat: {e}");
            return ExitCode::from(exit_code::USAGE as u8);
        }
    };
    let result = Node::bind(cfg).and_then(Node::run);
    match result {
        Ok(()) => ExitCode::from(exit_code::OK as u8),
        Err(e) => {
            eprintln!("p2pchat: {e}");
            let code = match e {
                RunError::Poll(_) | RunError::Output(_) => exit_code::RUNTIME,
                _ => exit_code::LISTEN,
            };
            ExitCode::from(code as u8)
        }
    }
}
