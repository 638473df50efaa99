//! Segments of the audit trail: the entries of reads and refusals, moved from the
//! journal by the chainer, stored [`ENTRIES`] consecutive entries to a row of
//! `audit_segment` (their journal lines and chain hashes), instead of a row of
//! `audit_log` with five index entries each. What they are searched by (each patient,
//! each agent) is one `audit_segment_key` row per key per run of the chainer, listing
//! the run's segments that hold the key: a second of reads of a patient's chart adds
//! one row, not one per read. The chain and the search see the entries one by one:
//! the chain's view expands a segment into its entries ([`chained`]), and the search
//! finds candidate segments by their keys, then keeps the entries that match
//! ([`search`]).

use std::collections::{BTreeMap, BTreeSet};

use hale_store::{AuditQuery, AuditRow, ChainLink, ChainedEntry, Error, Result};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{backend, journal};

/// The most entries a segment holds. The chain's view relies on it: a segment holding
/// the entry at position `p` begins after `p - ENTRIES`.
pub(crate) const ENTRIES: i64 = 64;

/// Links entries into the chain and writes them as segments, in the caller's
/// transaction: [`Segments::push`] each entry in order, then [`Segments::finish`].
pub(crate) struct Segments {
    link: ChainLink,
    /// The last entry linked: its chain position, sequence number and hash.
    pos: i64,
    seq: i64,
    prev: [u8; 32],
    open: Open,
    /// The run's first segment, and the segments of the run holding each key.
    run_first: Option<i64>,
    keys: BTreeMap<String, Vec<i64>>,
}

/// The segment being filled.
#[derive(Default)]
struct Open {
    first_pos: i64,
    first_seq: i64,
    entries: i64,
    recorded: (i64, i64),
    lines: Vec<u8>,
    hashes: Vec<u8>,
}

impl Segments {
    /// Segments that continue the chain after position `pos` (hash `prev`), numbering
    /// entries after sequence number `seq`.
    pub(crate) fn new(link: ChainLink, pos: i64, seq: i64, prev: [u8; 32]) -> Self {
        Segments { link, pos, seq, prev, open: Open::default(), run_first: None, keys: BTreeMap::new() }
    }

    /// Links an entry (its journal `line`, parsed as `row`) and adds it to the open
    /// segment, written once full.
    pub(crate) fn push(&mut self, tx: &Connection, line: &[u8], row: &AuditRow) -> Result<()> {
        self.pos += 1;
        self.seq += 1;
        self.prev = (self.link)(&self.prev, self.pos, self.seq, &row.body);
        let o = &mut self.open;
        let at = row.recorded.millis();
        if o.entries == 0 {
            o.first_pos = self.pos;
            o.first_seq = self.seq;
            o.recorded = (at, at);
        }
        o.entries += 1;
        o.recorded = (o.recorded.0.min(at), o.recorded.1.max(at));
        o.lines.extend_from_slice(line);
        o.lines.push(b'\n');
        o.hashes.extend_from_slice(&self.prev);
        let segment = o.first_pos;
        let keys = row.patients.iter().map(|p| format!("p|{p}")).chain(std::iter::once(format!("g|{}", row.agent)));
        for k in keys {
            let list = self.keys.entry(k).or_default();
            if list.last() != Some(&segment) {
                list.push(segment);
            }
        }
        if self.open.entries == ENTRIES {
            self.flush(tx)?;
        }
        Ok(())
    }

    /// Writes the open segment; answers the last entry linked (position, sequence
    /// number, hash). Later entries of `audit_log` are numbered after this one.
    pub(crate) fn finish(mut self, tx: &Connection) -> Result<(i64, i64, [u8; 32])> {
        self.flush(tx)?;
        if let Some(run) = self.run_first {
            let mut insert = tx
                .prepare_cached("INSERT INTO audit_segment_key (key, first_pos, segments) VALUES (?1, ?2, ?3)")
                .map_err(backend)?;
            for (k, segments) in &self.keys {
                let list: Vec<u8> = segments.iter().flat_map(|s| s.to_be_bytes()).collect();
                insert.execute(params![k, run, list]).map_err(backend)?;
            }
        }
        // AUTOINCREMENT numbers after the largest of sqlite_sequence and the table's own
        let changed = tx
            .prepare_cached("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'audit_log' AND seq < ?1")
            .and_then(|mut s| s.execute(params![self.seq]))
            .map_err(backend)?;
        if changed == 0 {
            tx.prepare_cached(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'audit_log', ?1
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit_log')",
            )
            .and_then(|mut s| s.execute(params![self.seq]))
            .map_err(backend)?;
        }
        Ok((self.pos, self.seq, self.prev))
    }

