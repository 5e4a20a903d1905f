//! Helpers shared by the subcommands: opening a log read-only with clear
//! errors, exit codes, argument parsing, output and formatting.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use durability::format::header::file_name;
use durability::{Config, EntryRef, Error, LogEntry, Problem, ProblemClass, RunId, WalReader};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Exit status: success, the log is clean.
pub const EXIT_OK: u8 = 0;
/// Exit status: damage found (mid-log corruption, a bad header, anything
/// that lost or hides acknowledged data).
pub const EXIT_DAMAGED: u8 = 1;
/// Exit status: could not run (bad arguments, no such directory, not a log, I/O).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: only a torn tail, what a crash leaves: the log is
/// consistent up to its valid end, and a write open cuts the tail.
pub const EXIT_TORN_TAIL: u8 = 3;

/// The exit-code contract, as `--help` and the docs state it.
pub const EXIT_CONTRACT: &str =
    "Exit status of the inspection commands (verify, dump, stats, replay, diff): \
     0 clean; 1 damage found (mid-log corruption, a bad header, anything that lost or hides \
     acknowledged data); 2 could not run (bad arguments, no such directory, not a log, I/O error); \
     3 only a torn tail (what a crash leaves: the log is consistent up to its valid end, and a \
     write open cuts the tail). salvage: 0 done, 2 could not run.";

/// The exit status for what a read-only open found (`None`: nothing).
pub fn exit_for(class: Option<ProblemClass>) -> u8 {
    match class {
        None => EXIT_OK,
        Some(ProblemClass::TornTail) => EXIT_TORN_TAIL,
        Some(_) => EXIT_DAMAGED,
    }
}

/// The verdict word for an exit status: "OK", "TORN TAIL" or "DAMAGED".
pub fn verdict_word(code: u8) -> &'static str {
    match code {
        EXIT_OK => "OK",
        EXIT_TORN_TAIL => "TORN TAIL",
        _ => "DAMAGED",
    }
}

/// Says on stderr that `run` has no entry in the readable part of the
/// log: if the log is damaged, where, and that `walctl salvage` can
/// extract what lies past the damage.
pub fn note_missing_run(reader: &WalReader, run: RunId, dir: &Path) {
    match &reader.recovery_report().problem {
        Some(p) => eprintln!(
            "walctl: note: run {run} has no entries in the readable part of this log; \
             entries past the {} at LSN {} ({} at offset {}) are not readable: \
             `walctl salvage {} NEW_DIR` extracts every valid transaction past it",
            p.class,
            p.lsn,
            p.file,
            p.offset,
            dir.display()
        ),
        None => eprintln!(
            "walctl: note: run {run} has no entries in this log (`walctl stats` lists the runs)"
        ),
    }
}

/// Prints the verdict line of `stats`, `replay` and `diff` on stderr when
/// the log is not clean, and returns the exit status.
pub fn report_verdict(reader: &WalReader) -> u8 {
    let p = reader.recovery_report().problem.as_ref();
    let code = exit_for(p.map(|p| p.class));
    if let Some(p) = p {
        let what = if code == EXIT_TORN_TAIL {
            "the log ends in a torn tail (what a crash leaves; a write open cuts it)"
        } else {
            "the log is damaged; `walctl verify` lists every problem, `walctl salvage` extracts what lies past it"
        };
        eprintln!(
            "walctl: {}: {what}: {}",
            verdict_word(code),
            ProblemOut::from(p).describe()
        );
    }
    code
}

/// An error that means the log itself is damaged (exit 1), as opposed to
/// the tool being unable to run (exit 2, every other error).
#[derive(Debug)]
pub struct Damaged {
    /// The one-line message.
    pub msg: String,
    /// Where, when the damage has a location.
    pub problem: ProblemOut,
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Damaged {}

/// The exit status for an error that ended a command.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Damaged>().is_some() {
        EXIT_DAMAGED
    } else {
        EXIT_USAGE
    }
}

/// True if the error is a write to a closed pipe (`walctl dump | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// The error on one line: its chain joined with ": ", newlines flattened.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Parses a run id given on the command line.
pub fn parse_run(s: &str) -> Result<RunId> {
    s.trim()
        .parse::<RunId>()
        .map_err(|e| anyhow!("invalid run id {s:?}: expected a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8 ({e})"))
}

/// Parses an LSN given on the command line (decimal, or hex with `0x`).
pub fn parse_lsn(s: &str) -> Result<u64> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed
        .map_err(|e| anyhow!("invalid LSN {s:?}: expected a byte position such as 0 or 4096 ({e})"))
}

/// The configuration used to read logs: the defaults accept every entry a
/// log with default limits can hold.
pub fn read_config() -> Config {
    Config::default()
}

