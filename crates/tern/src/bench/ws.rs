//! The load generator's transport: plain TCP or TLS (`--tls`), with MQTT as it is or
//! inside WebSocket frames (`--ws`), so that the broker's cost per message and per
//! connection over TLS and WebSocket can be set beside TCP's.
//!
//! Written for the generator's needs only: the upgrade is sent and its 101 checked,
//! every write becomes one masked binary frame (with a zero masking key: the broker
//! still unmasks every byte, the generator need not), and incoming frames are stripped
//! as they stream in, whatever their size.

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, BytesMut};
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The byte stream under MQTT (or under WebSocket): a TCP half or a TLS stream's half.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Sends the WebSocket upgrade on `stream` and waits for the broker's 101.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, addr: SocketAddr) -> Result<()> {
    let request = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGVybiBiZW5jaCBrZXkgIQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let byte = stream
            .read_u8()
            .await
            .context("the broker closed during the WebSocket upgrade")?;
        answer.push(byte);
        if answer.len() > 16 * 1024 {
            bail!("{addr}: WebSocket upgrade answer too long");
        }
    }
    if !answer.starts_with(b"HTTP/1.1 101") {
        let first = String::from_utf8_lossy(&answer);
        bail!(
            "{addr}: WebSocket upgrade refused: {}",
            first.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// The reading half: MQTT bytes, unwrapped from frames on a WebSocket connection.
pub struct Reader {
    inner: ReadHalf,
    /// `Some` on a WebSocket connection: bytes read and not yet unwrapped.
    frames: Option<Frames>,
}

/// Incoming WebSocket frames, parsed as they arrive.
#[derive(Default)]
struct Frames {
    raw: BytesMut,
    /// Payload bytes of the current data frame not yet passed on.
    left: u64,
}

impl Reader {
    pub fn new(inner: ReadHalf, websocket: bool) -> Reader {
        Reader {
            inner,
            frames: websocket.then(Frames::default),
        }
    }

    /// Appends at least one MQTT byte to `buf`; `Ok(0)` once the broker has closed.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(frames) = self.frames.as_mut() else {
            return self.inner.read_buf(buf).await;
        };
        loop {
            match frames.unwrap_into(buf) {
                Some(0) => {}
                Some(n) => return Ok(n),
                None => return Ok(0),
            }
            frames.raw.reserve(64 * 1024);
            if self.inner.read_buf(&mut frames.raw).await? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Frames {
    /// Moves the payload of the data frames in `raw` to `out`; `None` at a close frame.
    fn unwrap_into(&mut self, out: &mut BytesMut) -> Option<usize> {
        let mut moved = 0;
        loop {
            if self.left > 0 {
                let n = (self.left as usize).min(self.raw.len());
                if n == 0 {
                    return Some(moved);
                }
                out.extend_from_slice(&self.raw[..n]);
                self.raw.advance(n);
                self.left -= n as u64;
                moved += n;
                continue;
            }
            let Some((opcode, length, header)) = frame_header(&self.raw) else {
                // Not all of the header is here yet.
                return Some(moved);
            };
            match opcode {
                0x8 => return (moved > 0).then_some(moved),
                0x0..=0x2 => {
                    self.raw.advance(header);
                    self.left = length;
                }
                // Ping or pong: the generator does not answer (the broker never pings).
                _ if self.raw.len() >= header + length as usize => self.raw.advance(header + length as usize),
                _ => return Some(moved),
            }
        }
    }
}

/// A server frame's opcode, payload length and header size, once the header is whole.
fn frame_header(raw: &[u8]) -> Option<(u8, u64, usize)> {
    let (&first, &second) = (raw.first()?, raw.get(1)?);
    let (length, header) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(raw.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    Some((first & 0x0f, length, header))
}

/// The writing half: each write is one masked binary frame on a WebSocket connection.
pub struct Writer {
    inner: WriteHalf,
    /// `Some` on a WebSocket connection: the frame being written.
    frame: Option<BytesMut>,
}

impl Writer {
    pub fn new(inner: WriteHalf, websocket: bool) -> Writer {
        Writer {
            inner,
            frame: websocket.then(BytesMut::new),
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(frame) = self.frame.as_mut() else {
            self.inner.write_all(data).await?;
            // TLS may keep the last record in its buffer until flushed (TCP: nothing).
            return self.inner.flush().await;
        };
        frame.clear();
        frame.put_u8(0x82);
        match data.len() {
            n @ 0..=125 => frame.put_u8(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.put_u8(0x80 | 126);
                frame.put_u16(n as u16);
            }
            n => {
                frame.put_u8(0x80 | 127);
                frame.put_u64(n as u64);
            }
        }
        // A zero masking key: the payload goes as it is.
        frame.put_u32(0);
        frame.extend_from_slice(data);
        self.inner.write_all(frame).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_unwrapped_across_reads_and_a_close_ends_the_stream() {
        let mut frames = Frames::default();
        let mut out = BytesMut::new();
        frames.raw.extend_from_slice(&[0x82, 0x03, b'a', b'b']);
        assert_eq!(frames.unwrap_into(&mut out), Some(2));
        frames.raw.extend_from_slice(&[b'c', 0x8a, 0x00, 0x82, 0x7e, 0x00]);
        assert_eq!(frames.unwrap_into(&mut out), Some(1));
        frames.raw.extend_from_slice(&[0x01, b'd', 0x88, 0x00]);
        // What came before the close first, then the end.
        assert_eq!(frames.unwrap_into(&mut out), Some(1));
        assert_eq!(frames.unwrap_into(&mut out), None);
        assert_eq!(&out[..], b"abcd");
    }
}