    fn flush(&mut self, tx: &Connection) -> Result<()> {
        let o = std::mem::take(&mut self.open);
        if o.entries == 0 {
            return Ok(());
        }
        tx.prepare_cached(
            "INSERT INTO audit_segment (first_pos, first_seq, entries, recorded_min, recorded_max, lines, hashes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(params![o.first_pos, o.first_seq, o.entries, o.recorded.0, o.recorded.1, o.lines, o.hashes])
        })
        .map_err(backend)?;
        self.run_first.get_or_insert(o.first_pos);
        Ok(())
    }
}

/// The entries of a segment's `lines`.
fn entries(lines: &[u8]) -> Result<Vec<AuditRow>> {
    lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(journal::parse_line).collect()
}

/// The last segment's last entry: its chain position and hash.
pub(crate) fn head(c: &Connection) -> Result<Option<(i64, Vec<u8>)>> {
    let last: Option<(i64, i64, Vec<u8>)> = c
        .prepare_cached(HEAD)
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(backend)?;
    let Some((first, n, hashes)) = last else { return Ok(None) };
    let h = hashes.len().checked_sub(32).and_then(|at| hashes.get(at..)).ok_or_else(damaged)?;
    Ok(Some((first + n - 1, h.to_vec())))
}

const LAST_SEQ: &str = "SELECT first_seq + entries - 1 FROM audit_segment ORDER BY first_pos DESC LIMIT 1";
const HEAD: &str = "SELECT first_pos, entries, hashes FROM audit_segment ORDER BY first_pos DESC LIMIT 1";

/// The largest sequence number a segment gave: the last segment's last (segments are
/// numbered in chain order; one probe of the primary key, not a scan).
pub(crate) fn last_seq(c: &Connection) -> Result<i64> {
    c.prepare_cached(LAST_SEQ)
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map(Option::unwrap_or_default)
        .map_err(backend)
}

fn damaged() -> Error {
    Error::Backend("an audit segment is damaged (its hashes do not match its entries)".into())
}

