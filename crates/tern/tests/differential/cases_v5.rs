//! Cases of the differential tests that only 5.0 has: properties, subscription options,
//! topic aliases, enhanced authentication.

use crate::cases::{case, persistent, plain, ANONYMOUS};
use crate::wire::{self, ack, connect, packet, prop, publish, publish_with, subscribe, subscribe_with, V};
use crate::wire::{DISCONNECT, PUBACK, PUBCOMP, PUBREC, PUBREL};
use crate::{Case, Step::*};

/// 5.0 only: properties, subscription options, topic aliases, enhanced authentication.
pub fn v5_cases() -> Vec<Case> {
    let mut cases = v5_subscription_cases();
    cases.extend(v5_alias_cases());
    cases.extend(v5_property_cases());
    cases.extend(v5_shared_cases());
    cases.extend(v5_session_cases());
    cases
}

/// Subscription options and identifiers, shared subscriptions.
fn v5_subscription_cases() -> Vec<Case> {
    let v = V::V5;
    let sub_id = |id| prop::varint(prop::SUBSCRIPTION_ID, id);
    vec![
        case(
            v,
            "a Subscription Identifier",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe_with(v, 1, &[("a/#", 1)], &sub_id(5))),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "a/x", b"m", 1, false, 3)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
            ],
        ),
        case(
            v,
            "overlapping subscriptions",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe_with(v, 1, &[("a/#", 1)], &sub_id(5))),
                Send("s", subscribe_with(v, 2, &[("a/+", 0)], &sub_id(7))),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "a/x", b"m", 1, false, 3)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "No Local",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("n", 1 | 4)])),
                Send("s", publish(v, "n", b"mine", 1, false, 3)),
            ],
        ),
        case(
            v,
            "Retain As Published",
            ANONYMOUS,
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "rp", b"r", 0, true, 0)),
                Send("s", plain(v, "s")),
                Expect("s", subscribe(v, 1, &[("rp", 8)]), 2),
                Send("p", publish(v, "rp", b"r2", 0, true, 0)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "a repeated SUBSCRIBE replaces the options",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("rp", 8)])),
                Send("s", subscribe(v, 2, &[("rp", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "rp", b"r", 0, true, 0)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "Retain Handling",
            ANONYMOUS,
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "rh", b"r", 0, true, 0)),
                Send("s", plain(v, "s")),
                Expect("s", subscribe(v, 1, &[("rh", 0x10)]), 2),
                Send("s", subscribe(v, 2, &[("rh", 0x10)])),
                Send("s", subscribe(v, 3, &[("rh", 0x20)])),
                Expect("s", subscribe(v, 4, &[("rh", 0x00)]), 2),
            ],
        ),
    ]
}

/// Shared subscriptions and UNSUBSCRIBE properties.
fn v5_shared_cases() -> Vec<Case> {
    let v = V::V5;
    vec![
        case(
            v,
            "No Local on a shared subscription",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("$share/g/sh", 1 | 4)])),
            ],
        ),
        case(
            v,
            "an invalid shared subscription",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Close("s", subscribe(v, 1, &[("$share/g#/sh", 1)])),
            ],
        ),
        case(
            v,
            "UNSUBSCRIBE with a User Property",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", {
                    let mut body = 1u16.to_be_bytes().to_vec();
                    let user = prop::user("k", "v");
                    body.extend(wire::varint(user.len()));
                    body.extend(user);
                    body.extend(wire::field(b"x"));
                    packet(0xA2, &body)
                }),
            ],
        ),
    ]
}

