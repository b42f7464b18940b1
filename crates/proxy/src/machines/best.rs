//! The best final response so far (§16.7 step 6), a plain value.

use trunkstore_sip::message::Message;

/// A final response a branch ended with.
pub(crate) enum Best {
    /// A response received from a branch.
    Received(Box<Message>),
    /// One we make up (408 timeout, 503 transport error, 480 unreachable).
    Local(u16),
    /// A refusal of the proxy's own with its reason phrase, sent as it is (a 503 here is
    /// about us, so it is not turned into 500): no rtpengine took the call's media.
    Refused(u16, &'static str),
}

impl Best {
    /// Its status code (500 for a received response without one, which cannot happen).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Best::Received(m) => m.status().unwrap_or(500),
            Best::Local(c) | Best::Refused(c, _) => *c,
        }
    }

    /// Lower is better: 6xx first, then the lowest class; among 4xx 401/407/415/420/484
    /// first; anything before 503; on a tie a received response before a made-up one.
    fn rank(&self) -> (u8, u8, u8) {
        let code = self.status();
        let class = match code / 100 {
            6 => 0,
            2 => 1,
            3 => 2,
            4 => 3,
            _ => 4,
        };
        let pref = match code {
            401 | 407 | 415 | 420 | 484 => 0,
            503 => 2,
            _ => 1,
        };
        (class, pref, u8::from(!matches!(self, Best::Received(_))))
    }

    /// Keeps the better of `best` and `new` in `best` (on a tie, the earlier one).
    pub(crate) fn keep_better(best: &mut Option<Best>, new: Best) {
        if best.as_ref().is_none_or(|old| new.rank() < old.rank()) {
            *best = Some(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(order: &[u16]) -> u16 {
        let mut best = None;
        for &c in order {
            Best::keep_better(&mut best, Best::Local(c));
        }
        best.map_or(0, |b| b.status())
    }

    #[test]
    fn ranking() {
        assert_eq!(kept(&[503, 486]), 486);
        assert_eq!(kept(&[486, 603]), 603);
        assert_eq!(kept(&[404, 407]), 407);
        assert_eq!(kept(&[500, 404]), 404);
        assert_eq!(kept(&[302, 404]), 302);
        assert_eq!(kept(&[408, 480]), 408, "the earlier one on a tie");
        assert_eq!(kept(&[]), 0);
    }
}
