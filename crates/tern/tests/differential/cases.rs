//! The corpus: every packet type under 3.1.1 and 5.0, the error paths (credentials,
//! client ids, sizes, protocol violations) and the mosquitto.conf directives both brokers
//! read, each as a script of client steps. And [`DIVERGENCES`], the exact bytes of the
//! named differences, case by case.

use crate::wire::{ack, connect, prop, publish, publish_with, subscribe, unsubscribe, V};
use crate::wire::{DISCONNECT, PINGREQ, PUBACK, PUBCOMP, PUBREC, PUBREL};
use crate::{Case, Step, Step::*};

pub const ANONYMOUS: &str = "allow_anonymous true\n";
pub const PASSWORDS: &str = "allow_anonymous false\npassword_file {dir}/passwd\n";
pub const ACL: &str = "allow_anonymous true\npassword_file {dir}/passwd\nacl_file {dir}/acl\n";

pub fn case(v: V, name: &str, config: &str, steps: Vec<Step>) -> Case {
    Case {
        name: format!("{} {name}", v.label()),
        config: config.into(),
        steps,
    }
}

/// CONNECT with a clean start, or (5.0) with a session that outlives the connection.
pub fn persistent(v: V, client_id: &str) -> Vec<u8> {
    let c = connect(v, client_id).persistent();
    if v.is_v5() {
        c.prop(prop::four(prop::SESSION_EXPIRY, 300))
    } else {
        c
    }
    .bytes()
}

pub fn plain(v: V, client_id: &str) -> Vec<u8> {
    connect(v, client_id).bytes()
}

/// Every case.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for v in [V::V4, V::V5] {
        cases.extend(connect_cases(v));
        cases.extend(session_cases(v));
        cases.extend(credential_cases(v));
        cases.extend(subscribe_cases(v));
        cases.extend(publish_cases(v));
        cases.extend(crate::cases_errors::violation_cases(v));
        cases.extend(crate::cases_errors::directive_cases(v));
        cases.extend(crate::cases_errors::listener_directive_cases(v));
        cases.extend(crate::cases_mount::mount_cases(v));
    }
    cases.extend(crate::cases_v5::v5_cases());
    cases.extend(crate::cases_errors::v5_limit_cases());
    cases
}

/// CONNECT and CONNACK: client ids, protocol levels and flags, keepalive.
fn connect_cases(v: V) -> Vec<Case> {
    vec![
        case(
            v,
            "CONNECT and DISCONNECT",
            ANONYMOUS,
            vec![Send("c", plain(v, "c")), Close("c", DISCONNECT.into())],
        ),
        case(
            v,
            "an empty client id with clean start",
            ANONYMOUS,
            vec![Send("c", plain(v, ""))],
        ),
        case(
            v,
            "an empty client id without clean start",
            ANONYMOUS,
            vec![if v.is_v5() {
                Send("c", connect(v, "").persistent().bytes())
            } else {
                Close("c", connect(v, "").persistent().bytes())
            }],
        ),
        case(
            v,
            "an unsupported protocol level",
            ANONYMOUS,
            vec![Close("c", connect(v, "c").level(6).bytes())],
        ),
        case(
            v,
            "a protocol name other than MQTT",
            ANONYMOUS,
            vec![Close("c", {
                let mut bytes = plain(v, "c");
                bytes[7] = b'X';
                bytes
            })],
        ),
        case(
            v,
            "the reserved CONNECT flag",
            ANONYMOUS,
            vec![Close("c", connect(v, "c").flags(0x01).bytes())],
        ),
        case(
            v,
            "a will with QoS 3",
            ANONYMOUS,
            vec![Close(
                "c",
                connect(v, "c").will("w", b"x", 3, false, Vec::new()).bytes(),
            )],
        ),
        case(
            v,
            "keepalive 0",
            ANONYMOUS,
            vec![Send("c", connect(v, "c").keep_alive(0).bytes())],
        ),
    ]
}

