//! The frame codec over plain buffers: round trips, every corruption kind at
//! its offset, and properties over arbitrary and mutated bytes.

use durability::format::frame::{self, Decoder, FRAME_OVERHEAD, HEADER_LEN, MIN_PAYLOAD};
use durability::{BorrowedEntry, EntryKind, Error, RunId, WalEntry};
use proptest::prelude::*;
use uuid::Uuid;

fn run(n: u8) -> RunId {
    RunId::from_bytes([n; 16])
}

/// One entry of each kind, with field values whose lengths are not powers of
/// two (so no single bit flip can turn a length into zero).
fn one_of_each() -> Vec<WalEntry> {
    vec![
        WalEntry::BeginTxn {
            txn_id: 7,
            run_id: run(1),
            timestamp: 1_700_000_000_000_000,
        },
        WalEntry::Write {
            run_id: run(1),
            key: b"agent/step/0001".to_vec(),
            value: b"{\"tool\":\"search\",\"ok\":true}".to_vec(),
            version: 3,
        },
        WalEntry::Delete {
            run_id: run(1),
            key: b"agent/scratch".to_vec(),
            version: 4,
        },
        WalEntry::CommitTxn {
            txn_id: 7,
            run_id: run(1),
        },
        WalEntry::AbortTxn {
            txn_id: 8,
            run_id: run(2),
        },
        WalEntry::Checkpoint {
            snapshot_id: Uuid::from_bytes([9; 16]),
            version: 99,
            active_runs: vec![run(1), run(2), run(3)],
        },
        WalEntry::Truncate { from: 4096 },
        WalEntry::Raft {
            index: 12,
            term: 3,
            data: b"{\"leader\":1}".to_vec(),
        },
    ]
}

fn decode_all(buf: &[u8], seed: u32) -> Result<Vec<WalEntry>, Error> {
    let dec = Decoder::default();
    let mut pos = 0;
    let mut out = Vec::new();
    while let Some(f) = dec.decode(buf, pos, seed)? {
        out.push(f.entry.to_owned());
        pos += f.len;
    }
    Ok(out)
}

#[test]
fn every_variant_round_trips() {
    for e in one_of_each() {
        let bytes = frame::encode_entry(&e);
        assert_eq!(bytes.len(), frame::frame_len(&e.as_borrowed()));
        let f = Decoder::default().decode(&bytes, 0, 0).unwrap().unwrap();
        assert_eq!(f.len, bytes.len());
        assert_eq!(f.entry.to_owned(), e);
        assert_eq!(f.entry.kind(), e.kind());
        assert_eq!(bytes[4], e.kind().tag(), "type tag of {e:?}");
        assert_eq!(f.entry.run_id(), e.run_id());
        assert_eq!(f.entry.txn_id(), e.txn_id());
        assert_eq!(f.entry.version(), e.version());
        assert_eq!(f.entry.is_txn_boundary(), e.is_txn_boundary());
        assert_eq!(f.entry.is_checkpoint(), e.is_checkpoint());
    }
}

#[test]
fn entry_helpers_follow_the_spec() {
    let [begin, write, delete, commit, abort, ckpt, trunc, raft]: [WalEntry; 8] =
        one_of_each().try_into().unwrap();
    assert_eq!(begin.txn_id(), Some(7));
    assert_eq!(write.txn_id(), None);
    assert_eq!(write.version(), Some(3));
    assert_eq!(delete.version(), Some(4));
    assert_eq!(commit.version(), None);
    assert_eq!(ckpt.run_id(), None);
    assert_eq!(ckpt.version(), Some(99));
    assert!(begin.is_txn_boundary() && commit.is_txn_boundary() && abort.is_txn_boundary());
    assert!(!write.is_txn_boundary() && !ckpt.is_txn_boundary());
    assert!(ckpt.is_checkpoint() && !begin.is_checkpoint());
    // A truncation and a Raft entry's identity belong to no run.
    for e in [&trunc, &raft] {
        assert_eq!(e.run_id(), None);
        assert_eq!(e.txn_id(), None);
        assert_eq!(e.version(), None);
        assert!(!e.is_txn_boundary() && !e.is_checkpoint());
    }
    let (t, r) = (frame::encode_entry(&trunc), frame::encode_entry(&raft));
    let dec = Decoder::default();
    assert_eq!(
        dec.decode(&t, 0, 0).unwrap().unwrap().entry.truncate_from(),
        Some(4096)
    );
    assert_eq!(
        dec.decode(&r, 0, 0).unwrap().unwrap().entry.raft(),
        Some((12, 3, &b"{\"leader\":1}"[..]))
    );
    for (i, k) in EntryKind::ALL.iter().enumerate() {
        assert_eq!(k.tag() as usize, i + 1);
        assert_eq!(EntryKind::from_tag(k.tag()), Some(*k));
    }
    assert_eq!(EntryKind::from_tag(0), None);
    assert_eq!(EntryKind::from_tag(9), None);
}

