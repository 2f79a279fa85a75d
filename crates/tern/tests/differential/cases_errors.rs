//! Cases of the differential tests: protocol violations, mosquitto.conf directives and
//! the limits a 5.0 client is told.

use crate::cases::{case, persistent, plain, ANONYMOUS};
use crate::wire::{ack, connect, packet, prop, publish, publish_with, subscribe, V};
use crate::wire::{DISCONNECT, PINGREQ, PUBACK};
use crate::{Case, Step::*};

/// Packets a connected client may not send: each case connects, sends one, and waits for
/// the close.
pub fn violation_cases(v: V) -> Vec<Case> {
    let props = if v.is_v5() { vec![0u8] } else { Vec::new() };
    let with_first = |mut bytes: Vec<u8>, first: u8| {
        bytes[0] = first;
        bytes
    };
    let violations: Vec<(&str, Vec<u8>)> = vec![
        ("a second CONNECT", plain(v, "c")),
        ("reserved packet type 0", vec![0x00, 0x00]),
        ("packet type 15", vec![0xF0, 0x00]),
        ("a CONNACK from the client", vec![0x20, 0x02, 0, 0]),
        (
            "a Remaining Length of five bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        (
            "SUBSCRIBE with wrong flags",
            with_first(subscribe(v, 1, &[("a", 0)]), 0x80),
        ),
        ("PUBREL with wrong flags", ack(0x60, 9)),
        ("SUBSCRIBE with QoS 3", subscribe(v, 1, &[("a", 3)])),
        (
            "SUBSCRIBE without filters",
            packet(0x82, &[&[0, 1][..], &props].concat()),
        ),
        (
            "UNSUBSCRIBE without filters",
            packet(0xA2, &[&[0, 1][..], &props].concat()),
        ),
        ("SUBSCRIBE with packet id 0", subscribe(v, 0, &[("a", 0)])),
        ("an invalid topic filter", subscribe(v, 1, &[("a/#/b", 0)])),
        ("a topic name with a wildcard", publish(v, "a/+", b"x", 0, false, 0)),
        ("an empty topic name", publish(v, "", b"x", 0, false, 0)),
        (
            "PUBLISH with QoS 3",
            with_first(publish(v, "a", b"x", 1, false, 1), 0x36),
        ),
        ("PUBLISH with packet id 0", publish(v, "a", b"x", 1, false, 0)),
        (
            "a topic that is not UTF-8",
            packet(0x30, &[&[0, 2, 0xC3, 0x28][..], &props, b"x"].concat()),
        ),
        (
            "a topic with U+0000",
            packet(0x30, &[&[0, 2, b'a', 0][..], &props, b"x"].concat()),
        ),
    ];
    let mut cases: Vec<Case> = violations
        .into_iter()
        .map(|(name, bytes)| case(v, name, ANONYMOUS, vec![Send("c", plain(v, "c")), Close("c", bytes)]))
        .collect();
    cases.push(case(
        v,
        "the first packet is not CONNECT",
        ANONYMOUS,
        vec![Close("c", PINGREQ.into())],
    ));
    // What mosquitto lets through: the step does not wait for a close.
    for (name, bytes) in [
        (
            "DUP on a QoS 0 PUBLISH",
            publish_with(v, ("a", b"x"), (0, false, true), 0, &[]),
        ),
        ("a PINGREQ with a body", vec![0xC0, 0x01, 0x00]),
    ] {
        cases.push(case(
            v,
            name,
            ANONYMOUS,
            vec![Send("c", plain(v, "c")), Send("c", bytes)],
        ));
    }
    cases
}

