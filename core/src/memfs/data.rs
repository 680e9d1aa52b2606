//! The contents of one regular file: sparse, chunked, with exact memory accounting.
//!
//! # Invariants
//! - Chunk `i` covers file offsets `[i * CHUNK, (i + 1) * CHUNK)`. Its `Vec`'s `len` is
//!   how far into the chunk bytes are stored; anything after `len`, and any chunk that is
//!   absent, reads as zeros (a hole). No chunk is ever empty.
//! - Every stored byte at or past the file size is zero, so extending the size (truncate
//!   up, a write past EOF) never exposes old data and needs no work.
//! - `held` is the sum of the chunks' capacities: the memory this file pins, which is what
//!   `blocks` and the filesystem's `used_bytes` report.
//! - A chunk that grows while being written may get up to twice the capacity it needs (so
//!   that appending in small pieces costs amortised O(1) per byte); it is remembered in
//!   `grown` and cut back to the next [`GRAIN`] multiple by [`FileData::trim`], which
//!   memfs calls on flush, fsync and release.
//!
//! The methods here never touch the filesystem-wide counter: callers first ask what an
//! operation would cost (`*_cost`), reserve that against the size limit, apply it and then
//! settle the difference between the reservation and the change of `held`.

use std::collections::{BTreeMap, BTreeSet};

use super::chunks::Chunks;

use crate::{VfsError, VfsResult, Whence};

/// Bytes per chunk. Large enough that big files need few map entries, small enough that
/// a write into a hole does not pin much memory.
pub(super) const CHUNK: u64 = 64 * 1024;

/// The unit chunk capacities are rounded up to when trimmed (and when allocated exactly).
/// Not a page: the heap does not hand out pages, so rounding a 100-byte file up to
/// 4 KiB pinned 4 KiB for nothing (such files cost 4,961 bytes of heap each, against 625
/// now). 64 bytes keeps a run of tiny exact appends from reallocating at every call while
/// wasting at most 63 bytes per chunk.
pub(super) const GRAIN: u64 = 64;

/// The largest file size memfs allows (`i64::MAX`, what `off_t` can express).
pub(super) const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Rounds an in-chunk length (at most [`CHUNK`]) up to a multiple of [`GRAIN`].
pub(super) fn round_grain(n: u64) -> u64 {
    n.div_ceil(GRAIN) * GRAIN
}

/// Splits `[off, end)` into pieces that each stay within one chunk:
/// `(chunk index, start in chunk, end in chunk, offset of the piece from off)`.
fn pieces(off: u64, end: u64) -> impl Iterator<Item = (u64, usize, usize, u64)> {
    let mut pos = off;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let idx = pos / CHUNK;
        let base = idx * CHUNK;
        let stop = end.min(base + CHUNK);
        let piece = (
            idx,
            (pos - base) as usize,
            (stop - base) as usize,
            pos - off,
        );
        pos = stop;
        Some(piece)
    })
}

/// The capacity a chunk of capacity `cap` needs to hold `new_len` bytes: unchanged when it
/// fits, else the next [`GRAIN`] multiple; when `geometric` and the chunk already held
/// bytes, the next power of two and at least double the old capacity. A chunk's first
/// allocation is exact, since most files are written in one piece and a file nobody trims
/// (an NFS write is trimmed only by a COMMIT or a stable write) should not pin twice its
/// size. Powers of two after that keep the steps few from a small start: a chunk filled
/// by 4107-byte appends is allocated 4 times, not 5 as when doubling 4160 bytes.
fn grown_capacity(cap: usize, new_len: usize, geometric: bool) -> usize {
    if new_len <= cap {
        return cap;
    }
    let exact = round_grain(new_len as u64) as usize;
    if geometric && cap > 0 {
        let doubled = new_len.next_power_of_two().max(cap * 2);
        exact.max(doubled.min(CHUNK as usize))
    } else {
        exact
    }
}

/// The sparse contents of a regular file.
#[derive(Debug, Default)]
pub(super) struct FileData {
    chunks: Chunks,
    held: u64,
    grown: BTreeSet<u64>,
}