#[test]
fn run_id_parses_and_prints() {
    let r = RunId::new();
    let s = r.to_string();
    assert_eq!(s.parse::<RunId>().unwrap(), r);
    assert!("not-a-uuid".parse::<RunId>().is_err());
    assert_ne!(RunId::new(), r);
}

#[test]
fn a_stream_of_frames_decodes_in_order() {
    let mut buf = Vec::new();
    for e in one_of_each() {
        frame::encode_to_vec(&e.as_borrowed(), 0, &mut buf).unwrap();
    }
    assert_eq!(decode_all(&buf, 0).unwrap(), one_of_each());
    // Zero padding after the frames ends the stream, whatever its length.
    for pad in 0..12 {
        let mut padded = buf.clone();
        padded.resize(buf.len() + pad, 0);
        assert_eq!(decode_all(&padded, 0).unwrap(), one_of_each());
    }
}

#[test]
fn the_seed_binds_a_frame_to_its_position() {
    let e = &one_of_each()[1];
    let mut buf = Vec::new();
    frame::encode_to_vec(&e.as_borrowed(), 0xDEAD_BEEF, &mut buf).unwrap();
    assert!(Decoder::default()
        .decode(&buf, 0, 0xDEAD_BEEF)
        .unwrap()
        .is_some());
    assert!(matches!(
        Decoder::default().decode(&buf, 0, 0),
        Err(Error::Checksum { .. })
    ));
}

/// Every single-bit flip anywhere in a frame, for one frame of each type, is
/// detected: the decoder never hands back the flipped frame as valid.
#[test]
fn every_bit_flip_in_every_entry_type_is_detected() {
    let dec = Decoder::default();
    let mut tried = 0;
    for e in one_of_each() {
        let bytes = frame::encode_entry(&e);
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                let got = dec.decode(&bad, 0, 0);
                assert!(
                    !matches!(got, Ok(Some(_))),
                    "{:?}: flip of byte {byte} bit {bit} accepted",
                    e.kind()
                );
                if byte >= HEADER_LEN {
                    // The length is intact, so the CRC catches it.
                    assert!(matches!(got, Err(Error::Checksum { .. })), "{got:?}");
                }
                tried += 1;
            }
        }
    }
    assert!(tried > 6 * 8 * 50);
}

#[test]
fn each_corruption_kind_names_its_offset() {
    let dec = Decoder::new(1024);
    let good = frame::encode_entry(&one_of_each()[1]);
    let prefix = frame::encode_entry(&one_of_each()[0]);
    let at = prefix.len();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        let mut all = prefix.clone();
        all.extend_from_slice(&b);
        all
    };
    let check = |buf: Vec<u8>, want: &dyn Fn(&Error) -> bool| {
        assert!(dec.decode(&buf, 0, 0).unwrap().is_some());
        let err = dec.decode(&buf, at, 0).unwrap_err();
        assert!(want(&err), "unexpected {err:?}");
        assert_eq!(err.location().unwrap().offset, at as u64);
        assert!(err.to_string().contains(&format!("offset {at}")), "{err}");
        assert!(err.is_corruption());
    };
    // Length beyond the limit.
    check(
        with(&|b| b[..4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes())),
        &|e| {
            matches!(
                e,
                Error::TooLarge {
                    len: 0xFFFF_FFFF,
                    max: 1024,
                    ..
                }
            )
        },
    );
    // Length within the limit but past the buffer.
    check(
        with(&|b| b[..4].copy_from_slice(&1000u32.to_le_bytes())),
        &|e| matches!(e, Error::Truncated { needed: 1009, .. }),
    );
    // Length below the smallest entry.
    check(
        with(&|b| b[..4].copy_from_slice(&3u32.to_le_bytes())),
        &|e| matches!(e, Error::TooSmall { len: 3, .. }),
    );
    // A payload byte flipped.
    check(with(&|b| b[HEADER_LEN + 3] ^= 0x10), &|e| {
        matches!(e, Error::Checksum { .. })
    });
    // CRC truncated: the buffer ends inside the CRC.
    let mut short = with(&|_| {});
    short.truncate(short.len() - 2);
    check(short, &|e| matches!(e, Error::Truncated { .. }));
    // Only part of the length field left.
    let mut stub = prefix.clone();
    stub.extend_from_slice(&[7, 0]);
    check(stub, &|e| {
        matches!(
            e,
            Error::Truncated {
                needed: 4,
                available: 2,
                ..
            }
        )
    });
}

