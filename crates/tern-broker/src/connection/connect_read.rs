//! Reading CONNECT: the first packet within `max_connect_packet_size`, and what a socket
//! that fails to send one is told (nothing, or the CONNACK every version can read) and
//! counted as.

use super::transport::Socket;
use crate::broker::BrokerState;
use crate::metrics::RefusalReason;
use bytes::BytesMut;
use tern_proto::{decode, Connect, DecodeError, Packet, ProtocolVersion};

/// A connection refused before or at CONNECT: the bytes to send (if any) and the log line.
pub(super) struct Refused {
    pub reply: Option<BytesMut>,
    pub message: String,
}

/// Why a packet could not be read during the handshake.
pub(super) enum ReadError {
    Malformed(DecodeError),
    Closed,
    Io(std::io::Error),
}

/// Reads the next whole packet (CONNECT, or AUTH during enhanced authentication).
pub(super) async fn read_packet(
    socket: &mut Socket,
    input: &mut BytesMut,
    version: ProtocolVersion,
    max: usize,
) -> Result<Packet, ReadError> {
    loop {
        match decode(input, version, max) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Malformed(e)),
        }
        if input.capacity() - input.len() < 256 {
            input.reserve(1024);
        }
        match socket.read_buf(input).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Reads the first packet, which must be CONNECT [MQTT-3.1.0-1].
pub(super) async fn read_connect(
    socket: &mut Socket,
    input: &mut BytesMut,
    broker: &BrokerState,
) -> Result<Connect, Refused> {
    let max = broker.config().max_connect_packet_size();
    let refused = |message: String| Refused { reply: None, message };
    let outcome = read_packet(socket, input, ProtocolVersion::V3_1_1, max).await;
    if let Some(reason) = connect_read_refusal(&outcome) {
        broker.metrics.refused.add(reason);
    }
    match outcome {
        Ok(Packet::Connect(connect)) => Ok(*connect),
        Ok(other) => Err(refused(format!(
            "[MQTT-3.1.0-1] first packet is {}, not CONNECT",
            other.packet_type()
        ))),
        Err(ReadError::Malformed(e @ DecodeError::UnsupportedProtocolVersion { .. })) => {
            // [MQTT-3.1.2-2]: answer with return code 0x01 in the 3.1.1 format, which
            // every version can read, then close.
            Err(Refused {
                reply: Some(BytesMut::from(&b"\x20\x02\x00\x01"[..])),
                message: e.to_string(),
            })
        }
        Err(ReadError::Malformed(e @ DecodeError::PacketTooLarge { .. })) => {
            // Refused at the fixed header, before the body is buffered. A 5.0 client (its
            // protocol level is in the first bytes) is told with CONNACK 0x95.
            let reply = is_v5_connect(input).then(|| BytesMut::from(&b"\x20\x03\x00\x95\x00"[..]));
            Err(Refused {
                reply,
                message: format!("CONNECT larger than max_connect_packet_size {max}: {e}"),
            })
        }
        Err(ReadError::Malformed(e)) => Err(refused(format!("malformed CONNECT: {e}"))),
        Err(ReadError::Closed) => Err(refused("closed before CONNECT".into())),
        // A refused TLS handshake or WebSocket upgrade says what it was itself.
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(refused(format!("{e} (before CONNECT)")))
        }
        Err(ReadError::Io(e)) => Err(refused(format!("read error before CONNECT: {e}"))),
    }
}

/// How a failed read of CONNECT is counted among refused connections.
fn connect_read_refusal(outcome: &Result<Packet, ReadError>) -> Option<RefusalReason> {
    Some(match outcome {
        Ok(Packet::Connect(_)) => return None,
        Ok(_) => RefusalReason::BadConnect,
        Err(ReadError::Malformed(DecodeError::UnsupportedProtocolVersion { .. })) => RefusalReason::UnsupportedProtocol,
        Err(ReadError::Malformed(_)) => RefusalReason::BadConnect,
        // A failed TLS handshake, or a refused WebSocket upgrade or bad frame.
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            if e.to_string().starts_with("TLS") {
                RefusalReason::Tls
            } else {
                RefusalReason::BadConnect
            }
        }
        Err(ReadError::Closed | ReadError::Io(_)) => RefusalReason::ConnectTimeout,
    })
}

/// Whether the start of a CONNECT in `input` names protocol level 5.
fn is_v5_connect(input: &[u8]) -> bool {
    // Fixed header: type byte and 1-4 bytes of Remaining Length; then "\0\x04MQTT" and
    // the level.
    let Some(length_bytes) = input.iter().skip(1).take(4).position(|b| b & 0x80 == 0) else {
        return false;
    };
    let level_at = 1 + length_bytes + 1 + 6;
    input.get(level_at - 6..level_at) == Some(&b"\0\x04MQTT"[..]) && input.get(level_at) == Some(&5)
}
