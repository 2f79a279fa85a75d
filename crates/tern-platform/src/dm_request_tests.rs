//! Unit tests of device management requests (`dm_requests.rs`), with the helpers of `dm_tests`.

use super::*;

#[test]
fn reboot_completes_only_on_a_manage_of_a_later_connection() {
    let dm = Dm::open(&temp_dir());
    dm.on_connected(ORG, "t", "d1");
    manage(&dm, T0, "d1");
    let (id, out) = initiate(
        &dm,
        T0,
        "device/reboot",
        vec![("action", json!("reboot"))],
        &["d1"],
        false,
    )
    .expect("accepted");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, "mgmt/initiate/device/reboot");
    assert_eq!(
        out[0].2.as_object().expect("object").len(),
        1,
        "only reqId: {}",
        out[0].2
    );
    assert_eq!(status(&dm, &id, "d1"), (1, false));
    assert!(
        answer(&dm, T0, "d1", &out[0].2, 202).is_empty(),
        "responses are never answered"
    );
    // The current connection's remaining manages do not count.
    manage(&dm, T0 + 1, "d1");
    assert_eq!(status(&dm, &id, "d1"), (1, false));
    dm.on_connected(ORG, "t", "d1");
    manage(&dm, T0 + 2, "d1");
    assert_eq!(status(&dm, &id, "d1"), (0, true));
    let r = dm.request(ORG, &id).expect("request");
    assert_eq!((r["status"].clone(), r["complete"].clone()), (json!(0), json!(true)));
    assert_eq!(r["devices"], json!([{"typeId":"t","deviceId":"d1"}]));
    assert_eq!(dm.requests(ORG)[0]["id"], json!(id));
    assert_eq!(
        dm.mgmt(ORG, "t", "d1").expect("managed")["requests"][0]["id"],
        json!(id)
    );
    // A 501 fails the device with that code.
    let (id2, out) = initiate(&dm, T0 + 3, "device/factoryReset", vec![], &["d1"], false).expect("accepted");
    assert_eq!(out[0].1, "mgmt/initiate/device/factory_reset");
    send(
        &dm,
        T0 + 4,
        "d1",
        "response",
        json!({"rc":501,"message":"no","reqId":out[0].2["reqId"]}),
    );
    assert_eq!(status(&dm, &id2, "d1"), (501, true));
    assert_eq!(
        dm.device_status(ORG, &id2, "t", "d1").expect("status")["message"],
        json!("no")
    );
}

#[test]
fn answers_from_other_devices_or_unknown_req_ids_are_ignored() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    manage(&dm, T0, "d2");
    let (id, out) = initiate(&dm, T0, "device/reboot", vec![], &["d1"], false).expect("accepted");
    assert!(answer(&dm, T0, "d2", &out[0].2, 500).is_empty());
    assert!(send(&dm, T0, "d1", "response", json!({"rc":500,"reqId":"nope"})).is_empty());
    assert!(send(&dm, T0, "d1", "response", json!({"rc":"x"})).is_empty());
    assert!(sent(&dm.on_device(T0, ORG, "t", "d1", "response", b"garbage")).is_empty());
    assert_eq!(status(&dm, &id, "d1"), (1, false));
}

/// Runs a firmware request to the initiate; returns the request id and the initiate message.
fn firmware_to_initiate(dm: &Dm, action: &str, params: Vec<(&str, Value)>) -> (String, Value) {
    let (id, out) = initiate(dm, T0, action, params, &["d1"], false).expect("accepted");
    assert_eq!(out[0].1, "device/update");
    let field = &out[0].2["d"]["fields"][0];
    assert_eq!(field["field"], json!("mgmt.firmware"));
    for k in [
        "version",
        "name",
        "uri",
        "verifier",
        "state",
        "updateStatus",
        "updatedDateTime",
    ] {
        assert!(field["value"].get(k).is_some(), "{k} missing: {field}");
    }
    let out = answer(dm, T0, "d1", &out[0].2, 204);
    assert_eq!(out[0].1, "observe");
    assert_eq!(out[0].2["d"], json!({"fields":[{"field":"mgmt.firmware"}]}));
    let out = answer(dm, T0, "d1", &out[0].2, 200);
    let tail = if action == "firmware/update" {
        "mgmt/initiate/firmware/update"
    } else {
        "mgmt/initiate/firmware/download"
    };
    assert_eq!(out[0].1, tail);
    (id, out[0].2.clone())
}

