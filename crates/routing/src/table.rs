//! Open-addressing hash table from packed DID keys to `u32` route indexes.
//!
//! Built once per snapshot and never modified, so it needs no deletion, no tombstones and
//! no growth: the capacity is chosen for a load factor of at most 0.7, where linear probing
//! keeps both hits and misses to one or two cache lines. A slot is 12 bytes (key split in
//! two `u32` halves so the slot is 4-byte aligned), keeping the key and the value in the
//! same cache line; at 1M DIDs the table is 2^21 slots = 24 MiB, about 25 bytes per DID.
//!
//! A lookup is one random access into tens of MiB, so its cost is a cache miss; what the
//! table can do is let many lookups' misses overlap, by keeping the instructions around
//! each load few (see [`DidTable::get`]). Hence Fibonacci hashing (one multiply, top bits)
//! rather than a multi-round mix: packed keys are decimal values, and DIDs come in blocks
//! of consecutive numbers, which multiplicative hashing spreads almost perfectly evenly
//! (an arithmetic progression lands in near-equidistant slots), so nearly every hit is in
//! its home slot.
//!
//! The table's contents come from our own configuration; lookups are attacker-chosen, but
//! an attacker can only pick *which* cluster to probe, and cluster lengths at load ≤ 0.7
//! stay short (tested below on blocks and on random keys).

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    key_lo: u32,
    key_hi: u32,
    value: u32,
}

impl Slot {
    #[inline]
    fn key(&self) -> u64 {
        u64::from(self.key_lo) | (u64::from(self.key_hi) << 32)
    }
}

pub(crate) struct DidTable {
    slots: Slots,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    len: usize,
}

/// Largest load factor, as a fraction (7/10).
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 10;

/// 2^64 / φ, odd: Knuth's multiplier for Fibonacci hashing.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

