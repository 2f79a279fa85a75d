//! Device management shared on a cluster (`dm_share`): two nodes' states, each with its own
//! data directory, the cluster's mirror played by copying a file from one to the other.

use super::*;
use std::path::Path;

/// A node's state, shared with the cluster's merge.
fn node(dir: &Path) -> Dm {
    let dm = Dm::open(dir);
    dm.share(tern_cluster::platform::merge);
    dm
}

/// What the mirror does: `from`'s file of the organization written over `to`'s.
fn mirror(from: &Path, to: &Path) {
    let file = |dir: &Path| dir.join("platform/dm").join(format!("{ORG}.json"));
    std::fs::create_dir_all(to.join("platform/dm")).expect("dir");
    std::fs::copy(file(from), file(to)).expect("copy");
}

#[test]
fn a_reboot_made_on_one_node_is_completed_by_the_device_on_another() {
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let (a, b) = (node(&dir_a), node(&dir_b));
    // Managed on b: seen on a once b's file reaches it.
    manage(&b, T0, "d1");
    b.flush_due().expect("b writes");
    mirror(&dir_b, &dir_a);
    assert!(a.mgmt(ORG, "t", "d1").is_none());
    a.flush_due().expect("a reads");
    assert_eq!(a.mgmt(ORG, "t", "d1").expect("managed on a")["lifetime"], 3600);
    // A reboot made on a: b does not know the device's answer before a's file reaches it.
    let (id, out) = initiate(&a, T0 + 1, "device/reboot", vec![], &["d1"], false).expect("accepted");
    let answer_202 = json!({"rc": 202, "reqId": out[0].2["reqId"]}).to_string();
    let req_id = Dm::answer_req_id("response", answer_202.as_bytes()).expect("an answer");
    assert_eq!(Dm::answer_req_id("mgmt/manage", answer_202.as_bytes()), None);
    // The answer to an untracked message (a location pushed, a cancel) never waits.
    let untracked = json!({"rc": 204, "reqId": crate::dm_wire::untracked_uuid4()}).to_string();
    assert_eq!(Dm::answer_req_id("response", untracked.as_bytes()), None);
    assert!(!b.awaits(ORG, "t", "d1", &req_id));
    a.flush_due().expect("a writes");
    mirror(&dir_a, &dir_b);
    // Meanwhile b manages another device, not yet written: both changes are kept.
    manage(&b, T0 + 2, "d2");
    b.flush_due().expect("b merges");
    assert!(b.mgmt(ORG, "t", "d2").is_some());
    assert!(b.awaits(ORG, "t", "d1", &req_id));
    assert_eq!(status(&b, &id, "d1"), (1, false));
    // The device answers on b, reconnects there and manages: done, and seen on a.
    b.on_device(T0 + 3, ORG, "t", "d1", "response", answer_202.as_bytes());
    b.on_connected(ORG, "t", "d1");
    manage(&b, T0 + 4, "d1");
    assert_eq!(status(&b, &id, "d1"), (0, true));
    b.flush_due().expect("b writes");
    mirror(&dir_b, &dir_a);
    a.flush_due().expect("a reads");
    assert_eq!(status(&a, &id, "d1"), (0, true));
    assert!(a.mgmt(ORG, "t", "d2").is_some());
    // Format 2: every record keyed, so the merge works record by record.
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir_a.join("platform/dm/acme.json")).expect("file")).expect("JSON");
    assert_eq!(doc["version"], 2);
    assert!(doc["devices"]["t/d2"].is_object(), "{doc}");
    assert_eq!(doc["requests"][id.as_str()]["runs"]["t/d1"]["status"], 0, "{doc}");
    assert!(
        crate::dm_share::check_file(ORG, &std::fs::read(dir_a.join("platform/dm/acme.json")).expect("file")).is_ok()
    );
    assert!(crate::dm_share::check_file(ORG, b"{\"version\": 9}").is_err());
}

#[test]
fn changes_made_on_two_nodes_at_once_are_merged() {
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let (a, b) = (node(&dir_a), node(&dir_b));
    manage(&a, T0, "d1");
    a.flush_due().expect("a writes");
    mirror(&dir_a, &dir_b);
    b.flush_due().expect("b reads");
    // Both change the organization from the same version: a device's location on a, a
    // new device and an error code of the first on b.
    send(
        &a,
        T0 + 1,
        "d1",
        "device/update/location",
        json!({"d":{"longitude":1,"latitude":2},"reqId":"l"}),
    );
    a.flush_due().expect("a writes");
    manage(&b, T0 + 1, "d3");
    b.add_error_code(T0 + 1, ORG, "t", "d1", &json!({"errorCode": 7}))
        .expect("code");
    // a's version reaches b before b wrote: merged there, then the merge reaches a.
    mirror(&dir_a, &dir_b);
    b.flush_due().expect("b merges");
    mirror(&dir_b, &dir_a);
    a.flush_due().expect("a reads");
    for (name, dm) in [("a", &a), ("b", &b)] {
        assert!(dm.location(ORG, "t", "d1").is_some(), "{name}: location lost");
        assert_eq!(dm.error_codes(ORG, "t", "d1").len(), 1, "{name}: error code lost");
        assert!(dm.mgmt(ORG, "t", "d3").is_some(), "{name}: d3 lost");
    }
}

