//! The socket of one connection: plain TCP (or a Unix stream), optionally carrying TLS
//! through a rustls `ServerConnection` driven by hand, optionally carrying WebSocket
//! frames (`super::websocket`) over either: TCP → TLS → WebSocket → MQTT.
//!
//! The connection loop works on readiness (`readable`/`writable`) and non-blocking
//! `try_read_buf`/`try_write`, which keeps an idle connection small and lets one write
//! carry everything pending. TLS fits the same shape: ciphertext moves between the TCP
//! socket and rustls without waiting, and plaintext moves between rustls and the
//! connection's buffers. Bytes rustls still holds for the socket count as pending output,
//! so the loop keeps waiting for writability until they are gone. The WebSocket layer
//! is the same: its frames and answers waiting for the layer below are pending output.

use super::websocket::WebSocket;
use crate::config::WebSocketSettings;
use bytes::{Buf, BytesMut};
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

/// Plaintext taken from rustls per read call, at most.
const TLS_READ_CHUNK: usize = 16 * 1024;
/// Bytes read from below per WebSocket read call, at most.
const WS_READ_CHUNK: usize = 4 * 1024;
/// MQTT bytes put in one outgoing WebSocket frame, at most.
const WS_MAX_FRAME: usize = 64 * 1024;

/// The byte stream under a connection: TCP from a listener, or a Unix stream handed in
/// by an embedder (in-process transports, the fuzz target).
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
        }
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write_vectored(bufs),
            Stream::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown().await,
            Stream::Unix(s) => s.shutdown().await,
        }
    }
}

/// `io::Read` / `io::Write` over a non-blocking stream, for rustls.
struct Nonblocking<'a>(&'a Stream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A client's socket.
pub(crate) struct Socket {
    lower: Lower,
    /// The WebSocket layer on a WebSocket listener; boxed, as most sockets have none.
    ws: Option<Box<WebSocket>>,
    /// Payload bytes of the last outgoing WebSocket frame not yet written: its header is
    /// out, so they must come next, before any other frame.
    frame_left: usize,
}

/// The byte stream under MQTT, or under the WebSocket layer: TCP or Unix, maybe TLS.
struct Lower {
    tcp: Stream,
    /// The TLS session on a TLS listener; boxed, as it is large.
    tls: Option<Box<ServerConnection>>,
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Socket {
    pub fn plain(tcp: TcpStream) -> Socket {
        Socket {
            lower: Lower {
                tcp: Stream::Tcp(tcp),
                tls: None,
            },
            ws: None,
            frame_left: 0,
        }
    }

    pub fn tls(tcp: TcpStream, tls: ServerConnection) -> Socket {
        Socket {
            lower: Lower {
                tcp: Stream::Tcp(tcp),
                tls: Some(Box::new(tls)),
            },
            ws: None,
            frame_left: 0,
        }
    }

    pub fn unix(stream: UnixStream) -> Socket {
        Socket {
            lower: Lower {
                tcp: Stream::Unix(stream),
                tls: None,
            },
            ws: None,
            frame_left: 0,
        }
    }

    /// Carries MQTT in WebSocket frames over this socket, after the HTTP upgrade the
    /// client opens with. Frames and messages over `max_message` bytes are refused.
    pub fn websocket(mut self, settings: WebSocketSettings, peer: std::net::IpAddr, max_message: usize) -> Socket {
        self.ws = Some(Box::new(WebSocket::new(settings, peer, max_message)));
        self
    }

    /// The TLS session, on a TLS listener.
    pub fn tls_session(&self) -> Option<&ServerConnection> {
        self.lower.tls.as_deref()
    }

    /// The client's address as a trusted proxy in front of a WebSocket listener gave it.
    pub fn forwarded_for(&self) -> Option<std::net::IpAddr> {
        self.ws.as_ref().and_then(|ws| ws.forwarded_for())
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.lower.tcp.readable().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.lower.tcp.writable().await
    }

    /// Ready when the socket has bytes (or an error) to read; only this connection's
    /// task waits on it, so no waiter node is needed.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lower.tcp.poll_read_ready(cx)
    }