#[test]
fn firmware_download_with_notifies_before_the_202_and_out_of_order() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let params = vec![
        ("uri", json!("http://x/fw.bin")),
        ("version", json!("1.1")),
        ("name", json!("fw")),
    ];
    let (id, init) = firmware_to_initiate(&dm, "firmware/download", params);
    // state 2 then state 1, both before the 202; notifies without reqId get no answer.
    assert!(notify(&dm, T0, "d1", json!({"state":2})).is_empty());
    assert!(notify(&dm, T0, "d1", json!({"state":1})).is_empty());
    assert_eq!(status(&dm, &id, "d1"), (1, false));
    let out = answer(&dm, T0, "d1", &init, 202);
    assert_eq!(out[0].1, "cancel");
    assert_eq!(out[0].2["d"], json!({"fields":[{"field":"mgmt.firmware"}]}));
    assert_eq!(status(&dm, &id, "d1"), (1, false));
    assert!(answer(&dm, T0, "d1", &out[0].2, 200).is_empty());
    assert_eq!(status(&dm, &id, "d1"), (0, true));
    let fw = &dm.mgmt(ORG, "t", "d1").expect("managed")["firmware"];
    assert_eq!(
        (fw["state"].clone(), fw["uri"].clone(), fw["version"].clone()),
        (json!(2), json!("http://x/fw.bin"), json!("1.1"))
    );
    // A late in-progress value is ignored.
    notify(&dm, T0, "d1", json!({"state":1}));
    assert_eq!(dm.mgmt(ORG, "t", "d1").expect("managed")["firmware"]["state"], json!(2));
    // Then an update reusing the stored values, ending with fwVersion for the registry.
    let (id, init) = firmware_to_initiate(&dm, "firmware/update", vec![]);
    let out = answer(&dm, T0, "d1", &init, 202);
    assert!(out.is_empty());
    notify(&dm, T0, "d1", json!({"state":0,"updateStatus":1}));
    let fx = dm.on_device(
        T0,
        ORG,
        "t",
        "d1",
        "notify",
        json!({"d":{"fields":[{"field":"mgmt.firmware","value":{"state":0,"updateStatus":0}}]}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        fx.device_info,
        vec![(ORG.into(), "t".into(), "d1".into(), json!({"fwVersion":"1.1"}))]
    );
    let out = sent(&fx);
    assert_eq!(out[0].1, "cancel");
    answer(&dm, T0, "d1", &out[0].2, 200);
    assert_eq!(status(&dm, &id, "d1"), (0, true));
}

#[test]
fn firmware_update_failure_and_download_without_uri() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    assert_eq!(
        initiate(&dm, T0, "firmware/download", vec![], &["d1"], false)
            .expect_err("no uri")
            .status,
        400
    );
    let (id, init) = firmware_to_initiate(&dm, "firmware/update", vec![]);
    answer(&dm, T0, "d1", &init, 202);
    let out = notify(&dm, T0, "d1", json!({"state":0,"updateStatus":4}));
    assert_eq!(out[0].1, "cancel");
    let s = dm.device_status(ORG, &id, "t", "d1").expect("status");
    assert_eq!((s["status"].clone(), s["complete"].clone()), (json!(500), json!(true)));
    assert!(s["message"].as_str().expect("message").contains("verification failed"));
    // The device refusing the initiate (400) fails it with 400.
    let (id, init) = firmware_to_initiate(&dm, "firmware/update", vec![]);
    send(
        &dm,
        T0,
        "d1",
        "response",
        json!({"rc":400,"message":"Firmware is still not successfully downloaded.","reqId":init["reqId"]}),
    );
    assert_eq!(status(&dm, &id, "d1"), (400, true));
}

#[test]
fn a_request_not_answered_times_out_with_408_naming_the_step() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let (id, _) = initiate(&dm, T0, "device/reboot", vec![], &["d1"], false).expect("accepted");
    let _ = dm.tick(T0 + 59_999);
    assert_eq!(status(&dm, &id, "d1"), (1, false));
    let _ = dm.tick(T0 + 60_000);
    let s = dm.device_status(ORG, &id, "t", "d1").expect("status");
    assert_eq!((s["status"].clone(), s["complete"].clone()), (json!(408), json!(true)));
    let m = s["message"].as_str().expect("message");
    assert!(m.contains("within 60 s") && m.contains("reboot"), "{m}");
    assert_eq!(dm.request(ORG, &id).expect("request")["status"], json!(408));
    // The device is free again.
    initiate(&dm, T0 + 60_001, "device/reboot", vec![], &["d1"], false).expect("accepted");
}