#[test]
fn a_file_of_format_1_is_still_read() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("platform/dm")).expect("dir");
    let v1 = json!({"version": 1, "devices": [{"typeId": "t", "deviceId": "d1", "managed": true, "lifetime": 0}],
                    "requests": [], "bundles": []});
    std::fs::write(dir.join("platform/dm/acme.json"), v1.to_string()).expect("write");
    let dm = Dm::open(&dir);
    assert!(dm.mgmt(ORG, "t", "d1").is_some());
}

#[test]
fn an_answer_to_a_request_not_arrived_yet_is_held_with_the_devices_later_messages() {
    use crate::dm_task::{Held, Inbound};
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let (a, b) = (node(&dir_a), node(&dir_b));
    manage(&b, T0, "d1");
    b.flush_due().expect("b writes");
    mirror(&dir_b, &dir_a);
    a.flush_due().expect("a reads");
    let (_, out) = initiate(&a, T0 + 1, "device/reboot", vec![], &["d1"], false).expect("accepted");
    let message = |d: &str, tail: &str, payload: Value| Inbound::Message {
        org: ORG.into(),
        type_id: "t".into(),
        device_id: d.into(),
        via_gateway: false,
        tail: tail.into(),
        payload: payload.to_string().into(),
    };
    let tail_of = |m: &Inbound| match m {
        Inbound::Message { tail, .. } => tail.clone(),
        Inbound::Connected { .. } => "connected".into(),
    };
    let mut held = Held::default();
    // On b: the answer, the reconnection and the manage after it wait; another device's
    // message does not, nor does a manage on a node that is not shared.
    let answer = message("d1", "response", json!({"rc": 202, "reqId": out[0].2["reqId"]}));
    assert!(held.keep(&b, answer).is_none());
    let connected = Inbound::Connected {
        org: ORG.into(),
        type_id: "t".into(),
        device_id: "d1".into(),
    };
    assert!(held.keep(&b, connected).is_none());
    assert!(held
        .keep(&b, message("d1", "mgmt/manage", manage_payload("m2")))
        .is_none());
    assert!(held
        .keep(&b, message("d2", "mgmt/manage", manage_payload("m3")))
        .is_some());
    let alone = Dm::open(&temp_dir());
    assert!(held
        .keep(&alone, message("d1", "response", json!({"rc": 202, "reqId": "x"})))
        .is_some());
    assert!(held.release(&b).is_empty(), "released before the request arrived");
    // The request arrives on b: all three come out, in order.
    a.flush_due().expect("a writes");
    mirror(&dir_a, &dir_b);
    b.flush_due().expect("b reads");
    let out: Vec<String> = held.release(&b).iter().map(|(_, m)| tail_of(m)).collect();
    assert_eq!(out, ["response", "connected", "mgmt/manage"]);
    assert!(held.release(&b).is_empty());
}

#[test]
fn a_change_made_before_the_first_sync_is_a_change_from_the_files_read_at_start() {
    let dir = temp_dir();
    let first = Dm::open(&dir);
    manage(&first, T0, "d1");
    first.flush().expect("written");
    // Started again, shared: a location comes before the first sync; it is written, not
    // taken for a conflict with the file the node read at start.
    let again = node(&dir);
    send(
        &again,
        T0 + 1,
        "d1",
        "device/update/location",
        json!({"d":{"longitude":1,"latitude":2},"reqId":"l"}),
    );
    again.flush_due().expect("synced");
    assert!(again.location(ORG, "t", "d1").is_some(), "the location was lost");
    assert!(
        Dm::open(&dir).location(ORG, "t", "d1").is_some(),
        "the location was not written"
    );
}

#[test]
fn a_reboot_completes_when_the_device_comes_back_on_another_node() {
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let (a, b) = (node(&dir_a), node(&dir_b));
    b.on_connected_at(T0, ORG, "t", "d1");
    manage(&b, T0, "d1");
    b.flush_due().expect("b writes");
    mirror(&dir_b, &dir_a);
    a.flush_due().expect("a reads");
    let (id, out) = initiate(&a, T0 + 1, "device/reboot", vec![], &["d1"], false).expect("accepted");
    a.flush_due().expect("a writes");
    // The device answers 202 on b...
    mirror(&dir_a, &dir_b);
    b.flush_due().expect("b reads");
    let answer = json!({"rc": 202, "reqId": out[0].2["reqId"]}).to_string();
    b.on_device(T0 + 2, ORG, "t", "d1", "response", answer.as_bytes());
    // ...and comes back on a, which manages it before b's 202 reaches it: not complete.
    a.on_connected_at(T0 + 3, ORG, "t", "d1");
    manage(&a, T0 + 4, "d1");
    a.complete_moved_restarts(T0 + 4);
    assert_eq!(status(&a, &id, "d1"), (1, false));
    // Once both versions are merged (b's 202 not written yet when a's version comes),
    // either node completes it.
    a.flush_due().expect("a writes");
    mirror(&dir_a, &dir_b);
    b.flush_due().expect("b merges");
    mirror(&dir_b, &dir_a);
    a.flush_due().expect("a reads");
    a.complete_moved_restarts(T0 + 5);
    assert_eq!(status(&a, &id, "d1"), (0, true));
    // A manage from the connection that answered 202 does not complete it.
    let (id, out) = initiate(&a, T0 + 6, "device/reboot", vec![], &["d1"], false).expect("accepted");
    let answer = json!({"rc": 202, "reqId": out[0].2["reqId"]}).to_string();
    a.on_device(T0 + 7, ORG, "t", "d1", "response", answer.as_bytes());
    manage(&a, T0 + 8, "d1");
    a.complete_moved_restarts(T0 + 8);
    assert_eq!(status(&a, &id, "d1"), (1, false));
}