impl FileData {
    /// Bytes of memory the contents pin (sum of chunk capacities).
    pub(super) fn held(&self) -> u64 {
        self.held
    }

    /// Extra memory a write of `len` bytes at `off` would allocate.
    pub(super) fn write_cost(&self, off: u64, len: u64, geometric: bool) -> u64 {
        let end = off.saturating_add(len);
        pieces(off, end)
            .map(|(idx, _, stop, _)| {
                let (len, cap) = self
                    .chunks
                    .get(idx)
                    .map_or((0, 0), |v| (v.len(), v.capacity()));
                (grown_capacity(cap, len.max(stop), geometric) - cap) as u64
            })
            .sum()
    }

    /// Stores `data` at `off` (the caller has checked that `off + data.len()` is within
    /// [`MAX_FILE_SIZE`] and reserved [`FileData::write_cost`] with the same `geometric`).
    pub(super) fn write(&mut self, off: u64, data: &[u8], geometric: bool) {
        let end = off + data.len() as u64;
        for (idx, start, stop, from) in pieces(off, end) {
            let src = &data[from as usize..from as usize + (stop - start)];
            let v = self.chunks.slot(idx);
            let old_cap = v.capacity();
            let new_cap = grown_capacity(old_cap, v.len().max(stop), geometric);
            if new_cap > old_cap {
                v.reserve_exact(new_cap - v.len());
            }
            if v.len() < start {
                v.resize(start, 0);
            }
            let overlap = v.len().min(stop);
            v[start..overlap].copy_from_slice(&src[..overlap - start]);
            v.extend_from_slice(&src[overlap - start..]);
            let cap = v.capacity();
            if cap as u64 > round_grain(v.len() as u64) {
                self.grown.insert(idx);
            }
            self.held = self.held + cap as u64 - old_cap as u64;
        }
    }

    /// Fills `buf` from offset `off`; the caller has clamped `buf` to the file size.
    pub(super) fn read(&self, off: u64, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let end = off + buf.len() as u64;
        let mut done = 0usize;
        let first = off / CHUNK;
        let last = (end - 1) / CHUNK;
        for (idx, v) in self.chunks.range(first..=last) {
            let base = idx * CHUNK;
            let piece_start = off.max(base);
            let piece_end = end.min(base + CHUNK);
            let at = (piece_start - off) as usize;
            buf[done..at].fill(0);
            let in_start = (piece_start - base) as usize;
            let in_end = (piece_end - base) as usize;
            // The chunk may store fewer bytes than the piece starts at (the rest of the
            // chunk is a hole): then nothing is copied from it.
            let n = in_end.min(v.len()).saturating_sub(in_start);
            if n > 0 {
                buf[at..at + n].copy_from_slice(&v[in_start..in_start + n]);
            }
            let piece_len = in_end - in_start;
            buf[at + n..at + piece_len].fill(0);
            done = at + piece_len;
        }
        buf[done..].fill(0);
    }

    /// Drops everything at or past `size` (shrinking the file); the partial chunk left at
    /// the new end is trimmed at once.
    pub(super) fn truncate(&mut self, size: u64) {
        let keep = size.div_ceil(CHUNK);
        let gone = self.chunks.split_off(keep);
        for (idx, v) in gone.iter() {
            self.held -= v.capacity() as u64;
            self.grown.remove(&idx);
        }
        if !size.is_multiple_of(CHUNK) {
            let idx = size / CHUNK;
            self.cut(idx, (size % CHUNK) as usize);
        }
    }

    /// Shortens chunk `idx` to `len` bytes (removing it when empty) and gives back the
    /// memory past the next [`GRAIN`] boundary.
    fn cut(&mut self, idx: u64, len: usize) {
        let Some(v) = self.chunks.get_mut(idx) else {
            return;
        };
        if v.len() <= len {
            return;
        }
        let old_cap = v.capacity() as u64;
        if len == 0 {
            self.chunks.remove(idx);
            self.grown.remove(&idx);
            self.held -= old_cap;
            return;
        }
        v.truncate(len);
        v.shrink_to(round_grain(len as u64) as usize);
        self.held = self.held - old_cap + v.capacity() as u64;
        self.grown.remove(&idx);
    }