impl DidTable {
    /// An empty table sized for `expected` keys.
    pub(crate) fn with_capacity(expected: usize) -> Self {
        let needed = (expected * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM).max(8);
        let cap = needed.next_power_of_two();
        DidTable {
            slots: Slots::zeroed(cap),
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the table (for memory reports).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len * std::mem::size_of::<Slot>()
    }

    /// The top bits of `key * 2^64/φ`: every key bit reaches them through the multiply.
    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(FIBONACCI) >> self.shift) as usize
    }

    /// Inserts `key` (non-zero, from [`crate::key::pack`]); returns the previous value if
    /// the key was already there (the catalog guarantees it never is). Panics if the table
    /// was sized too small, which `with_capacity` rules out.
    pub(crate) fn insert(&mut self, key: u64, value: u32) -> Option<u32> {
        debug_assert_ne!(key, 0);
        assert!(
            (self.len + 1) * MAX_LOAD_DEN <= self.slots.len() * MAX_LOAD_NUM,
            "DidTable sized for fewer keys"
        );
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &mut self.slots[i];
            match slot.key() {
                0 => {
                    *slot = Slot {
                        key_lo: key as u32,
                        key_hi: (key >> 32) as u32,
                        value,
                    };
                    self.len += 1;
                    return None;
                }
                k if k == key => return Some(std::mem::replace(&mut slot.value, value)),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The value for `key`. The home slot is checked inline; probing on is out of line.
    /// Callers inline this, and the less code runs per lookup, the more lookups the CPU
    /// has in flight at once: each waits on a cache miss to the home slot, so throughput
    /// is set by how many of those misses overlap, not by the work around them.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        let home = self.home(key);
        let slot = &self.slots[home];
        match slot.key() {
            k if k == key => Some(slot.value),
            0 => None,
            _ => self.get_after(home, key),
        }
    }

    /// Linear probing from the slot after `home`, whose key was neither `key` nor empty.
    #[inline(never)]
    fn get_after(&self, home: usize, key: u64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = (home + 1) & mask;
        loop {
            let slot = &self.slots[i];
            match slot.key() {
                k if k == key => return Some(slot.value),
                0 => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Mean and longest probe length (slots read) to find each of `keys` or its absence.
    #[cfg(test)]
    fn probe_lengths(&self, keys: impl Iterator<Item = u64>) -> (f64, usize) {
        let mask = self.slots.len() - 1;
        let (mut total, mut longest, mut count) = (0, 0, 0);
        for key in keys {
            let mut i = self.home(key);
            let mut probes = 1;
            while ![0, key].contains(&self.slots[i].key()) {
                i = (i + 1) & mask;
                probes += 1;
            }
            total += probes;
            longest = longest.max(probes);
            count += 1;
        }
        (total as f64 / count as f64, longest)
    }
}

/// The slot array: zeroed memory (a zero key is an empty slot). A lookup is one random
/// access into tens of MiB; with 4 KiB pages it also misses the TLB and pays a page walk
/// that itself misses cache. So on Linux a large table gets its own 2 MiB-aligned
/// anonymous mapping marked for transparent huge pages (fresh pages: memory recycled from
/// the heap would already be faulted in as small pages); elsewhere, or when small, plain
/// zeroed heap memory.
struct Slots {
    ptr: std::ptr::NonNull<Slot>,
    len: usize,
    alloc: Allocation,
}

enum Allocation {
    Heap(std::alloc::Layout),
    /// `base`/`len` of the whole mapping (the slots start at the first 2 MiB boundary).
    #[cfg(target_os = "linux")]
    Mapped {
        base: *mut u8,
        len: usize,
    },
}

// SAFETY: `Slots` owns its memory like a `Box<[Slot]>`; `Slot` is plain data.
unsafe impl Send for Slots {}
// SAFETY: shared access only reads.
unsafe impl Sync for Slots {}

const HUGE_PAGE: usize = 2 * 1024 * 1024;

impl Slots {
    fn zeroed(len: usize) -> Slots {
        assert!(len > 0);
        let bytes = len
            .checked_mul(std::mem::size_of::<Slot>())
            .expect("DidTable too large");
        #[cfg(target_os = "linux")]
        if bytes >= HUGE_PAGE {
            if let Some(slots) = Self::mapped(len, bytes) {
                return slots;
            }
        }
        Self::heap(len, bytes)
    }

    fn heap(len: usize, bytes: usize) -> Slots {
        use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
        let layout =
            Layout::from_size_align(bytes, std::mem::align_of::<Slot>()).expect("valid layout");
        // SAFETY: `layout` has a non-zero size; all-zero bytes are a valid `Slot`.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw.cast::<Slot>()) else {
            handle_alloc_error(layout)
        };
        Slots {
            ptr,
            len,
            alloc: Allocation::Heap(layout),
        }
    }

    /// A fresh anonymous mapping (zero-filled by the kernel), over-allocated by one huge
    /// page so the slots can start on a 2 MiB boundary. `None` if mmap fails.
    #[cfg(target_os = "linux")]
    fn mapped(len: usize, bytes: usize) -> Option<Slots> {
        let map_len = bytes.checked_add(HUGE_PAGE)?;
        // SAFETY: a private anonymous mapping touches no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base.cast::<u8>();
        let offset = base.align_offset(HUGE_PAGE);
        // SAFETY: `offset < HUGE_PAGE`, so `start..start+bytes` is inside the mapping.
        let start = unsafe { base.add(offset) };
        // Best effort: with THP off this is refused, which only costs speed.
        // SAFETY: the range is inside our mapping; MADV_HUGEPAGE changes no contents.
        unsafe { libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE) };
        Some(Slots {
            ptr: std::ptr::NonNull::new(start.cast::<Slot>())?,
            len,
            alloc: Allocation::Mapped { base, len: map_len },
        })
    }
}

impl std::ops::Deref for Slots {
    type Target = [Slot];
    fn deref(&self) -> &[Slot] {
        // SAFETY: `ptr` points to `len` initialised (zeroed or written) slots we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Slots {
    fn deref_mut(&mut self) -> &mut [Slot] {
        // SAFETY: as in `deref`, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        match self.alloc {
            // SAFETY: allocated in `heap` with exactly this layout.
            Allocation::Heap(layout) => unsafe {
                std::alloc::dealloc(self.ptr.as_ptr().cast(), layout)
            },
            // SAFETY: the whole mapping made in `mapped`, unmapped once.
            #[cfg(target_os = "linux")]
            Allocation::Mapped { base, len } => unsafe {
                libc::munmap(base.cast(), len);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_get() {
        let mut t = DidTable::with_capacity(1000);
        for k in 1..=1000u64 {
            assert_eq!(t.insert(k | 1 << 63, k as u32), None);
        }
        assert_eq!(t.len(), 1000);
        for k in 1..=1000u64 {
            assert_eq!(t.get(k | 1 << 63), Some(k as u32));
        }
        assert_eq!(t.get(1001 | 1 << 63), None);
        assert_eq!(t.insert(5 | 1 << 63, 7), Some(5));
    }

    /// splitmix64, for deterministic pseudo-random test keys.
    fn random_u64s(seed: u64) -> impl Iterator<Item = u64> {
        let mut state = seed;
        std::iter::repeat_with(move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }

    fn key(number: &str) -> u64 {
        crate::key::pack(number).unwrap()
    }

    fn table_of(keys: &[u64]) -> DidTable {
        let mut t = DidTable::with_capacity(keys.len());
        for (i, &k) in keys.iter().enumerate() {
            t.insert(k, i as u32);
        }
        t
    }

    const N: usize = 500_000;

    /// Blocks of consecutive numbers (how carriers assign DIDs) hash to near-equidistant
    /// slots: almost every hit is in its home slot, and no cluster grows long.
    #[test]
    fn consecutive_blocks_spread_evenly() {
        // 500 blocks of 1000 at distinct 10,000-aligned starts (7919 is prime to 700,000).
        let block = |b: usize| 2_002_000_000 + (b as u64 * 7_919 % 700_000) * 10_000;
        let keys: Vec<u64> = (0..N)
            .map(|i| key(&format!("+1{:010}", block(i / 1000) + (i % 1000) as u64)))
            .collect();
        let t = table_of(&keys);
        assert_eq!(t.len(), N);
        let (mean, longest) = t.probe_lengths(keys.iter().copied());
        assert!(
            mean < 1.1 && longest <= 8,
            "hits: mean {mean}, longest {longest}"
        );
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.get(k), Some(i as u32));
        }
        let misses: Vec<u64> = (0..N)
            .map(|i| {
                key(&format!(
                    "+1{:010}",
                    block(i / 1000) + 1000 + (i % 1000) as u64
                ))
            })
            .collect();
        let (mean, longest) = t.probe_lengths(misses.iter().copied());
        assert!(
            mean < 1.7 && longest <= 8,
            "misses: mean {mean}, longest {longest}"
        );
        assert!(misses.iter().all(|&k| t.get(k).is_none()));
    }

    /// Unstructured keys do as well as linear probing at this load promises (expected
    /// 1.5 reads per hit and 2.3 per miss at load 0.48).
    #[test]
    fn random_keys_probe_as_expected() {
        let mut keys: Vec<u64> = random_u64s(1)
            .map(|r| key(&format!("+{}", 10_000_000_000 + r % 90_000_000_000_000)))
            .take(N)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let t = table_of(&keys);
        let (mean, longest) = t.probe_lengths(keys.iter().copied());
        assert!(
            mean < 1.6 && longest <= 64,
            "hits: mean {mean}, longest {longest}"
        );
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.get(k), Some(i as u32));
        }
        // 16-digit numbers: never among the 11- to 15-digit keys.
        let misses: Vec<u64> = random_u64s(2)
            .map(|r| {
                key(&format!(
                    "+{}",
                    1_000_000_000_000_000 + r % 1_000_000_000_000_000
                ))
            })
            .take(N)
            .collect();
        let (mean, longest) = t.probe_lengths(misses.iter().copied());
        assert!(
            mean < 2.6 && longest <= 64,
            "misses: mean {mean}, longest {longest}"
        );
        assert!(misses.iter().all(|&k| t.get(k).is_none()));
    }

    #[test]
    fn sizing_keeps_load_under_limit() {
        for n in [0, 1, 7, 8, 700, 701, 1_000_000] {
            let t = DidTable::with_capacity(n);
            assert!(n * MAX_LOAD_DEN <= t.slots.len() * MAX_LOAD_NUM, "{n}");
        }
    }
}
