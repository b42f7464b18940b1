//! When to change a UDP socket's receive timeout.
//!
//! A worker blocks in `recvmmsg` with `SO_RCVTIMEO` as its timer: it must wake up by its
//! shard's next deadline, but every `setsockopt` is a system call, and under load the
//! deadline moves after nearly every message. So the armed timeout is only ever a power
//! of two of milliseconds at or below the time left: it is lowered when the deadline comes
//! closer than the armed value (never sleep past a deadline), and raised only when the
//! deadline is at least 8 times further away (an idle worker does not wake up needlessly
//! often). Under steady load the armed value settles and no `setsockopt` is made; an idle
//! proxy with no timers blocks with no timeout at all.

use std::time::Duration;

/// Longest armed timeout; a longer wait is just a few extra wake-ups.
const MAX_MS: u64 = 1 << 16;

/// A receive timeout: `None` blocks until a datagram arrives.
pub(crate) type Armed = Option<Duration>;

/// The timeout to arm now, or `None` if `armed` may stay. `left` is the time until the
/// shard's next deadline (`None`: no deadline).
pub(crate) fn rearm(armed: Armed, left: Option<Duration>) -> Option<Armed> {
    let Some(left) = left else {
        // No timer: block indefinitely (one call when the last timer goes away).
        return armed.is_some().then_some(None);
    };
    let wanted = quantize(left);
    match armed {
        None => Some(Some(wanted)),
        // Lowered only when that changes it: with 1 ms the shortest arm, a deadline
        // under 1 ms away (always, under load) must not re-arm the same 1 ms each time.
        Some(a) if a > left && wanted < a => Some(Some(wanted)),
        Some(a) if wanted >= a * 8 => Some(Some(wanted)),
        Some(_) => None,
    }
}

/// The largest power of two of milliseconds not above `left`, at least 1 ms (a zero
/// `SO_RCVTIMEO` would mean "forever").
fn quantize(left: Duration) -> Duration {
    let ms = (left.as_millis() as u64).clamp(1, MAX_MS);
    Duration::from_millis(1 << (63 - ms.leading_zeros()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantizes_down_to_powers_of_two() {
        assert_eq!(quantize(ms(0)), ms(1));
        assert_eq!(quantize(Duration::from_micros(300)), ms(1));
        assert_eq!(quantize(ms(1)), ms(1));
        assert_eq!(quantize(ms(3)), ms(2));
        assert_eq!(quantize(ms(500)), ms(256));
        assert_eq!(quantize(ms(512)), ms(512));
        assert_eq!(quantize(Duration::from_secs(3600)), ms(MAX_MS));
    }

    #[test]
    fn no_deadline_blocks_forever_once() {
        assert_eq!(rearm(Some(ms(4)), None), Some(None));
        assert_eq!(rearm(None, None), None);
    }

    #[test]
    fn never_sleeps_past_the_deadline() {
        assert_eq!(rearm(None, Some(ms(500))), Some(Some(ms(256))));
        assert_eq!(rearm(Some(ms(256)), Some(ms(200))), Some(Some(ms(128))));
        for left in 1..3000 {
            let armed = rearm(Some(ms(512)), Some(ms(left))).unwrap_or(Some(ms(512)));
            assert!(armed.unwrap() <= ms(left), "{left}");
        }
    }

    #[test]
    fn a_deadline_under_a_millisecond_keeps_the_shortest_arm() {
        for us in [0, 1, 300, 999] {
            let left = Some(Duration::from_micros(us));
            assert_eq!(rearm(Some(ms(1)), left), None, "{us} µs");
        }
        assert_eq!(
            rearm(Some(ms(2)), Some(Duration::from_micros(300))),
            Some(Some(ms(1)))
        );
    }

    #[test]
    fn stays_put_under_load() {
        // The deadline keeps moving between 1 and 7 times the armed value: no syscall.
        for left in [4, 5, 9, 20, 31] {
            assert_eq!(rearm(Some(ms(4)), Some(ms(left))), None, "{left}");
        }
        // Far away again: raise, so an idle worker wakes up rarely.
        assert_eq!(rearm(Some(ms(4)), Some(ms(40))), Some(Some(ms(32))));
    }
}