    /// Makes `[off, end)` a hole: whole chunks are dropped, partial ones zeroed or cut.
    pub(super) fn punch(&mut self, off: u64, end: u64) {
        if off >= end {
            return;
        }
        let first = off / CHUNK;
        let last = (end - 1) / CHUNK;
        let present: Vec<u64> = self.chunks.range(first..=last).map(|(i, _)| i).collect();
        for idx in present {
            let base = idx * CHUNK;
            let start = (off.max(base) - base) as usize;
            let stop = (end.min(base + CHUNK) - base) as usize;
            let Some(v) = self.chunks.get_mut(idx) else {
                continue;
            };
            if start >= v.len() {
                continue;
            }
            if stop >= v.len() {
                self.cut(idx, start);
            } else {
                v[start..stop].fill(0);
            }
        }
    }

    /// Extra memory needed so that every byte of `[off, end)` is backed by memory, or
    /// `None` when it exceeds `available` (decided without walking a huge range).
    pub(super) fn allocate_cost(&self, off: u64, end: u64, available: u64) -> Option<u64> {
        if off >= end {
            return Some(0);
        }
        let first = off / CHUNK;
        let last = (end - 1) / CHUNK;
        let existing: u64 = self
            .chunks
            .range(first..=last)
            .map(|(_, v)| v.capacity() as u64)
            .sum();
        if (end - off).saturating_sub(existing) > available {
            return None;
        }
        let cost = self.write_cost(off, end - off, false);
        (cost <= available).then_some(cost)
    }

    /// Backs `[off, end)` with (zeroed) memory, keeping existing bytes.
    pub(super) fn allocate(&mut self, off: u64, end: u64) {
        for (idx, _, stop, _) in pieces(off, end) {
            let v = self.chunks.slot(idx);
            let old_cap = v.capacity();
            if v.len() < stop {
                v.reserve_exact(round_grain(stop as u64) as usize - v.len());
                v.resize(stop, 0);
            }
            self.held = self.held + v.capacity() as u64 - old_cap as u64;
        }
    }

    /// Gives back the spare capacity of chunks that grew geometrically.
    pub(super) fn trim(&mut self) {
        for idx in std::mem::take(&mut self.grown) {
            if let Some(v) = self.chunks.get_mut(idx) {
                let old_cap = v.capacity() as u64;
                v.shrink_to(round_grain(v.len() as u64) as usize);
                self.held = self.held - old_cap + v.capacity() as u64;
            }
        }
    }

    /// Frees everything; returns the bytes given back.
    pub(super) fn clear(&mut self) -> u64 {
        self.chunks.clear();
        self.grown.clear();
        std::mem::take(&mut self.held)
    }

    /// SEEK_DATA / SEEK_HOLE at `off` in a file of `size` bytes. Stored ranges count as
    /// data (even zero bytes written or allocated there), everything else as hole.
    pub(super) fn seek(&self, off: u64, size: u64, whence: Whence) -> VfsResult<u64> {
        if off >= size {
            return Err(VfsError::NoDataAtOffset);
        }
        let chunks = self.chunks.range(off / CHUNK..).map(|(idx, v)| {
            let base = idx * CHUNK;
            (base, base + v.len() as u64)
        });
        match whence {
            Whence::Data => {
                for (start, end) in chunks {
                    if end > off {
                        let at = start.max(off);
                        return if at < size {
                            Ok(at)
                        } else {
                            Err(VfsError::NoDataAtOffset)
                        };
                    }
                }
                Err(VfsError::NoDataAtOffset)
            }
            Whence::Hole => {
                let mut pos = off;
                for (start, end) in chunks {
                    if start > pos {
                        break;
                    }
                    if end > pos {
                        pos = end;
                        if end - start < CHUNK {
                            break;
                        }
                    }
                }
                Ok(pos.min(size))
            }
        }
    }

    /// Chunk `idx` of `data` if it is stored, for the copy in [`copy_range`].
    fn chunk(&self, idx: u64) -> Option<&Vec<u8>> {
        self.chunks.get(idx)
    }
}