/// The segments' entries after chain position `after`, in chain order, at most `limit`.
pub(crate) fn chained(c: &Connection, after: i64, limit: usize) -> Result<Vec<ChainedEntry>> {
    let mut out = Vec::new();
    let mut s = c
        .prepare_cached(
            "SELECT first_pos, first_seq, entries, lines, hashes FROM audit_segment
             WHERE first_pos > ?1 - ?2 AND first_pos + entries - 1 > ?1 ORDER BY first_pos",
        )
        .map_err(backend)?;
    let mut rows = s.query(params![after, ENTRIES]).map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let (first_pos, first_seq): (i64, i64) = (r.get(0).map_err(backend)?, r.get(1).map_err(backend)?);
        let lines: Vec<u8> = r.get(3).map_err(backend)?;
        let hashes: Vec<u8> = r.get(4).map_err(backend)?;
        let mut chunks = hashes.chunks(32);
        // an entry whose hash is missing (or a hash without its entry) is reported by the
        // chain's check, entry by entry: a missing hash is an empty one
        for (i, e) in entries(&lines)?.into_iter().enumerate() {
            let pos = first_pos + i as i64;
            let hash = chunks.next().map(<[u8]>::to_vec).unwrap_or_default();
            if pos > after {
                out.push(ChainedEntry { pos, seq: first_seq + i as i64, hash, body: e.body });
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// The segments' entries matching `q`, newest first: at least `q.limit` of them when
/// there are that many (the caller merges them with `audit_log`'s and cuts the page).
pub(crate) fn search(c: &Connection, q: &AuditQuery) -> Result<Vec<(i64, String)>> {
    // the candidate segments: those holding any of the patients, and the agent
    let mut candidates: Option<BTreeSet<i64>> = None;
    if let Some(ps) = &q.patients {
        let mut any = BTreeSet::new();
        for p in ps {
            any.extend(keyed(c, &format!("p|{p}"))?);
        }
        candidates = Some(any);
    }
    if let Some(a) = &q.agent {
        let of_agent = keyed(c, &format!("g|{a}"))?;
        candidates = Some(match candidates {
            Some(c) => c.intersection(&of_agent).copied().collect(),
            None => of_agent,
        });
    }
    let mut out = Vec::new();
    let mut keep = |first_seq: i64, recorded: (i64, i64), lines: Vec<u8>| -> Result<bool> {
        let outside = q.since.is_some_and(|s| recorded.1 < s)
            || q.before.is_some_and(|b| recorded.0 >= b)
            || q.below_seq.is_some_and(|b| first_seq >= b);
        if !outside {
            for (i, e) in entries(&lines)?.into_iter().enumerate().rev() {
                let seq = first_seq + i as i64;
                if matches(q, seq, &e) {
                    out.push((seq, e.body));
                }
            }
        }
        Ok(out.len() >= q.limit)
    };
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, (i64, i64), Vec<u8>)> {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?), r.get(3)?))
    };
    match candidates {
        Some(set) => {
            let mut one = c
                .prepare_cached(
                    "SELECT first_seq, recorded_min, recorded_max, lines FROM audit_segment WHERE first_pos = ?1",
                )
                .map_err(backend)?;
            for first_pos in set.into_iter().rev() {
                let Some((first_seq, recorded, lines)) =
                    one.query_row(params![first_pos], row).optional().map_err(backend)?
                else {
                    continue;
                };
                if keep(first_seq, recorded, lines)? {
                    break;
                }
            }
        }
        None => {
            let mut all = c
                .prepare_cached(
                    "SELECT first_seq, recorded_min, recorded_max, lines FROM audit_segment
                     WHERE first_seq < ?1 ORDER BY first_pos DESC",
                )
                .map_err(backend)?;
            let mut rows = all.query(params![q.below_seq.unwrap_or(i64::MAX)]).map_err(backend)?;
            while let Some(r) = rows.next().map_err(backend)? {
                let (first_seq, recorded, lines) = row(r).map_err(backend)?;
                if keep(first_seq, recorded, lines)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The segments holding entries with `key`.
fn keyed(c: &Connection, key: &str) -> Result<BTreeSet<i64>> {
    let mut s = c.prepare_cached("SELECT segments FROM audit_segment_key WHERE key = ?1").map_err(backend)?;
    let lists = s.query_map(params![key], |r| r.get::<_, Vec<u8>>(0)).map_err(backend)?;
    let mut out = BTreeSet::new();
    for l in lists {
        let l = l.map_err(backend)?;
        out.extend(l.chunks_exact(8).filter_map(|b| b.try_into().ok()).map(i64::from_be_bytes));
    }
    Ok(out)
}

/// Whether an entry meets every condition of `q` (as [`AuditQuery::statement`] asks of
/// a row of `audit_log`).
fn matches(q: &AuditQuery, seq: i64, e: &AuditRow) -> bool {
    if let Some(ps) = &q.patients {
        if !e.patients.iter().any(|p| ps.contains(p)) {
            return false;
        }
        if q.only_these_patients && !e.patients.iter().all(|p| ps.contains(p)) {
            return false;
        }
    }
    let at = e.recorded.millis();
    q.agent.as_ref().is_none_or(|a| *a == e.agent)
        && q.action.as_ref().is_none_or(|a| *a == e.action)
        && q.outcome.as_ref().is_none_or(|o| *o == e.outcome)
        && q.since.is_none_or(|s| at >= s)
        && q.before.is_none_or(|b| at < b)
        && q.below_seq.is_none_or(|b| seq < b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the chainer asks of the segments every second (where the chain ends, the
    /// last number given) costs the same with 10 segments as with 1,000: a probe of
    /// the last row, never a scan of the table (a scan made every run of the chainer
    /// slower as the trail grew).
    #[test]
    fn the_chainers_questions_do_not_grow_with_the_trail() {
        let dir = tempfile::tempdir().unwrap();
        let store = |n: i64| -> Connection {
            let path = dir.path().join(format!("s{n}.db"));
            drop(crate::SqliteStore::open(&path).unwrap());
            let c = Connection::open(&path).unwrap();
            for i in 0..n {
                c.execute(
                    "INSERT INTO audit_segment VALUES (?1, ?1, 1, 0, 0, x'', zeroblob(32))",
                    params![i * ENTRIES + 1],
                )
                .unwrap();
            }
            c
        };
        let steps = |c: &Connection| -> Vec<i32> {
            [LAST_SEQ, HEAD]
                .iter()
                .map(|sql| {
                    let mut s = c.prepare(sql).unwrap();
                    let mut rows = s.query([]).unwrap();
                    while rows.next().unwrap().is_some() {}
                    drop(rows);
                    s.get_status(rusqlite::StatementStatus::VmStep)
                })
                .collect()
        };
        let (small, large) = (store(10), store(1000));
        assert_eq!(steps(&small), steps(&large), "VM steps with 10 and with 1,000 segments");
        assert_eq!(last_seq(&large).unwrap(), 999 * ENTRIES + 1);
    }
}
