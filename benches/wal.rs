//! Criterion benchmarks (extended by the benchmark suite).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use durability::frame::{self, Decoder};
use durability::{BorrowedEntry, RunId};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let run = RunId::from_bytes([7; 16]);
    let key = [1u8; 16];
    let value = [2u8; 100];
    let entry = BorrowedEntry::Write {
        run_id: run,
        key: &key,
        value: &value,
        version: 1,
    };
    let mut buf = vec![0u8; frame::frame_len(&entry)];
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_w1", |b| {
        b.iter(|| frame::encode_into(black_box(&entry), 0, &mut buf).unwrap())
    });
    frame::encode_into(&entry, 0, &mut buf).unwrap();
    let dec = Decoder::default();
    g.bench_function("decode_w1", |b| {
        b.iter(|| dec.decode(black_box(&buf), 0, 0).unwrap().unwrap().len)
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