#[test]
fn override_ends_the_old_request_with_409() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let (old, _) = firmware_to_initiate(&dm, "firmware/download", vec![("uri", json!("u"))]);
    let refused = initiate(&dm, T0, "device/reboot", vec![], &["d1"], false).expect_err("busy");
    assert_eq!(refused.status, 409);
    let (new, out) = initiate(&dm, T0, "device/reboot", vec![], &["d1"], true).expect("override");
    assert_eq!(out[0].1, "cancel", "the observation is cancelled first");
    assert_eq!(out[1].1, "mgmt/initiate/device/reboot");
    let s = dm.device_status(ORG, &old, "t", "d1").expect("status");
    assert_eq!(s["status"], json!(409));
    assert_eq!(s["message"], json!(format!("overridden by {new}")));
    // Cancel: 409 "cancelled".
    let (body, _) = dm.cancel(T0, ORG, &new).expect("cancel");
    assert_eq!(
        (body["status"].clone(), body["complete"].clone()),
        (json!(409), json!(true))
    );
    assert!(dm.delete(T0, ORG, &new).is_ok());
    assert!(dm.request(ORG, &new).is_none());
    assert_eq!(dm.delete(T0, ORG, &new).expect_err("gone").status, 404);
}

#[test]
fn refused_devices_get_403_and_all_refused_refuses_the_request() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let refused = initiate(&dm, T0, "device/reboot", vec![], &["d2"], false).expect_err("unmanaged");
    assert_eq!(refused.status, 403);
    assert!(dm.requests(ORG).is_empty());
    let (id, out) = initiate(&dm, T0, "device/reboot", vec![], &["d1", "d2", "d1"], false).expect("one accepted");
    assert_eq!(out.len(), 1);
    assert_eq!(status(&dm, &id, "d2"), (403, true));
    assert_eq!(dm.device_statuses(ORG, &id).expect("statuses").len(), 2);
    let unregistered = dm.initiate(
        T0,
        |_, d| d != "d9",
        ORG,
        Initiate {
            action: "device/reboot".into(),
            parameters: vec![],
            devices: vec![("t".into(), "d9".into())],
            timeout_secs: 5,
            override_: false,
        },
    );
    assert_eq!(unregistered.expect_err("unregistered").status, 400);
    assert_eq!(
        initiate(&dm, T0, "device/explode", vec![], &["d1"], false)
            .expect_err("unknown")
            .status,
        400
    );
    let many: Vec<String> = (0..=MAX_REQUEST_DEVICES).map(|i| format!("x{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        initiate(&dm, T0, "device/reboot", vec![], &many, false)
            .expect_err("too many")
            .status,
        400
    );
}

#[test]
fn custom_actions_need_the_bundle_in_supports_and_required_parameters() {
    let dm = Dm::open(&temp_dir());
    let bundle = json!({"bundleId":"example-dme","displayName":{"en_US":"x"},"version":"1.0",
        "actions":{"installPlugin":{"parameters":[{"name":"pluginURI","required":true}]}}});
    dm.add_bundle(ORG, &bundle).expect("bundle");
    assert_eq!(dm.add_bundle(ORG, &bundle).expect_err("twice").status, 409);
    manage(&dm, T0, "d1");
    let refused = initiate(
        &dm,
        T0,
        "example-dme/installPlugin",
        vec![("pluginURI", json!("u"))],
        &["d1"],
        false,
    );
    assert_eq!(refused.expect_err("unsupported").status, 403);
    let m = json!({"d":{"supports":{"deviceActions":true,"example-dme":true}},"reqId":"m"});
    assert_eq!(send(&dm, T0, "d1", "mgmt/manage", m)[0].2["rc"], json!(200));
    let missing = initiate(&dm, T0, "example-dme/installPlugin", vec![], &["d1"], false);
    assert_eq!(missing.expect_err("required").status, 400);
    let (id, out) = initiate(
        &dm,
        T0,
        "example-dme/installPlugin",
        vec![("pluginURI", json!("u"))],
        &["d1"],
        false,
    )
    .expect("ok");
    assert_eq!(out[0].1, "mgmt/custom/example-dme/installPlugin");
    assert_eq!(out[0].2["d"], json!({"fields":[{"field":"pluginURI","value":"u"}]}));
    answer(&dm, T0, "d1", &out[0].2, 200);
    assert_eq!(status(&dm, &id, "d1"), (0, true));
    assert!(dm.delete_bundle(ORG, "example-dme"));
}

