//! A log directory built from the input: a valid log laid out by the
//! harness (`durability_fuzz::recover`), then damaged by a list of
//! mutations (bit flips, zeroed or lost sectors, junk, truncated, extended,
//! removed, renamed or duplicated files, blanked, resealed or edited
//! headers, forged frames, raw files).
//!
//! `WalReader::open` must not panic or change a byte; when it succeeds, every
//! entry reads without error, the report agrees with them, replay follows
//! the replay rules, and (unless the mutations could forge frames) every
//! entry is one the log wrote at that LSN. A write open must recover the same
//! entries and repair the directory so that reopening finds no problem and
//! the same entries, and appends work.
#![no_main]

use durability_fuzz::recover::{run, RecoverInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: RecoverInput| run(&input));