/// Re-frames `payload` under `tag` with a correct CRC, so the decoder gets
/// past the checksum to the tag and payload checks.
fn reframe(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.push(tag);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[4..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn unknown_tags_mismatched_tags_and_invalid_payloads_are_typed() {
    let e = &one_of_each()[1];
    let bytes = frame::encode_entry(e);
    let payload = &bytes[HEADER_LEN..bytes.len() - 4];
    let dec = Decoder::default();
    match dec.decode(&reframe(9, payload), 0, 0) {
        Err(Error::UnknownType { tag: 9, .. }) => {}
        other => panic!("{other:?}"),
    }
    match dec.decode(&reframe(EntryKind::Delete.tag(), payload), 0, 0) {
        Err(Error::TypeMismatch {
            tag: 3,
            payload_tag: 2,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // The root's discriminant set to an unknown variant: bytecheck rejects it.
    let mut p = payload.to_vec();
    let root = p.len() - MIN_PAYLOAD;
    p[root] = 0x7F;
    match dec.decode(&reframe(2, &p), 0, 0) {
        Err(Error::InvalidPayload { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("{other:?}"),
    }
    // A key length pointing past the payload. The message names offsets in
    // the payload, not memory addresses: the same on every run and buffer.
    let mut p = payload.to_vec();
    let key_len_at = root + 1 + 16 + 4;
    p[key_len_at..key_len_at + 4].copy_from_slice(&10_000u32.to_le_bytes());
    let framed = reframe(2, &p);
    let copy = framed.clone();
    let (
        Err(Error::InvalidPayload { detail: d1, .. }),
        Err(Error::InvalidPayload { detail: d2, .. }),
    ) = (dec.decode(&framed, 0, 0), dec.decode(&copy, 0, 0))
    else {
        panic!("expected invalid payloads")
    };
    assert_eq!(d1, d2);
    assert!(d1.contains("payload"), "{d1}");
    // Junk in the root's padding (a CommitTxn uses 25 of its 41 bytes).
    let c = frame::encode_entry(&one_of_each()[3]);
    let mut p = c[HEADER_LEN..c.len() - 4].to_vec();
    *p.last_mut().unwrap() = 1;
    match dec.decode(&reframe(4, &p), 0, 0) {
        Err(Error::InvalidPayload { detail, .. }) => assert!(detail.contains("padding")),
        other => panic!("{other:?}"),
    }
    // A gap between the out-of-line data and the root.
    let mut p = vec![0u8];
    p.extend_from_slice(&c[HEADER_LEN..c.len() - 4]);
    assert!(matches!(
        dec.decode(&reframe(4, &p), 0, 0),
        Err(Error::InvalidPayload { .. })
    ));
}

#[test]
fn encode_into_a_short_slice_is_an_error_not_a_panic() {
    let e = &one_of_each()[1];
    let need = frame::frame_len(&e.as_borrowed());
    let mut small = vec![0u8; need - 1];
    assert!(matches!(
        frame::encode_into(&e.as_borrowed(), 0, &mut small),
        Err(Error::EntryTooLarge { .. })
    ));
    let mut exact = vec![0u8; need];
    assert_eq!(
        frame::encode_into(&e.as_borrowed(), 0, &mut exact).unwrap(),
        need
    );
    assert_eq!(exact, frame::encode_entry(e));
    assert_eq!(need, frame::payload_len(&e.as_borrowed()) + FRAME_OVERHEAD);
}

fn arb_run() -> impl Strategy<Value = RunId> {
    any::<[u8; 16]>().prop_map(RunId::from_bytes)
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..9000),
    ]
}

fn arb_entry() -> impl Strategy<Value = WalEntry> {
    prop_oneof![
        (any::<u64>(), arb_run(), any::<u64>()).prop_map(|(txn_id, run_id, timestamp)| {
            WalEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            }
        }),
        (arb_run(), arb_bytes(), arb_bytes(), any::<u64>()).prop_map(
            |(run_id, key, value, version)| WalEntry::Write {
                run_id,
                key,
                value,
                version
            }
        ),
        (arb_run(), arb_bytes(), any::<u64>()).prop_map(|(run_id, key, version)| {
            WalEntry::Delete {
                run_id,
                key,
                version,
            }
        }),
        (any::<u64>(), arb_run())
            .prop_map(|(txn_id, run_id)| WalEntry::CommitTxn { txn_id, run_id }),
        (any::<u64>(), arb_run())
            .prop_map(|(txn_id, run_id)| WalEntry::AbortTxn { txn_id, run_id }),
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::collection::vec(arb_run(), 0..40)
        )
            .prop_map(|(s, version, active_runs)| WalEntry::Checkpoint {
                snapshot_id: Uuid::from_bytes(s),
                version,
                active_runs,
            }),
        any::<u64>().prop_map(|from| WalEntry::Truncate { from }),
        (any::<u64>(), any::<u64>(), arb_bytes()).prop_map(|(index, term, data)| WalEntry::Raft {
            index,
            term,
            data
        }),
    ]
}

/// Decodes every frame from the front of `buf`; each accepted frame must
/// re-encode to exactly its bytes.
fn accepted_frames_reencode(buf: &[u8], seed: u32) {
    let dec = Decoder::default();
    let mut pos = 0;
    while let Ok(Some(f)) = dec.decode(buf, pos, seed) {
        let mut again = Vec::new();
        frame::encode_to_vec(&f.entry.as_borrowed(), seed, &mut again).unwrap();
        assert_eq!(&buf[pos..pos + f.len], &again[..]);
        pos += f.len;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_round_trip(e in arb_entry(), seed in any::<u32>()) {
        let mut buf = Vec::new();
        let n = frame::encode_to_vec(&e.as_borrowed(), seed, &mut buf).unwrap();
        prop_assert_eq!(n, buf.len());
        let f = Decoder::default().decode(&buf, 0, seed).unwrap().unwrap();
        prop_assert_eq!(f.len, n);
        prop_assert_eq!(f.entry.to_owned(), e.clone());
        // The borrowed and owned forms archive to the same bytes.
        let b: BorrowedEntry<'_> = (&e).into();
        prop_assert_eq!(b.to_owned(), e.clone());
        let mut again = Vec::new();
        frame::encode_to_vec(&f.entry.as_borrowed(), seed, &mut again).unwrap();
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn prop_random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512), seed in any::<u32>()) {
        accepted_frames_reencode(&buf, seed);
    }

    #[test]
    fn prop_mutated_frames_never_panic_and_never_lie(
        entries in proptest::collection::vec(arb_entry(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        fix_crc in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        for e in &entries {
            frame::encode_to_vec(&e.as_borrowed(), 0, &mut buf).unwrap();
        }
        for (i, v) in &flips {
            let at = i.index(buf.len());
            buf[at] = *v;
        }
        if fix_crc {
            // Repair the first frame's CRC, if its length still fits, so the
            // mutation reaches rkyv validation.
            let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            if len + FRAME_OVERHEAD <= buf.len() {
                let crc = crc32c::crc32c(&buf[4..5 + len]);
                buf[5 + len..9 + len].copy_from_slice(&crc.to_le_bytes());
            }
        }
        accepted_frames_reencode(&buf, 0);
    }

    #[test]
    fn prop_payload_mutations_with_fixed_crc_are_canonical_or_rejected(
        e in arb_entry(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        tag in 1u8..=6,
    ) {
        let bytes = frame::encode_entry(&e);
        let mut payload = bytes[HEADER_LEN..bytes.len() - 4].to_vec();
        for (i, v) in &flips {
            let at = i.index(payload.len());
            payload[at] = *v;
        }
        accepted_frames_reencode(&reframe(tag, &payload), 0);
    }

    /// The decoder accepts a payload through a layout check on its raw
    /// bytes, in place of rkyv's validation; mutations aimed at the root
    /// (discriminant, relative pointers, lengths, padding) must be judged
    /// exactly as the reference path (bytecheck, then the canonical check)
    /// judges them, and accepted frames must be the same entry.
    #[test]
    fn prop_fast_path_agrees_with_the_reference_path(
        e in arb_entry(),
        flips in proptest::collection::vec((0usize..MIN_PAYLOAD, any::<u8>(), any::<bool>()), 1..4),
        tag_shift in 0u8..3,
    ) {
        let bytes = frame::encode_entry(&e);
        let mut payload = bytes[HEADER_LEN..bytes.len() - 4].to_vec();
        let root = payload.len() - MIN_PAYLOAD;
        for &(i, v, nudge) in &flips {
            // A nudge moves a byte by one (a pointer or length off by one);
            // otherwise the byte is replaced.
            payload[root + i] = if nudge { payload[root + i].wrapping_add(v % 3).wrapping_sub(1) } else { v };
        }
        let tag = bytes[4].wrapping_add(tag_shift) % 10;
        let framed = reframe(tag, &payload);
        let fast = Decoder::default().decode(&framed, 0, 0);
        let reference = frame::decode_payload_reference(tag, &payload);
        match (&fast, &reference) {
            (Ok(Some(f)), Ok(r)) => prop_assert_eq!(f.entry.to_owned(), r.to_owned()),
            (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b)),
            (a, b) => prop_assert!(false, "fast {:?} vs reference {:?}", a, b),
        }
    }
}

/// The high bit of the type byte marks a frame whose unit (a batch)
/// continues: it is covered by the CRC, decodes to the same entry with
/// `continues` set, and an unknown tag under it is reported as the byte read.
#[test]
fn the_unit_bit_decodes_to_the_same_entry_and_is_checksummed() {
    for e in one_of_each() {
        let b = e.as_borrowed();
        let mut plain = vec![0u8; frame::frame_len(&b)];
        let mut marked = plain.clone();
        frame::encode_into(&b, 5, &mut plain).unwrap();
        frame::encode_unit_frame(&b, 5, true, &mut marked).unwrap();
        assert_eq!(
            marked[HEADER_LEN - 1],
            plain[HEADER_LEN - 1] | frame::CONTINUES
        );
        let d = Decoder::default();
        let p = d.decode(&plain, 0, 5).unwrap().unwrap();
        let m = d.decode(&marked, 0, 5).unwrap().unwrap();
        assert!(!p.continues && m.continues);
        assert_eq!(m.entry.to_owned(), e);
        assert_eq!(m.len, p.len);
        // Clearing the bit without the CRC is damage.
        let mut cleared = marked.clone();
        cleared[HEADER_LEN - 1] &= !frame::CONTINUES;
        assert!(matches!(
            d.decode(&cleared, 0, 5),
            Err(Error::Checksum { .. })
        ));
    }
    // An unknown tag with the bit set: reported as the byte on disk.
    let b = one_of_each()[0].clone();
    let mut buf = vec![0u8; frame::frame_len(&b.as_borrowed())];
    frame::encode_into(&b.as_borrowed(), 0, &mut buf).unwrap();
    buf[HEADER_LEN - 1] = 0x80 | 0x7E;
    let n = buf.len();
    let crc = crc32c::crc32c(&buf[4..n - 4]);
    buf[n - 4..].copy_from_slice(&crc.to_le_bytes());
    match Decoder::default().decode(&buf, 0, 0) {
        Err(Error::UnknownType { tag: 0xFE, .. }) => {}
        other => panic!("{other:?}"),
    }
}