#[test]
fn an_undelivered_request_is_sent_again_after_the_next_manage() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let (id, fx) = dm
        .initiate(
            T0,
            |_, _| true,
            ORG,
            Initiate {
                action: "device/reboot".into(),
                parameters: vec![],
                devices: vec![("t".into(), "d1".into())],
                timeout_secs: 600,
                override_: false,
            },
        )
        .expect("accepted");
    let o = &fx.outgoing[0];
    dm.undelivered(&o.org, &o.type_id, &o.device_id, &o.tail);
    dm.on_connected(ORG, "t", "d1");
    let out = manage(&dm, T0 + 5, "d1");
    assert_eq!(out.len(), 2, "the answer, then the request again");
    assert_eq!(out[1].1, "mgmt/initiate/device/reboot");
    assert_eq!(
        out[1].2["reqId"],
        json!(String::from_utf8_lossy(&fx.outgoing[0].payload).split('"').nth(3))
    );
    // Delivered this time: later manages send nothing more.
    assert_eq!(manage(&dm, T0 + 6, "d1").len(), 1);
    answer(&dm, T0 + 7, "d1", &out[1].2, 202);
    dm.on_connected(ORG, "t", "d1");
    manage(&dm, T0 + 8, "d1");
    assert_eq!(status(&dm, &id, "d1"), (0, true));
}

#[test]
fn reboots_behind_a_gateway_or_after_lost_events_complete_on_any_later_manage() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    manage(&dm, T0, "d2");
    let (id, out) = initiate(&dm, T0, "device/reboot", vec![], &["d1", "d2"], false).expect("accepted");
    for (d, _, msg) in &out {
        answer(&dm, T0, d, msg, 202);
    }
    // d1 sits behind a gateway: its manage, relayed, completes it.
    let relayed = manage_payload("g").to_string();
    let fx = dm.on_device_from(T0 + 1, ORG, "t", "d1", true, "mgmt/manage", relayed.as_bytes());
    assert_eq!(sent(&fx)[0].2["rc"], json!(200));
    assert_eq!(status(&dm, &id, "d1"), (0, true));
    // d2: the caller lost events, so its connection may have gone unseen.
    manage(&dm, T0 + 1, "d2");
    assert_eq!(status(&dm, &id, "d2"), (1, false));
    dm.lost_events();
    manage(&dm, T0 + 2, "d2");
    assert_eq!(status(&dm, &id, "d2"), (0, true));
}

#[test]
fn cancel_and_timeout_stop_a_firmware_observation() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let (id, _) = firmware_to_initiate(&dm, "firmware/download", vec![("uri", json!("u"))]);
    let (body, fx) = dm.cancel(T0, ORG, &id).expect("cancel");
    assert_eq!(sent(&fx)[0].1, "cancel");
    assert_eq!(body["status"], json!(409));
    assert_eq!(
        dm.device_status(ORG, &id, "t", "d1").expect("status")["message"],
        json!("cancelled")
    );
    let (id, _) = firmware_to_initiate(&dm, "firmware/download", vec![("uri", json!("u"))]);
    let out = sent(&dm.tick(T0 + 60_000));
    assert_eq!(out[0].1, "cancel");
    let s = dm.device_status(ORG, &id, "t", "d1").expect("status");
    assert!(s["message"]
        .as_str()
        .expect("message")
        .contains("waiting for the answer to the firmware initiate"));
    // The store: flush_due writes, forget_org removes the file.
    let dir = temp_dir();
    let dm = Dm::open(&dir);
    manage(&dm, T0, "d1");
    dm.flush_due().expect("flush");
    assert!(dir.join("platform/dm/acme.json").exists());
    dm.forget_org(ORG);
    dm.flush().expect("flush");
    assert!(!dir.join("platform/dm/acme.json").exists());
}

#[test]
fn bundles_are_checked_and_replaced() {
    let dm = Dm::open(&temp_dir());
    for bad in [
        json!([]),
        json!({"bundleId":"a/b","actions":{}}),
        json!({"bundleId":"b"}),
        json!({"bundleId":"b","actions":{"x":{"parameters":[{"required":true}]}}}),
        json!({"bundleId":"b","actions":{"x":{"parameters":[{"name":"p","required":"yes"}]}}}),
    ] {
        assert_eq!(dm.add_bundle(ORG, &bad).expect_err("bad").status, 400, "{bad}");
    }
    // `"required": "true"` as IBM's own samples write it.
    let sample = json!({"bundleId":"s","actions":{"x":{"parameters":[{"name":"p","required":"true"}]}}});
    dm.add_bundle(ORG, &sample).expect("a string flag is taken");
    dm.delete_bundle(ORG, "s");
    dm.add_bundle(ORG, &json!({"bundleId":"b","actions":{"x":{}}}))
        .expect("added");
    assert_eq!(
        dm.update_bundle(ORG, "c", &json!({"actions":{}}))
            .expect_err("unknown")
            .status,
        404
    );
    let put = dm
        .update_bundle(ORG, "b", &json!({"actions":{"y":{}}}))
        .expect("replaced");
    assert_eq!(put["bundleId"], json!("b"));
    assert_eq!(dm.bundles(ORG).len(), 1);
    assert!(dm.bundle(ORG, "b").expect("bundle")["actions"].get("y").is_some());
    assert!(!dm.delete_bundle(ORG, "c"));
}
