//! The socket of one connection: plain TCP, or TCP carrying TLS through a rustls
//! `ServerConnection` driven by hand.
//!
//! The connection loop works on readiness (`readable`/`writable`) and non-blocking
//! `try_read_buf`/`try_write`, which keeps an idle connection small and lets one write
//! carry everything pending. TLS fits the same shape: ciphertext moves between the TCP
//! socket and rustls without waiting, and plaintext moves between rustls and the
//! connection's buffers. Bytes rustls still holds for the socket count as pending output,
//! so the loop keeps waiting for writability until they are gone.

use bytes::BytesMut;
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

/// Plaintext taken from rustls per read call, at most.
const TLS_READ_CHUNK: usize = 16 * 1024;

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
            tcp: Stream::Tcp(tcp),
            tls: None,
        }
    }

    pub fn tls(tcp: TcpStream, tls: ServerConnection) -> Socket {
        Socket {
            tcp: Stream::Tcp(tcp),
            tls: Some(Box::new(tls)),
        }
    }

    pub fn unix(stream: UnixStream) -> Socket {
        Socket {
            tcp: Stream::Unix(stream),
            tls: None,
        }
    }

    /// The TLS session, on a TLS listener.
    pub fn tls_session(&self) -> Option<&ServerConnection> {
        self.tls.as_deref()
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Whether TLS records wait for the socket (handshake, alerts, encrypted output).
    pub fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads what is available without waiting: `Ok(0)` at end of stream, `WouldBlock`
    /// when nothing is available (for TLS: no complete record yet).
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
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
            let state = tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
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

    /// Writes without waiting; `WouldBlock` when nothing could be taken.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
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

    /// Pushes TLS records rustls holds to the socket, as far as it takes them.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &self.tcp),
            None => Ok(()),
        }
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

    /// Writes all of `data` and what TLS holds, waiting as needed.
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

    /// Ends the stream: TLS close_notify, then TCP FIN.
    pub async fn shutdown(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = self.write_pending().await;
        }
        let _ = self.tcp.shutdown().await;
    }
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