/// Sessions that outlive or replace a connection, and wills.
fn session_cases(v: V) -> Vec<Case> {
    let will_props = if v.is_v5() {
        [prop::string(prop::CONTENT_TYPE, "text/plain"), prop::user("k", "v")].concat()
    } else {
        Vec::new()
    };
    vec![
        case(
            v,
            "a session resumes with its queued messages",
            ANONYMOUS,
            vec![
                Send("a", persistent(v, "a")),
                Send("a", subscribe(v, 1, &[("q", 1)])),
                Close("a", DISCONNECT.into()),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "q", b"kept", 1, false, 7)),
                Expect("b", persistent(v, "a"), 2),
                Send("b", ack(PUBACK, 1)),
            ],
        ),
        case(
            v,
            "a clean start discards the session",
            ANONYMOUS,
            vec![
                Send("a", persistent(v, "a")),
                Send("a", subscribe(v, 1, &[("q", 1)])),
                Close("a", DISCONNECT.into()),
                Send("b", plain(v, "a")),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "q", b"lost", 1, false, 7)),
            ],
        ),
        case(
            v,
            "the will of a connection that breaks",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("w/#", 2)])),
                Send(
                    "w",
                    connect(v, "w")
                        .will("w/t", b"gone", 1, false, will_props.clone())
                        .bytes(),
                ),
                Drop("w"),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
            ],
        ),
        case(
            v,
            "no will after DISCONNECT",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("w/#", 2)])),
                Send(
                    "w",
                    connect(v, "w")
                        .will("w/t", b"gone", 1, false, will_props.clone())
                        .bytes(),
                ),
                Close("w", DISCONNECT.into()),
            ],
        ),
        case(
            v,
            "a retained will",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("w/#", 0)])),
                Send("w", connect(v, "w").will("w/t", b"gone", 0, true, will_props).bytes()),
                Drop("w"),
                Recv("s", 1),
                Send("t", plain(v, "t")),
                Expect("t", subscribe(v, 1, &[("w/#", 1)]), 2),
            ],
        ),
        case(
            v,
            "a session taken over",
            ANONYMOUS,
            vec![
                Send("a", plain(v, "same")),
                Send("b", plain(v, "same")),
                Close("a", Vec::new()),
            ],
        ),
    ]
}

fn credential_cases(v: V) -> Vec<Case> {
    let alice = |id: &str| connect(v, id).user("alice");
    vec![
        case(
            v,
            "a good password",
            PASSWORDS,
            vec![Send("c", alice("c").password("secret").bytes())],
        ),
        case(
            v,
            "a wrong password",
            PASSWORDS,
            vec![Close("c", alice("c").password("wrong").bytes())],
        ),
        case(
            v,
            "a user name without password",
            PASSWORDS,
            vec![Close("c", alice("c").bytes())],
        ),
        case(
            v,
            "an unknown user",
            PASSWORDS,
            vec![Close("c", connect(v, "c").user("bob").password("x").bytes())],
        ),
        case(
            v,
            "anonymous access refused",
            PASSWORDS,
            vec![Close("c", plain(v, "c"))],
        ),
        case(
            v,
            "a password without user name",
            PASSWORDS,
            vec![Close("c", connect(v, "c").password("secret").bytes())],
        ),
        case(
            v,
            "ACL: subscribe and publish",
            ACL,
            vec![
                Send("al", alice("al").password("secret").bytes()),
                Send("al", subscribe(v, 1, &[("alice/#", 1), ("news/#", 1), ("secret/#", 1)])),
                Send("al", publish(v, "news/x", b"n", 1, false, 2)),
                Send("a2", alice("a2").password("secret").bytes()),
                Send("a2", publish(v, "alice/x", b"m", 1, false, 3)),
                Recv("al", 1),
                Send("al", ack(PUBACK, 1)),
                Send("an", plain(v, "an")),
                Send("an", subscribe(v, 1, &[("open/r/#", 0), ("alice/#", 0)])),
                Send("an", publish(v, "open/x", b"o", 1, false, 4)),
                Send("an", publish(v, "alice/y", b"o", 1, false, 5)),
            ],
        ),
    ]
}

fn subscribe_cases(v: V) -> Vec<Case> {
    vec![
        case(
            v,
            "SUBSCRIBE and UNSUBSCRIBE",
            ANONYMOUS,
            vec![
                Send("c", plain(v, "c")),
                Send("c", subscribe(v, 1, &[("a/#", 0), ("b/+", 1), ("c", 2)])),
                Send("c", unsubscribe(v, 2, &["a/#", "none"])),
                Send("c", unsubscribe(v, 3, &["b/+", "c"])),
            ],
        ),
        case(
            v,
            "wildcard filters",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("sport/+/score", 1), ("x/#", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "sport/a/score", b"1", 1, false, 2)),
                Send("p", publish(v, "x", b"2", 0, false, 0)),
                Send("p", publish(v, "sport/a/b/score", b"3", 0, false, 0)),
                Send("p", publish(v, "x/y/z", b"4", 0, false, 0)),
                Recv("s", 3),
                Send("s", ack(PUBACK, 1)),
            ],
        ),
        case(
            v,
            "$ topics and wildcards",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("#", 0), ("+/x", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "$foo/x", b"1", 0, false, 0)),
                Send("p", publish(v, "bar", b"2", 0, false, 0)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "a shared subscription",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("$share/g/sh/+", 1)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "sh/1", b"1", 1, false, 2)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
                Send("s", unsubscribe(v, 2, &["$share/g/sh/+"])),
                Send("p", publish(v, "sh/1", b"2", 1, false, 3)),
            ],
        ),
        case(
            v,
            "a repeated SUBSCRIBE replaces the QoS",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("r", 0)])),
                Send("s", subscribe(v, 2, &[("r", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "r", b"2", 2, false, 9)),
                Send("p", ack(PUBREL, 9)),
                Recv("s", 1),
                Send("s", ack(PUBREC, 1)),
                Send("s", ack(PUBCOMP, 1)),
            ],
        ),
    ]
}

