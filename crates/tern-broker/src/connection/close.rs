//! Why a connection ends ([`Close`]): it decides whether the will is published, which
//! packet is sent last, and how the event stream reports the disconnection.

use crate::events::DisconnectReason;
use tern_proto::{DecodeError, ReasonCode};
use tokio::sync::oneshot;

/// Why a connection ended; decides the will and the last packet sent.
#[derive(Debug)]
pub(crate) enum Close {
    /// DISCONNECT received: no will (5.0 reason 0x04 asks for it all the same).
    Disconnect {
        publish_will: bool,
    },
    /// The peer closed the socket or it failed.
    Gone(String),
    /// A malformed packet or protocol violation.
    Violation {
        reason: ReasonCode,
        message: String,
    },
    KeepAliveTimeout,
    TakenOver(oneshot::Sender<()>),
    Shutdown,
    /// Closed through the admin facade.
    Kicked,
    /// The client id connected to another node of the cluster.
    TakenOverElsewhere,
}

impl Close {
    pub(crate) fn violation(reason: ReasonCode, message: impl Into<String>) -> Close {
        Close::Violation {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn from_decode(e: DecodeError) -> Close {
        Close::Violation {
            reason: e.reason_code(),
            message: e.to_string(),
        }
    }
}

/// Why a connection ended, as the event stream says it.
pub(super) fn event_reason(close: &Close) -> DisconnectReason {
    match close {
        Close::Disconnect { publish_will: false } => DisconnectReason::Normal,
        Close::Disconnect { publish_will: true } => DisconnectReason::NormalWithWill,
        Close::Gone(_) => DisconnectReason::ConnectionLost,
        Close::Violation { .. } => DisconnectReason::ProtocolError,
        Close::KeepAliveTimeout => DisconnectReason::KeepAliveTimeout,
        Close::TakenOver(_) => DisconnectReason::TakenOver,
        Close::Shutdown => DisconnectReason::ServerShutdown,
        Close::TakenOverElsewhere => DisconnectReason::TakenOver,
        #[allow(unreachable_patterns)]
        _ => DisconnectReason::Kicked,
    }
}
