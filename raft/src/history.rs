//! A recorded client history of a key-value store and its linearizability
//! check (the Wing–Gong search with Lowe's memoisation, per key).
//!
//! Every operation is a register operation on one key: a write of a value
//! unique in the history, or a read that returned a value (`None`: the key
//! was absent). Each has the time it was invoked and, if it completed, the
//! time its answer arrived. A write whose outcome is unknown (the client
//! gave up: it may or may not have taken effect, now or later) has no
//! completion: it may be placed anywhere after its invocation, or nowhere.
//! A read that got no answer is not recorded (it changed nothing).
//!
//! A history is linearizable when its operations can be put in one order
//! that respects real time (an operation that completed before another was
//! invoked comes first) in which every read returns the latest write. Keys
//! are independent registers, so each key is checked alone: that is both
//! sound and complete for a store whose operations touch one key each.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Wrote this value (unique in the history).
    Write(u64),
    /// Read this value (`None`: no value).
    Read(Option<u64>),
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it (for the report only).
    pub client: u64,
    /// The key.
    pub key: u64,
    /// What it did.
    pub action: Action,
    /// When it was invoked (any monotonic unit, the same for every
    /// operation).
    pub invoked: u64,
    /// When its answer arrived; `None` for a write whose outcome is
    /// unknown.
    pub completed: Option<u64>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = match self.completed {
            Some(t) => t.to_string(),
            None => "?".into(),
        };
        match self.action {
            Action::Write(v) => write!(f, "client {} write v{v}", self.client)?,
            Action::Read(Some(v)) => write!(f, "client {} read v{v}", self.client)?,
            Action::Read(None) => write!(f, "client {} read nothing", self.client)?,
        }
        write!(f, " [{} .. {done}]", self.invoked)
    }
}

/// Why a history is not linearizable, or could not be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No order of this key's operations explains what was read.
    NotLinearizable {
        /// The key.
        key: u64,
        /// The completed operation no order could place: the search's
        /// furthest states all stopped before it.
        culprit: Operation,
        /// The key's operations around it, by invocation time.
        operations: Vec<Operation>,
    },
    /// The search of this key gave up after `limit` states.
    Undecided {
        /// The key.
        key: u64,
        /// The bound that was reached.
        limit: usize,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NotLinearizable {
                key,
                culprit,
                operations,
            } => {
                writeln!(
                    f,
                    "key {key} is not linearizable: no order explains {culprit}"
                )?;
                writeln!(f, "the key's operations around it:")?;
                for op in operations {
                    let mark = if op == culprit { " <-" } else { "" };
                    writeln!(f, "  {op}{mark}")?;
                }
                Ok(())
            }
            Verdict::Undecided { key, limit } => {
                write!(f, "key {key}: undecided after {limit} search states")
            }
        }
    }
}

/// The most search states one key may visit before the check gives up.
pub const SEARCH_LIMIT: usize = 2_000_000;

/// Checks `history`, key by key, from every key absent. `Ok` with the
/// number of operations checked, or the first key that fails.
pub fn check(history: &[Operation]) -> Result<usize, Verdict> {
    let mut keys: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(op.key).or_default().push(op.clone());
    }
    for (key, mut ops) in keys {
        ops.sort_by_key(|o| (o.invoked, o.completed));
        check_key(key, ops)?;
    }
    Ok(history.len())
}

/// The search of one key's operations (sorted by invocation).
///
/// A state is the set of operations already placed and the register's
/// value. From a state, an operation may be placed next if it was invoked
/// before every unplaced completed operation completed (otherwise that one
/// must come first). The search succeeds once every completed operation is
/// placed; a state seen before is not searched again (Lowe).
fn check_key(key: u64, ops: Vec<Operation>) -> Result<(), Verdict> {
    let n = ops.len();
    let words = n.div_ceil(64);
    let must = ops.iter().filter(|o| o.completed.is_some()).count();
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // Depth-first, with an explicit stack of (placed set, value, placed count).
    let mut stack: Vec<(Vec<u64>, Option<u64>, usize)> = vec![(vec![0; words], None, 0)];
    // The furthest state reached (most completed operations placed), for
    // the report.
    let mut furthest = (0, vec![0; words]);
    while let Some((placed, value, done)) = stack.pop() {
        if done == must {
            return Ok(());
        }
        if done > furthest.0 {
            furthest = (done, placed.clone());
        }
        if !seen.insert((placed.clone(), value)) {
            continue;
        }
        if seen.len() > SEARCH_LIMIT {
            return Err(Verdict::Undecided {
                key,
                limit: SEARCH_LIMIT,
            });
        }
        let is_placed = |i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
        // The earliest completion among unplaced completed operations: no
        // operation invoked after it may go before it.
        let horizon = (0..n)
            .filter(|&i| !is_placed(i))
            .filter_map(|i| ops[i].completed)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..n {
            if is_placed(i) {
                continue;
            }
            let op = &ops[i];
            if op.invoked > horizon {
                // Sorted by invocation: no later one may go next either.
                break;
            }
            let next = match op.action {
                Action::Write(v) => Some(v),
                Action::Read(r) if r == value => value,
                Action::Read(_) => continue,
            };
            let mut p = placed.clone();
            p[i / 64] |= 1 << (i % 64);
            let done = done + usize::from(op.completed.is_some());
            stack.push((p, next, done));
        }
    }
    // The culprit: the unplaced completed operation that completed first
    // in the furthest state.
    let placed = furthest.1;
    let at = (0..n)
        .filter(|&i| placed[i / 64] & (1 << (i % 64)) == 0 && ops[i].completed.is_some())
        .min_by_key(|&i| ops[i].completed)
        .unwrap_or(0);
    let culprit = ops[at].clone();
    let operations = ops[at.saturating_sub(REPORT_BEFORE)..n.min(at + REPORT_AFTER)].to_vec();
    Err(Verdict::NotLinearizable {
        key,
        culprit,
        operations,
    })
}

