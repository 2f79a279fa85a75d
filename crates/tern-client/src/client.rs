//! The handle applications hold, its errors and the events it delivers.

use crate::event_loop::{self, Command};
use crate::options::ConnectOptions;
use bytes::Bytes;
use tern_proto::{
    ByteStr, ConnectAck, DecodeError, Properties, Publish, QoS, ReasonCode, Subscribe, SubscribeAck, Subscription,
    SubscriptionOptions, Unsubscribe, UnsubscribeAck,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("Connection refused: {}", refusal_text(*.0))]
    Refused(ReasonCode),
    #[error("no CONNACK within the connect timeout")]
    Timeout,
    #[error("the broker sent a malformed packet: {0}")]
    Protocol(#[from] DecodeError),
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    #[error("the client is closed")]
    Closed,
    #[error("cannot encode the packet: {0}")]
    Encode(#[from] tern_proto::EncodeError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("enhanced authentication failed: {0}")]
    Authentication(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// mosquitto's wording for CONNACK refusals, which users grep for.
fn refusal_text(code: ReasonCode) -> String {
    match code.0 {
        0x84 => "unacceptable protocol version".into(),
        0x85 => "identifier rejected".into(),
        0x88 | 0x89 => "broker unavailable".into(),
        0x86 => "bad user name or password".into(),
        0x87 => "not authorised".into(),
        _ => code.name().to_lowercase(),
    }
}

/// Something the broker sent or that happened to the connection.
#[derive(Debug, Clone)]
pub enum Event {
    /// An application message for one of the subscriptions.
    Message(Publish),
    /// The connection was re-established after a loss (reconnect enabled).
    Reconnected(ConnectAck),
    /// The connection was lost; with reconnect enabled the client is trying again.
    Disconnected(String),
    /// The broker sent DISCONNECT (5.0) with this reason.
    DisconnectedByBroker(ReasonCode),
}

/// The stream of [`Event`]s; ends when the client stops for good.
pub type Events = mpsc::Receiver<Event>;

/// A handle to a connected client; cheap to clone, usable from many tasks.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

impl Client {
    /// Connects over TCP to `options.host:options.port` and waits for CONNACK.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Events, ConnectAck), ClientError> {
        let (commands, connack, events) = event_loop::start(options, None).await?;
        Ok((Client { commands }, events, connack))
    }

    /// Connects over an already open transport (TLS, a test pipe...). Reconnecting needs
    /// TCP and is not done for such transports.
    pub async fn connect_with<T>(
        options: ConnectOptions,
        transport: T,
    ) -> Result<(Client, Events, ConnectAck), ClientError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (commands, connack, events) = event_loop::start(options, Some(Box::new(transport))).await?;
        Ok((Client { commands }, events, connack))
    }

    async fn request<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<R, ClientError>>) -> Command,
    ) -> Result<R, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Publishes and waits until the flow completes: written (QoS 0), PUBACK (QoS 1) or
    /// PUBCOMP (QoS 2). Returns the broker's reason code (always Success before 5.0).
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<ReasonCode, ClientError> {
        self.publish_message(message(topic, payload.into(), qos, retain, Properties::default()))
            .await
    }

    /// Publishes a prepared message (5.0 properties included).
    pub async fn publish_message(&self, publish: Publish) -> Result<ReasonCode, ClientError> {
        self.start_publish(publish)
            .await?
            .await
            .map_err(|_| ClientError::Closed)?
    }

    /// Queues a message and returns at once; the receiver resolves when its flow completes.
    /// Lets a caller keep many messages in flight from one task.
    pub async fn start_publish(
        &self,
        publish: Publish,
    ) -> Result<oneshot::Receiver<Result<ReasonCode, ClientError>>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish { publish, done: tx })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(rx)
    }

    /// Subscribes to one filter; returns the granted QoS or the failure code.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<ReasonCode, ClientError> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        let ack = self
            .subscribe_many(
                vec![Subscription {
                    filter: ByteStr::from(filter),
                    options,
                }],
                Properties::default(),
            )
            .await?;
        Ok(ack
            .reason_codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UNSPECIFIED_ERROR))
    }

    /// Subscribes to several filters in one SUBSCRIBE.
    pub async fn subscribe_many(
        &self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Result<SubscribeAck, ClientError> {
        let subscribe = Subscribe {
            packet_id: 0,
            subscriptions,
            properties,
        };
        self.request(|done| Command::Subscribe { subscribe, done }).await
    }

    pub async fn unsubscribe(
        &self,
        filters: Vec<ByteStr>,
        properties: Properties,
    ) -> Result<UnsubscribeAck, ClientError> {
        let unsubscribe = Unsubscribe {
            packet_id: 0,
            filters,
            properties,
        };
        self.request(|done| Command::Unsubscribe { unsubscribe, done }).await
    }

    /// Re-authenticates a connection made with SCRAM-SHA-256 (MQTT 5.0 AUTH 0x19); ends
    /// when the broker confirms.
    pub async fn reauthenticate(&self) -> Result<(), ClientError> {
        self.request(|done| Command::Reauthenticate { done }).await
    }

    /// Sends DISCONNECT (normal, no will) and closes the connection.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.disconnect_with(ReasonCode::NORMAL_DISCONNECTION, Properties::default())
            .await
    }

    /// Sends DISCONNECT with this reason code and these properties (both 5.0 only; 0x04
    /// asks the broker to publish the will all the same) and closes the connection. While
    /// the client is between connections (reconnect enabled) it just stops.
    pub async fn disconnect_with(&self, reason_code: ReasonCode, properties: Properties) -> Result<(), ClientError> {
        self.request(|done| Command::Disconnect {
            reason_code,
            properties,
            done,
        })
        .await
    }
}

/// A PUBLISH to send.
pub fn message(topic: &str, payload: Bytes, qos: QoS, retain: bool, properties: Properties) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        packet_id: 0,
        properties,
        payload,
    }
}
