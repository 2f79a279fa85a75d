//! The load generator's own MQTT plumbing: raw sockets, pre-encoded frames and batched
//! writes, so that the generator costs far less per message than the broker it measures.

use super::ws::{ReadHalf, Reader, WriteHalf, Writer};
use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tern_proto::*;
use tokio::net::{TcpSocket, TcpStream};

/// Bytes at the start of every payload: send time (ns since 1970), sequence, publisher.
pub const HEADER: usize = 16;

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A connected client's two halves and the bytes read past CONNACK.
pub struct Raw {
    pub reader: Reader,
    pub writer: Writer,
    pub input: BytesMut,
    pub version: ProtocolVersion,
}

/// Where the generator connects: the broker's address, over TLS or not, over WebSocket or
/// not, and from which local addresses.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub websocket: bool,
    /// `Some` over TLS: the client configuration (the CA of `--cafile`; the host name is
    /// not checked, as mosquitto's `--insecure`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Local addresses to connect from, in turn (`--sources`): one address has only
    /// about 28,000 ports towards one broker port, 100,000 connections need four.
    pub sources: Vec<IpAddr>,
}

impl Target {
    /// Opens the byte stream of the `index`th connection: TCP from its source address,
    /// then TLS if asked.
    async fn open(&self, index: usize) -> Result<(ReadHalf, WriteHalf)> {
        let addr = self.addr;
        let stream = match self.sources.get(index % self.sources.len().max(1)) {
            None => TcpStream::connect(addr).await,
            Some(source) => {
                let socket = match source {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                socket
                    .bind(SocketAddr::new(*source, 0))
                    .with_context(|| format!("cannot bind a socket to {source}"))?;
                socket.connect(addr).await
            }
        }
        .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let Some(config) = &self.tls else {
            let (reader, writer) = stream.into_split();
            return Ok((Box::new(reader), Box::new(writer)));
        };
        let name = ServerName::from(addr.ip());
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        let (reader, writer) = tokio::io::split(stream);
        Ok((Box::new(reader), Box::new(writer)))
    }
}

/// Who a connection says it is: its client id, and a user name and password if any.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub client_id: String,
    pub credentials: Option<(String, String)>,
}

impl Login {
    pub fn anonymous(client_id: String) -> Login {
        Login {
            client_id,
            credentials: None,
        }
    }
}

/// Connects, sends CONNECT and waits for a successful CONNACK; with `persistent`, the session outlives the connection (Clean Session
/// 0, or Clean Start 0 with a Session Expiry Interval of an hour), so the broker stores it.
pub async fn connect_with(
    target: &Target,
    version: ProtocolVersion,
    login: &Login,
    keep_alive: u16,
    persistent: bool,
) -> Result<Raw> {
    connect_nth(target, 0, version, login, (keep_alive, persistent)).await
}

/// As [`connect_with`], for the `index`th connection (which picks its source address).
pub async fn connect_nth(
    target: &Target,
    index: usize,
    version: ProtocolVersion,
    login: &Login,
    (keep_alive, persistent): (u16, bool),
) -> Result<Raw> {
    let addr = target.addr;
    let (mut reader, mut writer) = target.open(index).await?;
    if target.websocket {
        let mut both = tokio::io::join(&mut reader, &mut writer);
        super::ws::upgrade(&mut both, addr).await?;
    }
    let mut raw = Raw {
        reader: Reader::new(reader, target.websocket),
        writer: Writer::new(writer, target.websocket),
        // Grown on demand: many idle connections must not cost the generator 64 KiB each.
        input: BytesMut::new(),
        version,
    };
    let mut connect = Connect::new(
        version,
        ByteStr::from(login.client_id.as_str()),
        !persistent,
        keep_alive,
    );
    if let Some((user, password)) = &login.credentials {
        connect.username = Some(ByteStr::from(user.as_str()));
        connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    }
    if persistent && version.is_v5() {
        connect
            .properties
            .push(tern_proto::Property::SessionExpiryInterval(3600));
    }
    raw.send(&Packet::Connect(Box::new(connect))).await?;
    match raw.next().await? {
        Packet::ConnectAck(ack) if ack.reason_code.is_success() => Ok(raw),
        Packet::ConnectAck(ack) => bail!("{addr}: connection refused: {}", ack.reason_code),
        other => bail!("{addr}: expected CONNACK, got {}", other.packet_type()),
    }
}

impl Raw {
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out)?;
        self.writer.write_all(&out).await?;
        Ok(())
    }

    /// The next packet, reading as needed.
    pub async fn next(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.input, self.version, usize::MAX)? {
                return Ok(p);
            }
            if self.input.capacity() - self.input.len() < 4096 {
                self.input.reserve(64 * 1024);
            }
            if self.reader.read_buf(&mut self.input).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        let subscription = Subscription {
            filter: ByteStr::from(filter),
            options,
        };
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: vec![subscription],
            properties: Properties::default(),
        }))
        .await?;
        match self.next().await? {
            Packet::SubscribeAck(ack) if ack.reason_codes.iter().all(|c| c.is_success()) => Ok(()),
            Packet::SubscribeAck(ack) => Err(anyhow!("subscription to {filter} refused: {:?}", ack.reason_codes)),
            other => bail!("expected SUBACK, got {}", other.packet_type()),
        }
    }
}

/// A PUBLISH frame for a publisher, encoded once; each send patches the timestamp,
/// sequence and packet id into a copy.
pub struct Frame {
    frame: PublishFrame,
    /// Offset of the payload within the frame.
    payload_at: usize,
}

impl Frame {
    pub fn new(topic: &str, qos: QoS, size: usize, publisher: u32, version: ProtocolVersion) -> Result<Frame> {
        let mut payload = BytesMut::with_capacity(size.max(HEADER));
        payload.put_u64(0);
        payload.put_u32(0);
        payload.put_u32(publisher);
        payload.resize(size.max(HEADER), b'x');
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteStr::from(topic),
            packet_id: u16::from(qos != QoS::AtMostOnce),
            properties: Properties::default(),
            payload: payload.freeze(),
        };
        let frame = PublishFrame::new(&publish, version)?;
        let payload_at = frame.len() - publish.payload.len();
        Ok(Frame { frame, payload_at })
    }

    /// Appends the frame with this `packet_id`, `sequence` and the current time.
    pub fn write(&self, out: &mut BytesMut, packet_id: u16, sequence: u32) {
        let start = out.len();
        self.frame.write(out, packet_id, false);
        let at = start + self.payload_at;
        out[at..at + 8].copy_from_slice(&now_nanos().to_be_bytes());
        out[at + 8..at + 12].copy_from_slice(&sequence.to_be_bytes());
    }
}

/// (send time, sequence, publisher) from a received payload.
pub fn read_header(payload: &Bytes) -> Option<(u64, u32, u32)> {
    if payload.len() < HEADER {
        return None;
    }
    let field = |from: usize, len: usize| {
        payload[from..from + len]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    Some((field(0, 8), field(8, 4) as u32, field(12, 4) as u32))
}