/// Opens the log in `dir` read-only: never writes a byte, takes no lock.
///
/// Bad input (a missing directory, a file, a directory without a log) is an
/// error (exit 2); a log too damaged to open at all is [`Damaged`] (exit 1).
///
/// A reader that runs while another process appends may catch a frame half
/// written and see it as a torn tail. So when the scan ends at a torn tail,
/// the log is scanned again a moment later: if the valid log has grown past
/// that point, the frame was being written, and the newer scan is used.
pub fn open_reader(dir: &Path) -> Result<WalReader> {
    check_dir(dir)?;
    let spin = spinner(format!("scanning {}", dir.display()));
    let mut reader = open_once(dir)?;
    for _ in 0..3 {
        let Some(p) = reader.recovery_report().problem.clone() else {
            break;
        };
        if p.class != ProblemClass::TornTail {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        let again = open_once(dir)?;
        let grew = again.recovery_report().end_lsn > p.lsn;
        reader = again;
        if !grew {
            break;
        }
    }
    spin.finish_and_clear();
    Ok(reader)
}

fn open_once(dir: &Path) -> Result<WalReader> {
    WalReader::open(dir, read_config()).map_err(|e| match e {
        Error::NotALog { .. } => anyhow!(
            "{} is not a log: it holds no segment files (named like 00000000000000000000.wal)",
            dir.display()
        ),
        e if e.is_corruption() => anyhow::Error::new(Damaged {
            msg: format!(
                "the log in {} is damaged and cannot be read: {e}",
                dir.display()
            ),
            problem: ProblemOut::from_error(&e, None),
        }),
        e => anyhow!("cannot open the log in {}: {e}", dir.display()),
    })
}

/// Checks that `dir` names an existing directory, with a one-line error.
pub fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("not a directory: {}", dir.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("no such directory: {}", dir.display())
        }
        Err(e) => bail!("cannot access {}: {e}", dir.display()),
    }
}

/// A problem in the form the tool prints and serialises.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemOut {
    /// `TornTail` or `MidLogCorruption`.
    pub class: ProblemClass,
    /// The segment file name, when known.
    pub segment: Option<String>,
    /// The byte offset in that file where the valid data ends.
    pub offset: Option<u64>,
    /// The LSN where the valid log ends.
    pub lsn: Option<u64>,
    /// What was found.
    pub detail: String,
}

impl From<&Problem> for ProblemOut {
    fn from(p: &Problem) -> Self {
        ProblemOut {
            class: p.class,
            segment: Some(p.file.clone()),
            offset: Some(p.offset),
            lsn: Some(p.lsn),
            detail: problem_detail(p),
        }
    }
}

/// A problem's detail without the location it repeats, if it starts with it.
pub fn problem_detail(p: &Problem) -> String {
    let prefix = format!("{}: ", p.location());
    p.detail
        .strip_prefix(&prefix)
        .unwrap_or(&p.detail)
        .to_string()
}

impl ProblemOut {
    /// A problem from an error met while iterating (bytes that changed
    /// after the scan validated them, or an unreadable frame).
    pub fn from_error(e: &Error, lsn: Option<u64>) -> Self {
        if let Error::SegmentHeader { segment, detail } = e {
            return ProblemOut {
                class: ProblemClass::MidLogCorruption,
                segment: Some(file_name(*segment)),
                offset: Some(0),
                lsn,
                detail: format!("segment header: {detail}"),
            };
        }
        let loc = e.location();
        ProblemOut {
            class: ProblemClass::MidLogCorruption,
            segment: loc.and_then(|l| l.segment).map(file_name),
            offset: loc.map(|l| l.offset),
            lsn,
            detail: e.to_string(),
        }
    }

    /// "torn tail in 00000000000000000003.wal at offset 4242 (LSN 1234): ..."
    pub fn describe(&self) -> String {
        let mut s = self.class.to_string();
        if let Some(seg) = &self.segment {
            s.push_str(&format!(" in {seg}"));
        }
        if let Some(off) = self.offset {
            s.push_str(&format!(" at offset {off}"));
        }
        if let Some(lsn) = self.lsn {
            s.push_str(&format!(" (LSN {lsn})"));
        }
        s.push_str(": ");
        s.push_str(&self.detail);
        s
    }
}

/// An error's text without the "segment F at offset N: " it starts with
/// (the problem line says where).
pub fn without_location(detail: &str) -> &str {
    match detail.split_once(": ") {
        Some((loc, rest)) if loc.starts_with("segment ") && loc.contains(" at offset ") => rest,
        _ => detail,
    }
}

