//! Feeds arbitrary bytes to the decoder under each protocol version, in two chunks so the
//! incomplete-packet path is exercised too, and re-encodes whatever decodes: neither may
//! panic, and a decoded packet must encode to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tern_proto::{decode, encode, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let split = usize::from(selector) % (rest.len() + 1);
    let mut buf = BytesMut::from(&rest[..split]);
    let mut fed_all = false;
    loop {
        match decode(&mut buf, version, 1 << 20) {
            Ok(Some(packet)) => {
                let mut out = BytesMut::new();
                let wire_version = match &packet {
                    tern_proto::Packet::Connect(c) => c.protocol_version,
                    _ => version,
                };
                if encode(&packet, wire_version, &mut out).is_ok() {
                    let again = decode(&mut out, wire_version, usize::MAX);
                    assert_eq!(again.ok().flatten().as_ref(), Some(&packet));
                }
            }
            Ok(None) if !fed_all => {
                buf.extend_from_slice(&rest[split..]);
                fed_all = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