fn publish_cases(v: V) -> Vec<Case> {
    let mut cases = vec![
        case(
            v,
            "QoS 0, 1 and 2",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("q/0", 0), ("q/1", 1), ("q/2", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "q/0", b"zero", 0, false, 0)),
                Send("p", publish(v, "q/1", b"one", 1, false, 10)),
                Send("p", publish(v, "q/2", b"two", 2, false, 11)),
                Send("p", ack(PUBREL, 11)),
                Recv("s", 3),
                Send("s", ack(PUBACK, 1)),
                Send("s", ack(PUBREC, 2)),
                Send("s", ack(PUBCOMP, 2)),
            ],
        ),
        case(
            v,
            "QoS is capped by the subscription",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("d", 0), ("u", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "d", b"down", 1, false, 3)),
                Send("p", publish(v, "u", b"up", 0, false, 0)),
                Recv("s", 2),
            ],
        ),
        case(
            v,
            "a QoS 2 PUBLISH sent again before PUBREL",
            ANONYMOUS,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("d", 2)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "d", b"once", 2, false, 5)),
                Send("p", publish_with(v, ("d", b"once"), (2, false, true), 5, &[])),
                Send("p", ack(PUBREL, 5)),
                Recv("s", 1),
                Send("s", ack(PUBREC, 1)),
                Send("s", ack(PUBCOMP, 1)),
            ],
        ),
        case(
            v,
            "acknowledgements of unknown packet ids",
            ANONYMOUS,
            vec![
                Send("c", plain(v, "c")),
                Send("c", ack(PUBACK, 9)),
                Send("c", ack(PUBREC, 9)),
                Send("c", ack(PUBREL, 9)),
                Send("c", ack(PUBCOMP, 9)),
            ],
        ),
        case(
            v,
            "a PUBLISH to $SYS",
            ANONYMOUS,
            vec![
                Send("c", plain(v, "c")),
                Send("c", publish(v, "$SYS/x", b"1", 1, false, 4)),
            ],
        ),
        case(
            v,
            "PINGREQ",
            ANONYMOUS,
            vec![Send("c", plain(v, "c")), Expect("c", PINGREQ.into(), 1)],
        ),
        case(
            v,
            "a message to the publisher's own subscription",
            ANONYMOUS,
            vec![
                Send("c", plain(v, "c")),
                Send("c", subscribe(v, 1, &[("own", 1)])),
                Expect("c", publish(v, "own", b"echo", 1, false, 2), 2),
                Send("c", ack(PUBACK, 1)),
            ],
        ),
    ];
    cases.extend(retained_cases(v));
    cases
}

/// Retained messages: stored, sent on SUBSCRIBE, cleared.
fn retained_cases(v: V) -> Vec<Case> {
    vec![case(
        v,
        "retained messages",
        ANONYMOUS,
        vec![
            Send("p", plain(v, "p")),
            Send("p", publish(v, "r/a", b"ra", 1, true, 3)),
            Send("p", publish(v, "r/b", b"rb", 0, true, 0)),
            Send("s", plain(v, "s")),
            Expect("s", subscribe(v, 1, &[("r/#", 1)]), 3),
            Send("s", ack(PUBACK, 1)),
            Send("p", publish(v, "r/a", b"", 0, true, 0)),
            // The clearing message reaches the subscriber as a live one; read before the
            // next SUBSCRIBE, as nothing orders one client's reply against another's.
            Recv("s", 1),
            Expect("s", subscribe(v, 2, &[("r/#", 1)]), 2),
            Send("p", publish(v, "r/c", b"live", 1, true, 4)),
            Recv("s", 1),
        ],
    )]
}
