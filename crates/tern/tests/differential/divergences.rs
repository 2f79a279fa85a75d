//! The exact bytes of the named differences, case by case (see `crate::Divergence`):
//! renders are the packets in hex, then "EOF" when the broker closed the connection; an
//! empty render is a reply of nothing while the connection stays open.

use crate::Divergence;

const fn d(case: &'static str, exception: &'static str, mosquitto: &'static str, tern: &'static str) -> Divergence {
    Divergence {
        case,
        exception,
        mosquitto,
        tern,
    }
}

const VIOLATION: &str = "violation-disconnect";
const STRICT: &str = "strict-decoding";

pub const DIVERGENCES: &[Divergence] = &[
    // mosquitto grants every subscription and filters deliveries; Tern refuses at SUBSCRIBE.
    d(
        "3.1.1 ACL: subscribe and publish",
        "acl-subscribe",
        "90050001010101",
        "90050001010180",
    ),
    d(
        "3.1.1 ACL: subscribe and publish",
        "acl-subscribe",
        "900400010000",
        "900400010080",
    ),
    d(
        "5.0 ACL: subscribe and publish",
        "acl-subscribe",
        "9006000100010101",
        "9006000100010187",
    ),
    d(
        "5.0 ACL: subscribe and publish",
        "acl-subscribe",
        "90050001000000",
        "90050001000087",
    ),
    // The acknowledgement first, then the message back to its own publisher.
    d(
        "3.1.1 a message to the publisher's own subscription",
        "own-message-order",
        "320b00036f776e00016563686f 40020002",
        "40020002 320b00036f776e00016563686f",
    ),
    d(
        "5.0 a message to the publisher's own subscription",
        "own-message-order",
        "320c00036f776e0001006563686f 40020002",
        "40020002 320c00036f776e0001006563686f",
    ),
    // Refused by Tern, passed by mosquitto: the step's reply and the last ping's.
    d("3.1.1 DUP on a QoS 0 PUBLISH", STRICT, "", "EOF"),
    d("3.1.1 a PINGREQ with a body", STRICT, "", "EOF"),
    d("5.0 DUP on a QoS 0 PUBLISH", STRICT, "", "e00181 EOF"),
    d("5.0 DUP on a QoS 0 PUBLISH", STRICT, "", "EOF"),
    d("5.0 a PINGREQ with a body", STRICT, "", "e00181 EOF"),
    d("5.0 a PINGREQ with a body", STRICT, "", "EOF"),
    // max_keepalive 30: keepalive 60 and keepalive 0 from 3.1.1 clients.
    d(
        "3.1.1 max_keepalive",
        "keepalive-3x-over-maximum",
        "20020000",
        "20020002 EOF",
    ),
    d("3.1.1 max_keepalive", "keepalive-3x-over-maximum", "", "EOF"),
    d(
        "5.0 keepalive 0",
        "keepalive-zero",
        "200c00000922000a13ffff210014",
        "200900000622000a210014",
    ),
    d(
        "3.1.1 a CONNECT over 64 KiB",
        "max-connect-packet-size",
        "20020000",
        "EOF",
    ),
    d("3.1.1 a CONNECT over 64 KiB", "max-connect-packet-size", "", "EOF"),
    d(
        "5.0 a CONNECT over 64 KiB",
        "max-connect-packet-size",
        "200900000622000a210014",
        "2003009500 EOF",
    ),
    d("5.0 a CONNECT over 64 KiB", "max-connect-packet-size", "", "EOF"),
    d("5.0 a session taken over", "session-taken-over", "EOF", "e0018e EOF"),
    d(
        "5.0 acknowledgements of unknown packet ids",
        "unknown-packet-id",
        "62020009",
        "6203000992",
    ),
    d(
        "5.0 acknowledgements of unknown packet ids",
        "unknown-packet-id",
        "70020009",
        "7003000992",
    ),
    // Protocol violations: mosquitto's DISCONNECT (or none), Tern's.
    d("5.0 a second CONNECT", VIOLATION, "EOF", "e00182 EOF"),
    d("5.0 a CONNACK from the client", VIOLATION, "EOF", "e00182 EOF"),
    d("5.0 a Remaining Length of five bytes", VIOLATION, "EOF", "e00181 EOF"),
    d("5.0 packet type 15", VIOLATION, "EOF", "e00182 EOF"),
    d("5.0 reserved packet type 0", VIOLATION, "e00182 EOF", "e00181 EOF"),
    d("5.0 PUBREL with wrong flags", VIOLATION, "EOF", "e00181 EOF"),
    d("5.0 SUBSCRIBE without filters", VIOLATION, "e00181 EOF", "e00182 EOF"),
    d("5.0 UNSUBSCRIBE without filters", VIOLATION, "e00181 EOF", "e00182 EOF"),
    d("5.0 SUBSCRIBE with packet id 0", VIOLATION, "e00181 EOF", "e00182 EOF"),
    d("5.0 an invalid topic filter", VIOLATION, "e00181 EOF", "e0018f EOF"),
    d(
        "5.0 an invalid shared subscription",
        VIOLATION,
        "e00181 EOF",
        "e0018f EOF",
    ),
    d(
        "5.0 a topic name with a wildcard",
        VIOLATION,
        "e00182 EOF",
        "e00190 EOF",
    ),
    d("5.0 an empty topic name", VIOLATION, "e00182 EOF", "e00190 EOF"),
    d("5.0 topic alias 0", VIOLATION, "e00181 EOF", "e00194 EOF"),
    // message_size_limit: PUBACK and PUBREC.
    d(
        "5.0 message_size_limit",
        "message-size-limit-code",
        "4003000695",
        "4003000697",
    ),
    d(
        "5.0 message_size_limit",
        "message-size-limit-code",
        "5003000795",
        "5003000797",
    ),
    d(
        "5.0 Request Problem Information 0",
        "message-size-limit-code",
        "4003000395",
        "4003000397",
    ),
    // The third message found the offline session's queue full (max_queued_messages 2).
    d(
        "5.0 max_queued_messages",
        "no-matching-subscribers",
        "4002000d",
        "4003000d10",
    ),
    d("5.0 No Local", "no-matching-subscribers", "40020003", "4003000310"),
    // mosquitto's two copies (QoS 0 with identifier 7, QoS 1 with 5); Tern's one.
    d(
        "5.0 overlapping subscriptions",
        "one-copy-per-message",
        "30090003612f78020b076d",
        "320d0003612f780001040b050b076d",
    ),
    d(
        "5.0 overlapping subscriptions",
        "one-copy-per-message",
        "320b0003612f780001020b056d",
        "",
    ),
    d(
        "5.0 a repeated SUBSCRIBE replaces the options",
        "subscription-replaced",
        "3106000272700072",
        "3006000272700072",
    ),
    d(
        "5.0 No Local on a shared subscription",
        "shared-no-local",
        "900400010001",
        "e00182 EOF",
    ),
    d("5.0 No Local on a shared subscription", "shared-no-local", "", "EOF"),
    // max_inflight_messages 2: two QoS 2 messages nobody receives, then a third.
    d(
        "5.0 the Receive Maximum exceeded",
        "qos2-forwarded-on-publish",
        "50020003",
        "5003000310",
    ),
    d(
        "5.0 the Receive Maximum exceeded",
        "qos2-forwarded-on-publish",
        "50020004",
        "5003000410",
    ),
    d(
        "5.0 the Receive Maximum exceeded",
        "receive-maximum-exceeded",
        "5003000597",
        "e00193 EOF",
    ),
    d(
        "5.0 the Receive Maximum exceeded",
        "receive-maximum-exceeded",
        "",
        "EOF",
    ),
];