pub fn directive_cases(v: V) -> Vec<Case> {
    vec![
        case(
            v,
            "message_size_limit",
            "allow_anonymous true\nmessage_size_limit 10\n",
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("z", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "z", b"0123456789", 1, false, 5)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
                Send("p", publish(v, "z", b"0123456789A", 1, false, 6)),
                Send("p", publish(v, "z", b"0123456789A", 0, false, 0)),
                Send("p", publish(v, "z", b"0123456789A", 2, false, 7)),
            ],
        ),
        case(
            v,
            "message_size_limit 0",
            "allow_anonymous true\nmessage_size_limit 0\n",
            vec![Send("c", plain(v, "c"))],
        ),
        case(
            v,
            "max_inflight_messages",
            "allow_anonymous true\nmax_inflight_messages 2\n",
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("i", 1)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "i", b"1", 1, false, 11)),
                Send("p", publish(v, "i", b"2", 1, false, 12)),
                Send("p", publish(v, "i", b"3", 1, false, 13)),
                Send("p", publish(v, "i", b"4", 1, false, 14)),
                Recv("s", 2),
                Expect("s", ack(PUBACK, 1), 1),
                Expect("s", ack(PUBACK, 2), 1),
                Send("s", ack(PUBACK, 3)),
                Send("s", ack(PUBACK, 4)),
            ],
        ),
        case(
            v,
            "max_inflight_messages 0",
            "allow_anonymous true\nmax_inflight_messages 0\n",
            vec![Send("c", plain(v, "c"))],
        ),
        case(
            v,
            "max_queued_messages",
            "allow_anonymous true\nmax_queued_messages 2\n",
            vec![
                Send("a", persistent(v, "a")),
                Send("a", subscribe(v, 1, &[("q", 1)])),
                Close("a", DISCONNECT.into()),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "q", b"1", 1, false, 11)),
                Send("p", publish(v, "q", b"2", 1, false, 12)),
                Send("p", publish(v, "q", b"3", 1, false, 13)),
                Expect("b", persistent(v, "a"), 3),
                Send("b", ack(PUBACK, 1)),
                Send("b", ack(PUBACK, 2)),
            ],
        ),
        case(
            v,
            "max_keepalive",
            "allow_anonymous true\nmax_keepalive 30\n",
            vec![
                Send("a", connect(v, "a").keep_alive(20).bytes()),
                Send("b", connect(v, "b").keep_alive(60).bytes()),
                Send("c", connect(v, "c").keep_alive(0).bytes()),
            ],
        ),
        case(
            v,
            "max_connections",
            "allow_anonymous true\nmax_connections 1\n",
            vec![Send("a", plain(v, "a")), Close("b", plain(v, "b"))],
        ),
        case(
            v,
            "a CONNECT over 64 KiB",
            ANONYMOUS,
            vec![Send(
                "c",
                connect(v, &"c".repeat(200))
                    .will("w", &[b'w'; 65_535], 0, false, Vec::new())
                    .bytes(),
            )],
        ),
    ]
}

/// 5.0 only: the broker's limits as a 5.0 client is told them.
pub fn v5_limit_cases() -> Vec<Case> {
    let v = V::V5;
    vec![
        case(
            v,
            "the Receive Maximum exceeded",
            "allow_anonymous true\nmax_inflight_messages 2\n",
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "rm", b"1", 2, false, 3)),
                Send("p", publish(v, "rm", b"2", 2, false, 4)),
                Send("p", publish(v, "rm", b"3", 2, false, 5)),
            ],
        ),
        case(
            v,
            "Request Problem Information 0",
            "allow_anonymous true\nmessage_size_limit 5\n",
            vec![
                Send(
                    "p",
                    connect(v, "p")
                        .prop(prop::byte(prop::REQUEST_PROBLEM_INFORMATION, 0))
                        .bytes(),
                ),
                Send("p", publish(v, "z", b"0123456", 1, false, 3)),
            ],
        ),
    ]
}

/// The directives that limit what a listener's clients may do or be called.
pub fn listener_directive_cases(v: V) -> Vec<Case> {
    vec![
        case(
            v,
            "max_qos 1",
            "allow_anonymous true\nmax_qos 1\n",
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("m", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "m", b"1", 1, false, 3)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
                Close("p", publish(v, "m", b"2", 2, false, 4)),
            ],
        ),
        case(
            v,
            "max_qos 1 and a will of QoS 2",
            "allow_anonymous true\nmax_qos 1\n",
            vec![Close(
                "w",
                connect(v, "w").will("w", b"x", 2, false, Vec::new()).bytes(),
            )],
        ),
        case(
            v,
            "retain_available false",
            "allow_anonymous true\nretain_available false\n",
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "r", b"1", 0, false, 0)),
                Close("p", publish(v, "r", b"2", 0, true, 0)),
            ],
        ),
        case(
            v,
            "retain_available false and a retained will",
            "allow_anonymous true\nretain_available false\n",
            vec![Close("w", connect(v, "w").will("w", b"x", 0, true, Vec::new()).bytes())],
        ),
        case(
            v,
            "max_packet_size",
            "allow_anonymous true\nmax_packet_size 100\n",
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "m", &[b'x'; 50], 1, false, 3)),
                Close("p", publish(v, "m", &[b'x'; 200], 1, false, 4)),
            ],
        ),
        case(
            v,
            "allow_zero_length_clientid false",
            "allow_anonymous true\nallow_zero_length_clientid false\n",
            vec![Close("c", plain(v, ""))],
        ),
        case(
            v,
            "clientid_prefixes",
            "allow_anonymous true\nclientid_prefixes ok-\n",
            vec![Close("a", plain(v, "bad")), Send("b", plain(v, "ok-1"))],
        ),
    ]
}
