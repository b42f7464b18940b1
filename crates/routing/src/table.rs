//! Open-addressing hash table from packed DID keys to `u32` route indexes.
//!
//! Built once per snapshot and never modified, so it needs no deletion, no tombstones and
//! no growth: the capacity is chosen for a load factor of at most 0.7, where linear probing
//! keeps both hits and misses to one or two cache lines. A slot is 12 bytes (key split in
//! two `u32` halves so the slot is 4-byte aligned), keeping the key and the value in the
//! same cache line; at 1M DIDs the table is 2^21 slots = 24 MiB, about 25 bytes per DID.
//!
//! The table's contents come from our own configuration; lookups are attacker-chosen, but
//! an attacker can only pick *which* cluster to probe, and cluster lengths at load ≤ 0.7
//! with a well-mixed hash stay short. A multiply-xorshift mix is enough.

#[derive(Clone, Copy, Default)]
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

pub struct DidTable {
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    len: usize,
}

/// Largest load factor, as a fraction (7/10).
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 10;

/// splitmix64's finaliser: every input bit affects every output bit.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl DidTable {
    /// An empty table sized for `expected` keys.
    pub fn with_capacity(expected: usize) -> Self {
        let needed = (expected * MAX_LOAD_DEN).div_ceil(MAX_LOAD_NUM).max(8);
        let cap = needed.next_power_of_two();
        DidTable {
            slots: vec![Slot::default(); cap].into_boxed_slice(),
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the table (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (mix(key) >> self.shift) as usize
    }

    /// Inserts `key` (non-zero, from [`crate::key::pack`]); returns the previous value if
    /// the key was already there (the catalog guarantees it never is). Panics if the table
    /// was sized too small, which `with_capacity` rules out.
    pub fn insert(&mut self, key: u64, value: u32) -> Option<u32> {
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

    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            let k = slot.key();
            if k == key {
                return Some(slot.value);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
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

    #[test]
    fn sizing_keeps_load_under_limit() {
        for n in [0, 1, 7, 8, 700, 701, 1_000_000] {
            let t = DidTable::with_capacity(n);
            assert!(n * MAX_LOAD_DEN <= t.slots.len() * MAX_LOAD_NUM, "{n}");
        }
    }
}
