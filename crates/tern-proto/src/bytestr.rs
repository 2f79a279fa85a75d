//! `ByteStr`: a UTF-8 string that shares the packet buffer it was decoded from.
//!
//! Topic names, client identifiers and string properties arrive inside a received packet.
//! Keeping them as validated slices of that packet's `Bytes` avoids one allocation and one
//! copy per string on the decode path, and lets the broker clone a topic by bumping a
//! reference count.

use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// An immutable UTF-8 string backed by [`Bytes`]. The contents are always valid UTF-8:
/// every constructor checks it or starts from a `str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

/// Hashed as the `str` it is, as `Borrow<str>` requires: a map keyed by `ByteStr` is
/// searched with a `&str` (hashing the `Bytes` would hash differently and find nothing).
impl std::hash::Hash for ByteStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl ByteStr {
    /// A string borrowed from static memory, without allocation.
    pub const fn from_static(s: &'static str) -> ByteStr {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps `bytes` after checking that they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<ByteStr, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(ByteStr(bytes))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validates the bytes as UTF-8 (`from_utf8`) or
        // takes them from a `str`, and the bytes are never mutated afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the string, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> ByteStr {
        ByteStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> ByteStr {
        ByteStr(Bytes::from(s.into_bytes()))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(ByteStr::from_utf8(Bytes::from_static(&[0xC3, 0x28])).is_err());
    }

    #[test]
    fn a_surrogate_encoded_in_utf8_is_rejected() {
        assert!(ByteStr::from_utf8(Bytes::from_static(&[0xED, 0xA0, 0x80])).is_err());
    }

    #[test]
    fn valid_utf8_reads_back_unchanged() {
        let s = ByteStr::from_utf8(Bytes::from_static("a/ü/€".as_bytes())).unwrap();
        assert_eq!(s, "a/ü/€");
    }

    #[test]
    fn a_map_keyed_by_bytestr_is_searched_with_a_str() {
        let mut map = std::collections::HashMap::new();
        map.insert(ByteStr::from("client-1"), 1);
        assert_eq!(map.get("client-1"), Some(&1));
    }
}