/// How many of a key's operations a report shows before its culprit.
const REPORT_BEFORE: usize = 24;
/// And after it (the culprit included).
const REPORT_AFTER: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: u64, v: u64, invoked: u64, completed: Option<u64>) -> Operation {
        Operation {
            client,
            key: 1,
            action: Action::Write(v),
            invoked,
            completed,
        }
    }

    fn r(client: u64, v: Option<u64>, invoked: u64, completed: u64) -> Operation {
        Operation {
            client,
            key: 1,
            action: Action::Read(v),
            invoked,
            completed: Some(completed),
        }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            r(1, None, 0, 1),
            w(1, 1, 2, Some(3)),
            r(2, Some(1), 4, 5),
            w(2, 2, 6, Some(7)),
            r(1, Some(2), 8, 9),
        ];
        assert_eq!(check(&h), Ok(5));
    }

    #[test]
    fn a_stale_read_is_caught() {
        // v2 was acknowledged before the read began; the read saw v1.
        let h = [
            w(1, 1, 0, Some(1)),
            w(1, 2, 2, Some(3)),
            r(2, Some(1), 4, 5),
        ];
        let e = check(&h).unwrap_err();
        assert!(matches!(e, Verdict::NotLinearizable { key: 1, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("no order explains client 2 read v1 [4 .. 5]"),
            "{e}"
        );
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Both writes overlap both reads: v2 then v1 explains them.
        let h = [
            w(1, 1, 0, Some(10)),
            w(2, 2, 0, Some(10)),
            r(3, Some(2), 1, 9),
            r(4, Some(1), 2, 11),
        ];
        assert_eq!(check(&h), Ok(4));
        // But two sequential reads cannot see them in both orders.
        let h = [
            w(1, 1, 0, Some(10)),
            w(2, 2, 0, Some(10)),
            r(3, Some(2), 11, 12),
            r(3, Some(1), 13, 14),
            r(4, Some(2), 15, 16),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        // Its client gave up; it applied after a later write.
        let late = [w(1, 1, 0, None), w(2, 2, 5, Some(6)), r(3, Some(1), 7, 8)];
        assert_eq!(check(&late), Ok(3));
        // Or never.
        let never = [w(1, 1, 0, None), r(2, None, 7, 8)];
        assert_eq!(check(&never), Ok(2));
        // But not before it was invoked.
        let early = [r(2, Some(1), 0, 1), w(1, 1, 2, None)];
        assert!(check(&early).is_err());
        // And once seen gone, a value cannot come back without a write.
        let back = [
            w(1, 1, 0, None),
            r(2, Some(1), 1, 2),
            w(2, 2, 3, Some(4)),
            r(3, Some(1), 5, 6),
        ];
        assert!(check(&back).is_err());
    }

    #[test]
    fn a_write_applied_twice_is_caught() {
        // A retried v1 applied again after v2: reads see v2, then v1.
        let h = [
            w(1, 1, 0, Some(1)),
            w(2, 2, 2, Some(3)),
            r(3, Some(2), 4, 5),
            r(3, Some(1), 6, 7),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut h = vec![w(1, 1, 0, Some(1))];
        h.push(Operation {
            key: 2,
            ..r(2, None, 2, 3)
        });
        assert_eq!(check(&h), Ok(2));
    }

    #[test]
    fn many_concurrent_operations_are_decided() {
        // 8 clients, 25 rounds of overlapping writes and reads that see
        // the round's last write: a wide search that memoisation keeps
        // small.
        let mut h = Vec::new();
        let mut v = 0;
        for round in 0..25u64 {
            let t = round * 100;
            for c in 0..4 {
                v += 1;
                h.push(w(c, v, t, Some(t + 50)));
            }
            for c in 4..8 {
                h.push(r(c, Some(v), t + 60, t + 70));
            }
        }
        assert_eq!(check(&h), Ok(200));
    }
}
