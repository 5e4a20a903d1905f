//! What the library cannot return it reports through `tracing` (never on
//! standard error): a panicking `on_durable` callback is an error event
//! with the panic's message, delivered on the log's own thread to the
//! application's subscriber. This file's process installs a global
//! subscriber that records every event, so it holds this one test.

use std::sync::{Arc, Mutex};

use durability::{Config, Op, RunId, SyncMode, Wal};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event: its level and its fields, as `name=value`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(event.metadata().level().to_string());
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_panicking_callback_is_an_error_event_not_a_print() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), Config::default().sync_mode(SyncMode::Strict)).unwrap();
    let run = RunId::from_bytes([1; 16]);
    let op = [Op::Write {
        key: b"k",
        value: b"v",
        version: 1,
    }];
    let first = wal.submit_txn(run, 1, &op).unwrap();
    wal.on_durable(first, |_| panic!("the callback's own panic"));
    let (tx, rx) = std::sync::mpsc::channel();
    let second = wal.submit_txn(run, 2, &op).unwrap();
    wal.on_durable(second, move |r| tx.send(r.is_ok()).unwrap());
    // The other callbacks still run.
    assert!(rx.recv().unwrap());
    wal.close().unwrap();
    let events = recorder.0.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e.starts_with("ERROR")
            && e.contains("an on_durable callback panicked")
            && e.contains("the callback's own panic")),
        "{events:?}"
    );
}
