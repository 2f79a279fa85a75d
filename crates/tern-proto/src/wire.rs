//! The primitive data types of MQTT: two- and four-byte integers, Variable Byte Integers,
//! UTF-8 strings and binary data, read from a packet's bytes and written to a buffer.
//!
//! The reader works on one packet's `Bytes`, so the strings and binary fields it returns
//! are zero-copy slices of that packet.

use crate::{ByteStr, DecodeError, EncodeError, PacketType, MAX_VARIABLE_BYTE_INTEGER};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Parses a Variable Byte Integer at the start of `bytes`: `Ok(None)` when more bytes are
/// needed, otherwise the value and the number of bytes it took.
pub(crate) fn parse_variable_integer(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            if index > 0 && *byte == 0 {
                return Err(DecodeError::VariableIntegerNotMinimal);
            }
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::VariableIntegerTooLong)
    } else {
        Ok(None)
    }
}

/// The number of bytes `value` takes as a Variable Byte Integer.
pub(crate) fn variable_integer_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` as a Variable Byte Integer; `value` must not exceed
/// [`MAX_VARIABLE_BYTE_INTEGER`], which callers check.
pub(crate) fn put_variable_integer(out: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= MAX_VARIABLE_BYTE_INTEGER);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed string or binary field.
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(data.len()))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Reads the fields of one packet's variable header and payload.
pub(crate) struct Reader {
    buf: Bytes,
    /// The packet being read, named in errors.
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated { packet: self.packet })
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn variable_integer(&mut self) -> Result<u32, DecodeError> {
        match parse_variable_integer(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated { packet: self.packet }),
        }
    }

    /// The next `n` bytes, as a slice of the packet.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// A reader over the next `n` bytes (a property block), advancing this one past them.
    pub(crate) fn sub_reader(&mut self, n: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(n)?, self.packet))
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 Encoded String: well-formed and free of U+0000.
    pub(crate) fn string(&mut self) -> Result<ByteStr, DecodeError> {
        let bytes = self.binary()?;
        if bytes.contains(&0) {
            return Err(DecodeError::NullCharacter { packet: self.packet });
        }
        ByteStr::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { packet: self.packet })
    }

    /// Everything left, as a slice of the packet.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
                extra: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_integers_encode_as_in_the_specification_table() {
        for (value, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut out = BytesMut::new();
            put_variable_integer(&mut out, value);
            assert_eq!(&out[..], bytes, "encoding {value}");
            assert_eq!(variable_integer_len(value), bytes.len());
            assert_eq!(parse_variable_integer(bytes).unwrap(), Some((value, bytes.len())));
        }
    }

    #[test]
    fn a_fifth_variable_integer_byte_is_rejected() {
        assert_eq!(
            parse_variable_integer(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::VariableIntegerTooLong)
        );
    }

    #[test]
    fn an_incomplete_variable_integer_asks_for_more() {
        assert_eq!(parse_variable_integer(&[0xFF, 0xFF]), Ok(None));
    }

    #[test]
    fn a_padded_variable_integer_is_rejected() {
        assert_eq!(
            parse_variable_integer(&[0x80, 0x00]),
            Err(DecodeError::VariableIntegerNotMinimal)
        );
    }
}
