//! mount_point cases: every client of the case is a client of the mounted listener, so
//! what both brokers answer can be compared. mosquitto 2.0.11 (Debian 12) does not take
//! the mount point off the topics it delivers (fixed in 2.0.12), and no mosquitto 2.0
//! puts it in front of UNSUBSCRIBE's filters or inside a shared subscription; those are
//! the named differences.

use crate::cases::{case, plain};
use crate::wire::{ack, connect, publish, subscribe, unsubscribe, V};
use crate::wire::{PUBACK, PUBREL};
use crate::{Case, Divergence, Step::*};

pub const MOUNTED: &str = "allow_anonymous true\nmount_point site/\n";

pub fn mount_cases(v: V) -> Vec<Case> {
    vec![
        case(
            v,
            "mount_point: a message between two mounted clients",
            MOUNTED,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("a/#", 1)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "a/b", b"1", 1, false, 3)),
                Recv("s", 1),
                Send("s", ack(PUBACK, 1)),
                Send("p", publish(v, "a/c", b"2", 2, false, 4)),
                Send("p", ack(PUBREL, 4)),
                // Granted QoS 1: delivered at QoS 1.
                Recv("s", 1),
                Send("s", ack(PUBACK, 2)),
            ],
        ),
        case(
            v,
            "mount_point: a retained message",
            MOUNTED,
            vec![
                Send("p", plain(v, "p")),
                Send("p", publish(v, "r/1", b"kept", 1, true, 1)),
                Send("s", plain(v, "s")),
                Expect("s", subscribe(v, 1, &[("r/+", 0)]), 2),
                // Cleared again, as both brokers' clients saw it.
                Send("p", publish(v, "r/1", b"", 1, true, 2)),
            ],
        ),
        case(
            v,
            "mount_point: a will",
            MOUNTED,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("status/#", 0)])),
                Send(
                    "w",
                    connect(v, "w").will("status/w", b"gone", 0, false, Vec::new()).bytes(),
                ),
                Drop("w"),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "mount_point: $SYS is not under the mount point",
            MOUNTED,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("$SYS/#", 0)])),
                Send("p", plain(v, "p")),
                // The broker's own $SYS topics never reach it; a mounted client's "$SYS/x"
                // is an ordinary topic under the mount point.
                Send("p", publish(v, "$SYS/x", b"1", 1, false, 1)),
                Recv("s", 1),
            ],
        ),
        case(
            v,
            "mount_point: unsubscribe",
            MOUNTED,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("u", 0)])),
                Send("s", unsubscribe(v, 2, &["u"])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "u", b"1", 0, false, 0)),
            ],
        ),
        case(
            v,
            "mount_point: a shared subscription",
            MOUNTED,
            vec![
                Send("s", plain(v, "s")),
                Send("s", subscribe(v, 1, &[("$share/g/j", 0)])),
                Send("p", plain(v, "p")),
                Send("p", publish(v, "j", b"1", 0, false, 0)),
            ],
        ),
    ]
}

const fn d(case: &'static str, exception: &'static str, mosquitto: &'static str, tern: &'static str) -> Divergence {
    Divergence {
        case,
        exception,
        mosquitto,
        tern,
    }
}

const MOUNT_OUTGOING: &str = "mount-point-outgoing";
const MOUNT_UNSUBSCRIBE: &str = "mount-point-unsubscribe";
const MOUNT_SHARED: &str = "mount-point-shared";

/// mount_point (`cases_mount.rs`): mosquitto 2.0.11 delivers topics with the mount point,
/// does not mount UNSUBSCRIBE's filters, and makes `$share/...` an ordinary filter.
pub const MOUNT_DIVERGENCES: &[Divergence] = &[
    d(
        "3.1.1 mount_point: a will",
        MOUNT_OUTGOING,
        "3013000d736974652f7374617475732f77676f6e65",
        "300e00087374617475732f77676f6e65",
    ),
    d(
        "3.1.1 mount_point: a retained message",
        MOUNT_OUTGOING,
        "9003000100 310e0008736974652f722f316b657074",
        "9003000100 31090003722f316b657074",
    ),
    d(
        "3.1.1 mount_point: a retained message",
        MOUNT_OUTGOING,
        "300a0008736974652f722f31",
        "30050003722f31",
    ),
    d(
        "3.1.1 mount_point: $SYS is not under the mount point",
        MOUNT_OUTGOING,
        "300e000b736974652f245359532f7831",
        "30090006245359532f7831",
    ),
    d(
        "3.1.1 mount_point: a shared subscription",
        MOUNT_SHARED,
        "",
        "300400016a31",
    ),
    d(
        "3.1.1 mount_point: a message between two mounted clients",
        MOUNT_OUTGOING,
        "320d0008736974652f612f62000131",
        "32080003612f62000131",
    ),
    d(
        "3.1.1 mount_point: a message between two mounted clients",
        MOUNT_OUTGOING,
        "320d0008736974652f612f63000232",
        "32080003612f63000232",
    ),
    d(
        "3.1.1 mount_point: unsubscribe",
        MOUNT_UNSUBSCRIBE,
        "30090006736974652f7531",
        "",
    ),
    d(
        "5.0 mount_point: a will",
        MOUNT_OUTGOING,
        "3014000d736974652f7374617475732f7700676f6e65",
        "300f00087374617475732f7700676f6e65",
    ),
    d(
        "5.0 mount_point: a retained message",
        MOUNT_OUTGOING,
        "900400010000 310f0008736974652f722f31006b657074",
        "900400010000 310a0003722f31006b657074",
    ),
    d(
        "5.0 mount_point: a retained message",
        MOUNT_OUTGOING,
        "300b0008736974652f722f3100",
        "30060003722f3100",
    ),
    d(
        "5.0 mount_point: $SYS is not under the mount point",
        MOUNT_OUTGOING,
        "300f000b736974652f245359532f780031",
        "300a0006245359532f780031",
    ),
    d(
        "5.0 mount_point: a shared subscription",
        MOUNT_SHARED,
        "",
        "300500016a0031",
    ),
    d(
        "5.0 mount_point: unsubscribe",
        MOUNT_UNSUBSCRIBE,
        "b00400020011",
        "b00400020000",
    ),
    d(
        "5.0 mount_point: unsubscribe",
        MOUNT_UNSUBSCRIBE,
        "300a0006736974652f750031",
        "",
    ),
    d(
        "5.0 mount_point: a message between two mounted clients",
        MOUNT_OUTGOING,
        "320e0008736974652f612f6200010031",
        "32090003612f6200010031",
    ),
    d(
        "5.0 mount_point: a message between two mounted clients",
        MOUNT_OUTGOING,
        "320e0008736974652f612f6300020032",
        "32090003612f6300020032",
    ),
];