/// For a copy of `n` bytes from `src` at `off_in` to `off_out`: each destination chunk
/// that receives stored source bytes, mapped to how far into it they reach.
fn copy_targets(src: &FileData, off_in: u64, off_out: u64, n: u64) -> BTreeMap<u64, usize> {
    let mut targets = BTreeMap::new();
    for (start, end) in data_segments(src, off_in, off_in + n) {
        let d_start = start - off_in + off_out;
        let d_end = end - off_in + off_out;
        for (idx, _, stop, _) in pieces(d_start, d_end) {
            let e = targets.entry(idx).or_insert(0);
            *e = (*e).max(stop);
        }
    }
    targets
}

/// The stored byte ranges of `data` within `[off, end)`, as file offsets.
fn data_segments(data: &FileData, off: u64, end: u64) -> Vec<(u64, u64)> {
    if off >= end {
        return Vec::new();
    }
    data.chunks
        .range(off / CHUNK..=(end - 1) / CHUNK)
        .filter_map(|(idx, v)| {
            let base = idx * CHUNK;
            let s = off.max(base);
            let e = end.min(base + v.len() as u64);
            (s < e).then_some((s, e))
        })
        .collect()
}

/// Extra memory [`copy_range`] would allocate in `dst` (an upper bound: the punch it
/// starts with can only lower it). `src` is `None` for a copy within `dst`.
pub(super) fn copy_cost(
    src: Option<&FileData>,
    dst: &FileData,
    off_in: u64,
    off_out: u64,
    n: u64,
) -> u64 {
    let targets = copy_targets(src.unwrap_or(dst), off_in, off_out, n);
    targets
        .iter()
        .map(|(&idx, &stop)| {
            let (len, cap) = dst
                .chunks
                .get(idx)
                .map_or((0, 0), |v| (v.len(), v.capacity()));
            (grown_capacity(cap, len.max(stop), false) - cap) as u64
        })
        .sum()
}

