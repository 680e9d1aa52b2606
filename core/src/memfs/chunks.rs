//! The chunk map of one file: chunk index to bytes, without a tree for one chunk.
//!
//! Most files fit in one 64 KiB chunk, and a `BTreeMap` holding a single entry allocates a
//! whole leaf node for it (11 slots: 368 bytes for `u64` keys and `Vec` values), more than
//! a 100-byte file's data and nearly as much as the rest of its inode. A file with one
//! chunk keeps it inline; the tree is made when a second chunk arrives and given up when
//! removals leave one. 2,000 files of 100 bytes cost 625 bytes of heap each without the
//! node (`core/tests/memfs_memory.rs`); the daemon's RSS grew by about 1,020 bytes per file
//! with it and 630 without, over 100,000 such files.

use std::collections::{BTreeMap, btree_map};
use std::ops::RangeBounds;

/// Chunk index to stored bytes. An empty map is `Many` of an empty tree, which allocates
/// nothing.
#[derive(Debug)]
pub(super) enum Chunks {
    One(u64, Vec<u8>),
    Many(BTreeMap<u64, Vec<u8>>),
}

impl Default for Chunks {
    fn default() -> Chunks {
        Chunks::Many(BTreeMap::new())
    }
}

/// The chunks of a [`Chunks::range`], in index order.
pub(super) enum Range<'a> {
    One(Option<(u64, &'a Vec<u8>)>),
    Many(btree_map::Range<'a, u64, Vec<u8>>),
}

impl<'a> Iterator for Range<'a> {
    type Item = (u64, &'a Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Range::One(one) => one.take(),
            Range::Many(r) => r.next().map(|(&idx, v)| (idx, v)),
        }
    }
}

impl Chunks {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        match self {
            Chunks::One(..) => 1,
            Chunks::Many(m) => m.len(),
        }
    }

    pub(super) fn get(&self, idx: u64) -> Option<&Vec<u8>> {
        match self {
            Chunks::One(i, v) => (*i == idx).then_some(v),
            Chunks::Many(m) => m.get(&idx),
        }
    }

    pub(super) fn get_mut(&mut self, idx: u64) -> Option<&mut Vec<u8>> {
        match self {
            Chunks::One(i, v) => (*i == idx).then_some(v),
            Chunks::Many(m) => m.get_mut(&idx),
        }
    }

    /// Chunk `idx`, inserted empty when absent (the caller fills it: no stored chunk is
    /// ever left empty).
    pub(super) fn slot(&mut self, idx: u64) -> &mut Vec<u8> {
        if let Chunks::One(i, v) = self
            && *i != idx
        {
            let first = (*i, std::mem::take(v));
            *self = Chunks::Many(BTreeMap::from([first]));
        }
        if let Chunks::Many(m) = self
            && m.is_empty()
        {
            *self = Chunks::One(idx, Vec::new());
        }
        match self {
            Chunks::One(_, v) => v,
            Chunks::Many(m) => m.entry(idx).or_default(),
        }
    }

    pub(super) fn remove(&mut self, idx: u64) -> Option<Vec<u8>> {
        let gone = match self {
            Chunks::One(i, v) if *i == idx => {
                let v = std::mem::take(v);
                *self = Chunks::default();
                Some(v)
            }
            Chunks::One(..) => None,
            Chunks::Many(m) => m.remove(&idx),
        };
        self.settle();
        gone
    }

    /// Removes and returns every chunk from index `keep` on.
    pub(super) fn split_off(&mut self, keep: u64) -> Chunks {
        let gone = match self {
            Chunks::One(i, _) if *i >= keep => std::mem::take(self),
            Chunks::One(..) => Chunks::default(),
            Chunks::Many(m) => Chunks::Many(m.split_off(&keep)),
        };
        self.settle();
        gone
    }

    pub(super) fn clear(&mut self) {
        *self = Chunks::default();
    }

    /// The chunks with an index in `range`, which must not be empty or inverted (as for
    /// `BTreeMap::range`).
    pub(super) fn range(&self, range: impl RangeBounds<u64>) -> Range<'_> {
        match self {
            Chunks::One(i, v) => Range::One(range.contains(i).then_some((*i, v))),
            Chunks::Many(m) => Range::Many(m.range(range)),
        }
    }

    pub(super) fn iter(&self) -> Range<'_> {
        self.range(..)
    }

    /// Gives the tree up when one chunk is left in it.
    fn settle(&mut self) {
        if let Chunks::Many(m) = self
            && m.len() == 1
            && let Some((idx, v)) = m.pop_first()
        {
            *self = Chunks::One(idx, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(c: &Chunks, r: impl RangeBounds<u64>) -> Vec<u64> {
        c.range(r).map(|(i, _)| i).collect()
    }

    #[test]
    fn one_chunk_stays_inline_and_the_tree_comes_and_goes() {
        let mut c = Chunks::default();
        assert_eq!((c.len(), c.get(0)), (0, None));
        c.slot(3).push(1);
        assert!(matches!(c, Chunks::One(3, _)));
        assert_eq!(c.get(3).map(|v| v.as_slice()), Some(&[1u8][..]));
        assert_eq!(c.get(2), None);
        c.slot(3).push(2);
        assert!(matches!(&c, Chunks::One(3, v) if v == &[1, 2]));
        c.slot(1).push(9);
        assert!(matches!(&c, Chunks::Many(m) if m.len() == 2));
        assert_eq!(indices(&c, ..), [1, 3]);
        assert_eq!(c.remove(1), Some(vec![9]));
        assert!(matches!(&c, Chunks::One(3, v) if v == &[1, 2]));
        assert_eq!(c.remove(7), None);
        assert_eq!(c.remove(3), Some(vec![1, 2]));
        assert_eq!(c.len(), 0);
        assert!(matches!(&c, Chunks::Many(m) if m.is_empty()));
    }

    #[test]
    fn ranges_and_split_off_match_a_tree() {
        for n in [0u64, 1, 2, 5] {
            let mut c = Chunks::default();
            let mut model = BTreeMap::new();
            for i in 0..n {
                *c.slot(i * 2 + 1) = vec![i as u8 + 1];
                model.insert(i * 2 + 1, vec![i as u8 + 1]);
            }
            for (a, b) in [(0, 0), (0, 1), (1, 1), (2, 2), (0, 9), (3, 6), (10, 20)] {
                let want: Vec<u64> = model.range(a..=b).map(|(&i, _)| i).collect();
                assert_eq!(indices(&c, a..=b), want, "{n} chunks, {a}..={b}");
                let want: Vec<u64> = model.range(a..).map(|(&i, _)| i).collect();
                assert_eq!(indices(&c, a..), want, "{n} chunks, {a}..");
            }
            for keep in [0, 1, 2, 4, 100] {
                let mut c2 = Chunks::default();
                let mut m2 = model.clone();
                for (&i, v) in &model {
                    *c2.slot(i) = v.clone();
                }
                let gone = c2.split_off(keep);
                let gone_model = m2.split_off(&keep);
                let got: Vec<(u64, Vec<u8>)> = gone.iter().map(|(i, v)| (i, v.clone())).collect();
                assert_eq!(got, gone_model.into_iter().collect::<Vec<_>>());
                let kept: Vec<(u64, Vec<u8>)> = c2.iter().map(|(i, v)| (i, v.clone())).collect();
                assert_eq!(kept, m2.clone().into_iter().collect::<Vec<_>>());
                assert_eq!(matches!(c2, Chunks::One(..)), m2.len() == 1, "{n} {keep}");
            }
        }
    }
}
