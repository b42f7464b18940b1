//! RFC 2782's order of SRV records: ascending priority, and within one priority a
//! weighted random order, drawn from a seeded generator so that tests are deterministic.

use super::values::Srv;

/// A small seeded generator (SplitMix64): the weighted order needs fairness, not secrecy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 32) as u32
    }

    /// Uniform in `0..=max`.
    fn up_to(&mut self, max: u32) -> u32 {
        (u64::from(self.next_u32()) % (u64::from(max) + 1)) as u32
    }
}

/// `records` in the order to try them (RFC 2782, "Usage rules").
pub(super) fn order(mut records: Vec<Srv>, rng: &mut Rng) -> Vec<Srv> {
    // Stable: within one priority the server's order is kept until the draw.
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut group = vec![first];
        while let Some(r) = rest.next_if(|r| r.priority == group[0].priority) {
            group.push(r);
        }
        weighted(group, rng, &mut out);
    }
    out
}

/// One priority's records, drawn one at a time: the weight-0 records first in the list
/// (so they are picked only when the draw is 0 or nothing else is left), a number in
/// `0..=sum of weights`, the first record whose running sum reaches it.
fn weighted(mut group: Vec<Srv>, rng: &mut Rng, out: &mut Vec<Srv>) {
    group.sort_by_key(|r| r.weight != 0);
    while !group.is_empty() {
        let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
        let draw = rng.up_to(total);
        let mut running = 0u32;
        let pick = group
            .iter()
            .position(|r| {
                running += u32::from(r.weight);
                running >= draw
            })
            .unwrap_or(group.len() - 1);
        out.push(group.remove(pick));
    }
}