/// Copies `n` bytes at `off_in` of `src` (`None`: of `dst` itself, ranges not
/// overlapping) to `off_out` of `dst`, chunk to chunk: holes in the source become holes in
/// the destination and no buffer of `n` bytes is ever made.
pub(super) fn copy_range(
    src: Option<&FileData>,
    dst: &mut FileData,
    off_in: u64,
    off_out: u64,
    n: u64,
) {
    dst.punch(off_out, off_out + n);
    let segments = data_segments(src.unwrap_or(&*dst), off_in, off_in + n);
    for (start, end) in segments {
        let d_start = start - off_in + off_out;
        for (d_idx, d_from, d_to, rel) in pieces(d_start, d_start + (end - start)) {
            let s_pos = start + rel;
            let s_idx = s_pos / CHUNK;
            let s_from = (s_pos - s_idx * CHUNK) as usize;
            let len = d_to - d_from;
            // Taken out (leaving an empty placeholder) so that the source may be another
            // chunk of `dst`; put back below, so the chunk map never changes shape here.
            let mut d = std::mem::take(dst.chunks.slot(d_idx));
            let old_cap = d.capacity();
            if d.len() < d_to {
                let cap = grown_capacity(old_cap, d_to, false);
                if cap > old_cap {
                    d.reserve_exact(cap - d.len());
                }
                d.resize(d_to, 0);
            }
            match src {
                None if s_idx == d_idx => d.copy_within(s_from..s_from + len, d_from),
                _ => {
                    let from = src.unwrap_or(&*dst).chunk(s_idx);
                    if let Some(s) = from {
                        d[d_from..d_to].copy_from_slice(&s[s_from..s_from + len]);
                    }
                }
            }
            dst.held = dst.held + d.capacity() as u64 - old_cap as u64;
            *dst.chunks.slot(d_idx) = d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(d: &FileData, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0xAA; len];
        d.read(off, &mut b);
        b
    }

    #[test]
    fn write_read_across_chunks_and_holes() {
        let mut d = FileData::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8 + 1).collect();
        d.write(100_000, &data, true);
        assert_eq!(read_all(&d, 100_000, data.len()), data);
        assert!(read_all(&d, 0, 100_000).iter().all(|&b| b == 0));
        let mid = read_all(&d, 99_990, 20);
        assert_eq!(&mid[..10], &[0; 10]);
        assert_eq!(&mid[10..], &data[..10]);
        assert_eq!(d.chunks.len(), 4);
        assert_eq!(
            d.held,
            d.chunks
                .iter()
                .map(|(_, v)| v.capacity() as u64)
                .sum::<u64>()
        );
    }

    #[test]
    fn geometric_growth_is_trimmed() {
        let mut d = FileData::default();
        let mut off = 0;
        for _ in 0..10 {
            d.write(off, &[1; 4107], true);
            off += 4107;
        }
        assert!(d.held >= 41070);
        d.trim();
        assert_eq!(d.held, round_grain(41070));
        assert!(d.grown.is_empty());
    }

    #[test]
    fn first_allocation_is_exact_then_powers_of_two() {
        let mut d = FileData::default();
        d.write(0, &[1; 5000], true);
        assert_eq!(
            (d.held, d.grown.len()),
            (5056, 0),
            "one piece: exact, nothing to trim"
        );
        d.write(5000, &[2; 5000], true);
        assert_eq!(d.held, 16384, "growing: the next power of two");
        d.write(10_000, &[3; 7000], true);
        assert_eq!(d.held, 32768, "at least double");
        d.trim();
        assert_eq!((d.held, d.grown.len()), (round_grain(17_000), 0));
        assert_eq!(read_all(&d, 4999, 2), [1, 2]);
        assert_eq!(read_all(&d, 16_999, 2), [3, 0]);
    }

    #[test]
    fn punch_truncate_and_seek() {
        let mut d = FileData::default();
        d.write(0, &vec![5u8; 3 * CHUNK as usize], false);
        d.punch(10, CHUNK + CHUNK / 2);
        assert_eq!(read_all(&d, 8, 4), [5, 5, 0, 0]);
        assert!(
            d.chunks
                .get(1)
                .is_none_or(|c| c[..CHUNK as usize / 2].iter().all(|&b| b == 0))
        );
        let size = 3 * CHUNK;
        assert_eq!(d.seek(0, size, Whence::Data).ok(), Some(0));
        assert_eq!(d.seek(0, size, Whence::Hole).ok(), Some(10));
        assert_eq!(d.seek(20, size, Whence::Data).ok(), Some(CHUNK));
        assert!(matches!(
            d.seek(size, size, Whence::Hole),
            Err(VfsError::NoDataAtOffset)
        ));
        d.truncate(CHUNK + 100);
        assert_eq!(d.chunks.len(), 2);
        assert_eq!(
            d.held,
            GRAIN + 2 * GRAIN,
            "chunk 0 was cut to 10 bytes, chunk 1 to 100"
        );
        d.truncate(0);
        assert_eq!((d.chunks.len(), d.held), (0, 0));
    }

    #[test]
    fn copy_keeps_holes_and_data() {
        let mut s = FileData::default();
        s.write(0, &[1; 100], false);
        s.write(3 * CHUNK, &[2; 100], false);
        let mut d = FileData::default();
        d.write(0, &vec![9u8; 5 * CHUNK as usize], false);
        let cost = copy_cost(Some(&s), &d, 0, 7, 3 * CHUNK + 100);
        assert_eq!(cost, 0);
        copy_range(Some(&s), &mut d, 0, 7, 3 * CHUNK + 100);
        assert_eq!(read_all(&d, 0, 8), [9, 9, 9, 9, 9, 9, 9, 1]);
        assert!(read_all(&d, 107, 1000).iter().all(|&b| b == 0));
        assert_eq!(read_all(&d, 3 * CHUNK + 7, 100), vec![2; 100]);
        assert_eq!(read_all(&d, 3 * CHUNK + 107, 2), [9, 9]);
        // Within one file, into the same and the next chunk.
        let mut f = FileData::default();
        f.write(0, &[3; 10], false);
        copy_range(None, &mut f, 0, 20, 10);
        copy_range(None, &mut f, 0, CHUNK - 5, 10);
        assert_eq!(
            read_all(&f, 18, 14),
            [0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0]
        );
        assert_eq!(
            read_all(&f, CHUNK - 6, 12),
            [0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0]
        );
    }
}
