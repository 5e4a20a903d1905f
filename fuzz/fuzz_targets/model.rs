//! Operations on a log (appends of every kind, syncs, checkpoints and
//! retention, reopens, process crashes, power cuts with lost sectors and bit
//! flips) checked against an in-memory model of its entries and committed
//! transactions (`durability_fuzz::model`).
#![no_main]

use durability_fuzz::model::{run, ModelInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ModelInput| run(&input));