/// Topic aliases both ways.
fn v5_alias_cases() -> Vec<Case> {
    let v = V::V5;
    let alias = |a| prop::two(prop::TOPIC_ALIAS, a);
    vec![
        case(
            v,
            "topic aliases from the client",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("al", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish_with(v, ("al", b"1"), (0, false, false), 0, &alias(1))),
                Send("p", publish_with(v, ("", b"2"), (0, false, false), 0, &alias(1))),
                Recv("s", 2),
            ],
        ),
        case(
            v,
            "an unknown topic alias",
            ANONYMOUS,
            vec![
                Send("p", plain(v, "p")),
                Close("p", publish_with(v, ("", b"x"), (0, false, false), 0, &alias(2))),
            ],
        ),
        case(
            v,
            "topic alias 0",
            ANONYMOUS,
            vec![
                Send("p", plain(v, "p")),
                Close("p", publish_with(v, ("al", b"x"), (0, false, false), 0, &alias(0))),
            ],
        ),
        case(
            v,
            "a topic alias above the maximum",
            ANONYMOUS,
            vec![
                Send("p", plain(v, "p")),
                Close("p", publish_with(v, ("al", b"x"), (0, false, false), 0, &alias(11))),
            ],
        ),
        case(
            v,
            "outgoing topic aliases",
            ANONYMOUS,
            vec![
                Send(
                    "s",
                    connect(v, "s").prop(prop::two(prop::TOPIC_ALIAS_MAXIMUM, 1)).bytes(),
                ),
                Send("s", subscribe(v, 1, &[("ao/#", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "ao/1", b"a", 1, false, 3)),
                Send("p", publish(v, "ao/1", b"b", 1, false, 4)),
                Send("p", publish(v, "ao/2", b"c", 1, false, 5)),
                Send("p", publish(v, "ao/1", b"d", 2, false, 6)),
                Send("p", ack(PUBREL, 6)),
                Send("p", publish(v, "ao/1", b"e", 0, false, 0)),
                Recv("s", 5),
                Send("s", ack(PUBACK, 1)),
                Send("s", ack(PUBACK, 2)),
                Send("s", ack(PUBACK, 3)),
                Send("s", ack(PUBREC, 4)),
                Send("s", ack(PUBCOMP, 4)),
            ],
        ),
    ]
}

/// Message, CONNECT and DISCONNECT properties.
fn v5_property_cases() -> Vec<Case> {
    let v = V::V5;
    let forwarded = [
        prop::user("k", "v"),
        prop::byte(prop::PAYLOAD_FORMAT, 1),
        prop::string(prop::CONTENT_TYPE, "text/plain"),
        prop::string(prop::RESPONSE_TOPIC, "resp"),
        prop::string(prop::CORRELATION_DATA, "corr"),
    ]
    .concat();
    vec![
        case(
            v,
            "message properties are forwarded",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("f", 1)])),
                Send("p", plain(v, "p")),
                Send("p", publish_with(v, ("f", b"m"), (1, false, false), 3, &forwarded)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
            ],
        ),
        case(
            v,
            "the client's Maximum Packet Size",
            ANONYMOUS,
            vec![
                Send(
                    "s",
                    connect(v, "s").prop(prop::four(prop::MAXIMUM_PACKET_SIZE, 20)).bytes(),
                ),
                Send("s", subscribe(v, 1, &[("mp", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "mp", &[b'x'; 30], 0, false, 0)),
                Send("p", publish(v, "mp", b"x", 0, false, 0)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "the client's Receive Maximum",
            ANONYMOUS,
            vec![
                Send("s", connect(v, "s").prop(prop::two(prop::RECEIVE_MAXIMUM, 1)).bytes()),
                Send("s", subscribe(v, 1, &[("cr", 1)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "cr", b"1", 1, false, 3)),
                Send("p", publish(v, "cr", b"2", 1, false, 4)),
                Recv("s", 1),
                Expect("s", ack(PUBACK, 1), 1),
                Send("s", ack(PUBACK, 2)),
            ],
        ),
    ]
}

/// Session Expiry Interval, DISCONNECT with a will, CONNECT requests.
fn v5_session_cases() -> Vec<Case> {
    let v = V::V5;
    vec![
        case(
            v,
            "a Session Expiry Interval",
            ANONYMOUS,
            vec![
                Send("a", persistent(v, "a")),
                Send("a", subscribe(v, 1, &[("se", 1)])),
                Close("a", DISCONNECT.into()),
                Send("b", persistent(v, "a")),
            ],
        ),
        case(
            v,
            "DISCONNECT sets a Session Expiry Interval after 0",
            ANONYMOUS,
            vec![
                Send("a", plain(v, "a")),
                Close(
                    "a",
                    packet(
                        0xE0,
                        &[&[0x00, 0x05][..], &prop::four(prop::SESSION_EXPIRY, 60)].concat(),
                    ),
                ),
            ],
        ),
        case(
            v,
            "DISCONNECT with a will",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("w/#", 0)])),
                Send(
                    "w",
                    connect(v, "w")
                        .will("w/t", b"bye", 0, false, prop::four(prop::WILL_DELAY, 0))
                        .bytes(),
                ),
                Close("w", packet(0xE0, &[0x04, 0x00])),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "Request Response Information",
            ANONYMOUS,
            vec![Send(
                "c",
                connect(v, "c")
                    .prop(prop::byte(prop::REQUEST_RESPONSE_INFORMATION, 1))
                    .bytes(),
            )],
        ),
        case(
            v,
            "an unsupported authentication method",
            ANONYMOUS,
            vec![Close(
                "c",
                connect(v, "c")
                    .prop(prop::string(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1"))
                    .bytes(),
            )],
        ),
    ]
}