/// One entry as JSON: absent fields are null, bytes are hex.
#[derive(Debug, Serialize)]
pub struct EntryJson {
    pub lsn: u64,
    pub segment: String,
    pub offset: usize,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub run_id: Option<RunId>,
    pub txn_id: Option<u64>,
    pub version: Option<u64>,
    pub key: Option<String>,
    pub value: Option<String>,
    pub timestamp: Option<u64>,
    pub snapshot_id: Option<String>,
    pub active_runs: Option<Vec<RunId>>,
    /// A Truncate's first deleted LSN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// A Raft entry's index, term and data (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl EntryJson {
    pub fn new(e: &LogEntry<'_>) -> Self {
        let x = e.entry;
        let checkpoint = x.is_checkpoint();
        EntryJson {
            lsn: e.lsn,
            segment: file_name(e.segment),
            offset: e.offset,
            kind: x.kind().name(),
            run_id: x.run_id(),
            txn_id: x.txn_id(),
            version: x.version(),
            key: x.key().map(hex::encode),
            value: x.value().map(hex::encode),
            timestamp: x.timestamp(),
            snapshot_id: x.snapshot_id().map(|u| u.to_string()),
            active_runs: checkpoint.then(|| x.active_runs().to_vec()),
            from: x.truncate_from(),
            raft_index: x.raft().map(|r| r.0),
            raft_term: x.raft().map(|r| r.1),
            data: x.raft().map(|r| hex::encode(r.2)),
        }
    }
}

/// Writes one JSON value and a newline.
pub fn write_json_line(out: &mut impl Write, v: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_vec(v)?;
    line.push(b'\n');
    out.write_all(&line)?;
    Ok(())
}

/// Bytes for a human: a quoted, escaped string when they are printable
/// UTF-8, hex otherwise; cut after `max` characters with the full length.
pub fn show_bytes(b: &[u8], max: usize) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            let n = s.chars().count();
            if n <= max {
                format!("{s:?}")
            } else {
                let cut: String = s.chars().take(max).collect();
                format!("{cut:?}… ({} B)", b.len())
            }
        }
        _ => {
            let n = b.len().min(max / 2);
            let more = if n < b.len() {
                format!("… ({} B)", b.len())
            } else {
                String::new()
            };
            format!("0x{}{more}", hex::encode(&b[..n]))
        }
    }
}

/// A one-line description of an entry's contents (after its kind).
pub fn describe_entry(x: &EntryRef<'_>, max_value: usize) -> String {
    use durability::EntryKind::*;
    let run = x.run_id().map(|r| r.to_string()).unwrap_or_default();
    match x.kind() {
        BeginTxn => format!(
            "run {run} txn {} at {}",
            x.txn_id().unwrap_or(0),
            fmt_micros(x.timestamp().unwrap_or(0))
        ),
        CommitTxn | AbortTxn => format!("run {run} txn {}", x.txn_id().unwrap_or(0)),
        Write => format!(
            "run {run} v{} {} = {}",
            x.version().unwrap_or(0),
            show_bytes(x.key().unwrap_or_default(), 60),
            show_bytes(x.value().unwrap_or_default(), max_value)
        ),
        Delete => format!(
            "run {run} v{} {}",
            x.version().unwrap_or(0),
            show_bytes(x.key().unwrap_or_default(), 60)
        ),
        Checkpoint => format!(
            "snapshot {} v{} active runs {}",
            x.snapshot_id().map(|u| u.to_string()).unwrap_or_default(),
            x.version().unwrap_or(0),
            x.active_runs().len()
        ),
        Truncate => format!(
            "deletes LSN {}.. up to this entry",
            x.truncate_from().unwrap_or(0)
        ),
        Raft => {
            let (index, term, data) = x.raft().unwrap_or((0, 0, &[]));
            format!(
                "index {index} term {term} data {}",
                show_bytes(data, max_value)
            )
        }
    }
}

/// Microseconds since the epoch as an ISO-8601 UTC time.
pub fn fmt_micros(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A duration for a human: "2.5 s", "31 ms", "420 µs".
pub fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// Bytes in decimal units: "52.3 MB".
pub fn fmt_bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// A large count for a human: "1.93 M", "375.1 K".
pub fn fmt_count(r: f64) -> String {
    if r >= 1e9 {
        format!("{:.2} G", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} K", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Bytes in binary units, for sizes set in powers of two: "8 MiB".
pub fn fmt_size(b: u64) -> String {
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

/// An integer with thousands separators: "1,234,567".
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:>11} [{bar:30.cyan/blue}] {human_pos}/{human_len} ({eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// A spinner on stderr for a step that may take a while; drawn (and ticking)
/// only when stderr is a terminal.
pub fn spinner(msg: String) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_message(msg);
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}
