//! An arbitrary byte stream cut into arbitrary reads: every complete message is drained
//! after each read, under small limits so the size checks are reached. Checks that the
//! framer never returns more bytes than it was given and that a failed framer stays failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trunkstore_sip::framing::StreamFramer;
use trunkstore_sip::limits::Limits;

fuzz_target!(|data: &[u8]| {
    // First byte: limits profile; the rest is split into reads whose lengths come from
    // the data itself (a length byte, then that many bytes).
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let limits = if mode & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_message_size: 512,
            max_headers: 8,
            max_header_line: 128,
            max_uri_len: 64,
        }
    };
    let mut f = StreamFramer::new(limits);
    let (mut pushed, mut taken) = (0usize, 0usize);
    while let Some((&n, tail)) = rest.split_first() {
        let n = (usize::from(n) + 1).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        rest = tail;
        f.push(chunk);
        pushed += chunk.len();
        loop {
            match f.next_message() {
                Ok(Some(m)) => {
                    taken += m.bytes().len();
                    assert!(m.bytes().len() <= limits.message_size());
                    let _ = (m.body().len(), m.field_count(), m.start_line());
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(f.next_message().is_err(), "a failed framer stays failed");
                    return;
                }
            }
        }
        let _ = f.take_pings();
        assert!(taken + f.buffered() <= pushed);
    }
});
