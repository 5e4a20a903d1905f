//! `walctl`: the command-line face of the `durability` write-ahead log.
//!
//! `demo` shows the log end to end (agent runs, a real crash, recovery,
//! replay, diff, verify); `bench` measures it; `verify`, `dump`, `stats`,
//! `replay` and `diff` inspect a log read-only, even while another process
//! writes to it; `salvage` copies every valid committed transaction of a
//! damaged log (discarded segments included) into a new log.
//!
//! Exit status of the inspection commands (`verify`, `dump`, `stats`,
//! `replay`, `diff`), one contract for all:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | clean |
//! | 1 | damage found: mid-log corruption, a bad header, anything that lost or hides acknowledged data |
//! | 2 | could not run: bad arguments, no such directory, not a log, I/O error |
//! | 3 | only a torn tail: what a crash leaves; the log is consistent up to its valid end, a write open cuts the tail |
//!
//! `stats`, `replay` and `diff` print what they can read, then (when the
//! log is not clean) a verdict line on stderr. `salvage` exits 0 when it
//! wrote the new log, 2 when it could not.

mod bench;
mod common;
mod crash;
mod demo;
mod diff;
mod dump;
mod replay;
mod salvage;
mod stats;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::common::{exit_code_of, is_broken_pipe, one_line, EXIT_CONTRACT, EXIT_USAGE};

#[derive(Parser, Debug)]
#[command(
    name = "walctl",
    version,
    about = "Demo, benchmark and inspect a durability write-ahead log",
    after_help = help_text()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The text after `--help`: what the inspection commands promise, and the
/// exit-code contract.
fn help_text() -> String {
    format!(
        "Inspection commands (verify, dump, stats, replay, diff) are read-only: they never change a \
         byte of the log, take no lock, and work while another process writes to it. salvage reads \
         its source read-only and writes only the new log.\n\n{EXIT_CONTRACT}"
    )
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate agent runs, crash a writer for real, recover, replay, diff, verify.
    Demo(demo::Args),
    /// Measure appends, commit latency, replay and recovery.
    Bench(bench::Args),
    /// Check every segment and frame (read-only), past the first problem; exit 1 damage, 3 torn tail.
    Verify(verify::Args),
    /// Print every entry in log order (read-only).
    Dump(dump::Args),
    /// Summarise a log: segments, bytes, entries, runs, transactions, time span.
    Stats(stats::Args),
    /// Print the committed transactions of one run, in order (read-only).
    Replay(replay::Args),
    /// Print the keys whose final state differs between two runs (read-only).
    Diff(diff::Args),
    /// Copy every valid committed transaction of SRC (discarded segments included) into a new log DEST.
    Salvage(salvage::Args),
    /// Internal: the writer process `demo` crashes.
    #[command(name = "__crash-writer", hide = true)]
    CrashWriter(crash::CrashArgs),
}

fn main() -> ExitCode {
    // No panic should escape, but if one does: one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("walctl: internal error: {msg}{at}");
        std::process::exit(i32::from(EXIT_USAGE));
    }));

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage
            // errors print to stderr and exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Salvage(a) => salvage::run(a),
        Command::CrashWriter(a) => crash::crash_writer(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walctl: error: {}", one_line(&e));
            ExitCode::from(exit_code_of(&e))
        }
    }
}