    /// Ready when the socket has room to write.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lower.tcp.poll_write_ready(cx)
    }

    /// Whether bytes wait for the socket: TLS records (handshake, alerts, encrypted
    /// output) or WebSocket frames and answers.
    pub fn has_pending_output(&self) -> bool {
        self.ws.as_ref().is_some_and(|ws| !ws.output_is_empty()) || self.lower.has_pending_output()
    }

    /// Reads what is available without waiting: `Ok(0)` at end of stream, `WouldBlock`
    /// when nothing is available (for TLS: no complete record yet; for WebSocket: no
    /// payload yet).
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(ws) = self.ws.as_deref_mut() else {
            return self.lower.try_read_buf(buf);
        };
        loop {
            let before = buf.len();
            let decoded = ws.decode(buf);
            // The upgrade answer, pongs and close frames go out now (best effort: what
            // does not fit waits as pending output).
            let flushed = match self.frame_left {
                0 => flush_ws(ws, &mut self.lower),
                _ => Ok(()),
            };
            let ended = decoded?;
            flushed?;
            if buf.len() > before {
                return Ok(buf.len() - before);
            }
            if ended {
                return Ok(0);
            }
            match self.lower.try_read_buf(ws.input_buffer(WS_READ_CHUNK)) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => {
                    // Nothing came (WouldBlock, usually): an idle connection keeps no
                    // read buffer.
                    ws.release_empty_input();
                    return Err(e);
                }
            }
        }
    }

    /// Writes without waiting; `WouldBlock` when nothing could be taken.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(ws) = self.ws.as_deref_mut() else {
            return self.lower.try_write(data);
        };
        if self.frame_left > 0 {
            // The rest of a frame whose header is out: its payload goes as it is.
            let n = self.lower.try_write(&data[..data.len().min(self.frame_left)])?;
            self.frame_left -= n;
            if self.frame_left == 0 {
                flush_ws(ws, &mut self.lower)?;
            }
            return Ok(n);
        }
        flush_ws(ws, &mut self.lower)?;
        if !ws.output_is_empty() {
            return Err(would_block());
        }
        if !ws.is_open() {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed"));
        }
        // Header and payload in one vectored write, nothing copied: what the socket does
        // not take of the payload stays in the caller's buffer and follows as the rest of
        // this frame; a header taken only in part is finished from the layer's output.
        let n = data.len().min(WS_MAX_FRAME);
        let (header, header_len) = binary_frame_header(n);
        let header = &header[..header_len];
        let written = self.lower.try_write_vectored(header, &data[..n])?;
        if written < header.len() {
            ws.output().extend_from_slice(&header[written..]);
            ws.output().extend_from_slice(&data[..n]);
            return Ok(n);
        }
        let taken = written - header.len();
        self.frame_left = n - taken;
        if taken == 0 {
            // Only the header went: the caller comes back with the payload when the
            // socket has room, and it follows as the rest of this frame.
            return Err(would_block());
        }
        Ok(taken)
    }

    /// Pushes what the WebSocket layer and TLS hold to the socket, as far as it takes them.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        if let Some(ws) = self.ws.as_deref_mut() {
            if self.frame_left == 0 {
                flush_ws(ws, &mut self.lower)?;
            }
        }
        self.lower.flush_pending()
    }

    /// Reads at least one byte (or end of stream), waiting as needed.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.readable().await?;
            if buf.capacity() == buf.len() {
                buf.reserve(1024);
            }
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_pending().await?;
                }
                other => return other,
            }
        }
    }

    /// Writes all of `data` and what is pending, waiting as needed.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.write_pending().await
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        while self.has_pending_output() {
            self.flush_pending()?;
            if self.has_pending_output() {
                self.writable().await?;
            }
        }
        Ok(())
    }

    /// Ends the stream: a WebSocket close frame, TLS close_notify, then TCP FIN.
    pub async fn shutdown(&mut self) {
        if let Some(ws) = self.ws.as_deref_mut() {
            // A close frame in the middle of a data frame would be payload: then the
            // stream just ends.
            if self.frame_left == 0 {
                ws.close(1000);
                let _ = self.write_pending().await;
            }
        }
        if let Some(tls) = self.lower.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = self.write_pending().await;
        }
        let _ = self.lower.tcp.shutdown().await;
    }
}

impl Lower {
    fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.tcp.try_read_buf(buf);
        };
        let mut eof = false;
        while tls.wants_read() {
            match tls.read_tls(&mut Nonblocking(&self.tcp)) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            let state = tls.process_new_packets().map_err(|e| {
                let hint = match e {
                    // A first byte like MQTT's CONNECT (0x10) or an HTTP request's letter.
                    rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                        " (not a TLS handshake: a plain MQTT or HTTP client on a TLS listener?)"
                    }
                    _ => "",
                };
                io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}{hint}"))
            })?;
            if state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        flush_tls(tls, &self.tcp)?;
        let start = buf.len();
        buf.resize(start + TLS_READ_CHUNK, 0);
        let read = tls.reader().read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            // Ok(0): the peer sent close_notify.
            Ok(n) => Ok(n),
            // The peer closed without close_notify: treated as the end of the stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Writes `first` then `second`, as far as the socket (or TLS) takes them.
    fn try_write_vectored(&mut self, first: &[u8], second: &[u8]) -> io::Result<usize> {
        let parts = [first, second];
        let Some(tls) = self.tls.as_deref_mut() else {
            return self
                .tcp
                .try_write_vectored(&[io::IoSlice::new(first), io::IoSlice::new(second)]);
        };
        flush_tls(tls, &self.tcp)?;
        if tls.wants_write() {
            return Err(would_block());
        }
        let mut written = 0;
        for part in parts {
            let n = tls.writer().write(part)?;
            written += n;
            if n < part.len() {
                break;
            }
        }
        flush_tls(tls, &self.tcp)?;
        if written == 0 {
            return Err(would_block());
        }
        Ok(written)
    }

    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.tcp.try_write(data);
        };
        flush_tls(tls, &self.tcp)?;
        if tls.wants_write() {
            return Err(would_block());
        }
        let n = tls.writer().write(data)?;
        flush_tls(tls, &self.tcp)?;
        if n == 0 && !data.is_empty() {
            return Err(would_block());
        }
        Ok(n)
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &self.tcp),
            None => Ok(()),
        }
    }
}

/// The header of an unmasked, final binary frame of `length` payload bytes, and its size.
fn binary_frame_header(length: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x82;
    match length {
        0..=125 => {
            header[1] = length as u8;
            (header, 2)
        }
        126..=65535 => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(length as u16).to_be_bytes());
            (header, 4)
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(length as u64).to_be_bytes());
            (header, 10)
        }
    }
}

/// Moves the WebSocket layer's output below, as far as it is taken.
fn flush_ws(ws: &mut WebSocket, lower: &mut Lower) -> io::Result<()> {
    let output = ws.output();
    while !output.is_empty() {
        match lower.try_write(output) {
            Ok(n) => output.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if output.is_empty() && output.capacity() > 0 {
        *output = BytesMut::new();
    }
    Ok(())
}

fn flush_tls(tls: &mut ServerConnection, tcp: &Stream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut Nonblocking(tcp)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
