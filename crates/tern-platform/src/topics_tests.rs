//! Tests of the topic space: the examples of the platform's documentation, refusals, and
//! properties over arbitrary topics that nothing mapped escapes its organization or device.

use super::*;
use proptest::prelude::*;
use tern_core::topic::matches;

fn device(id: &str) -> TopicSpace {
    TopicSpace::of(&ClientId::parse(id).unwrap(), AppRights::READ_ONLY)
}

fn app(id: &str, rights: AppRights) -> TopicSpace {
    TopicSpace::of(&ClientId::parse(id).unwrap(), rights)
}

fn topic(m: Result<Mapped, TopicRefusal>) -> String {
    m.unwrap().topic
}

#[test]
fn a_devices_events_are_routed_under_its_type_and_id() {
    let d = device("d:za6xa7:test:4321");
    assert_eq!(
        topic(d.publish("iot-2/evt/status/fmt/json")),
        "$iot/za6xa7/iot-2/type/test/id/4321/evt/status/fmt/json"
    );
    assert_eq!(d.broker_prefix(), "$iot/za6xa7/iot-2/type/test/id/4321/");
    assert_eq!(d.client_prefix(), "iot-2/");
}

#[test]
fn a_device_subscribes_to_its_commands_and_gets_them_under_the_short_name() {
    let d = device("d:za6xa7:test:4321");
    for (filter, mapped) in [
        ("iot-2/cmd/+/fmt/+", "$iot/za6xa7/iot-2/type/test/id/4321/cmd/+/fmt/+"),
        (
            "iot-2/cmd/reboot/fmt/json",
            "$iot/za6xa7/iot-2/type/test/id/4321/cmd/reboot/fmt/json",
        ),
        (
            "iot-2/cmd/+/fmt/txt",
            "$iot/za6xa7/iot-2/type/test/id/4321/cmd/+/fmt/txt",
        ),
    ] {
        assert_eq!(topic(d.subscribe(filter)), mapped);
    }
    assert_eq!(
        d.to_client_topic("$iot/za6xa7/iot-2/type/test/id/4321/cmd/reboot/fmt/json")
            .as_deref(),
        Some("iot-2/cmd/reboot/fmt/json")
    );
    assert_eq!(
        d.to_client_topic("$iot/za6xa7/iot-2/type/test/id/4322/cmd/reboot/fmt/json"),
        None
    );
    assert_eq!(d.to_client_topic("$iot/za6xa7/iot-2/type/test/id/4321/"), None);
}

#[test]
fn a_device_is_refused_everything_else() {
    let d = device("d:za6xa7:test:4321");
    for filter in [
        "iot-2/evt/status/fmt/json",
        "iot-2/evt/+/fmt/+",
        "iot-2/evt/#",
        "iot-2/cmd/#",
        "iot-2/cmd/+/fmt/#",
        "iot-2/cmd/+/fmt",
        "iot-2/cmd//fmt/json",
        "iot-2/type/test/id/4321/cmd/+/fmt/+",
        "iot-2/type/+/id/+/evt/+/fmt/+",
        "#",
        "+/cmd/+/fmt/+",
        "$SYS/#",
        "$share/g/iot-2/cmd/+/fmt/+",
        "iotdm-1/type/test/id/4321/#",
        "iotdevice-1/#",
    ] {
        assert!(d.subscribe(filter).is_err(), "{filter}");
    }
    let e = d.subscribe("iot-2/evt/+/fmt/+").unwrap_err();
    assert_eq!(e.why, "a device may not subscribe to events");
    for t in [
        "iot-2/cmd/reboot/fmt/json",
        "iot-2/evt/status/fmt",
        "iot-2/evt/status/fmt/json/extra",
        "iot-2/evt//fmt/json",
        "iot-2/type/test/id/4322/evt/status/fmt/json",
        "iot-2/type/test/id/4321/mon",
        "other",
    ] {
        assert!(d.publish(t).is_err(), "{t}");
    }
}

#[test]
fn applications_use_the_full_form() {
    let a = app("a:za6xa7:test2", AppRights::ALL);
    for filter in [
        "iot-2/type/test/id/4321/evt/status/fmt/+",
        "iot-2/type/+/id/+/evt/+/fmt/+",
        "iot-2/type/+/id/+/cmd/+/fmt/+",
        "iot-2/type/+/id/+/mon",
        "iot-2/type/test/id/4321/mon",
        "iot-2/app/+/mon",
        "iot-2/app/test1/mon",
    ] {
        assert_eq!(topic(a.subscribe(filter)), format!("$iot/za6xa7/{filter}"));
    }
    assert_eq!(
        topic(a.publish("iot-2/type/test/id/4321/cmd/reboot/fmt/json")),
        "$iot/za6xa7/iot-2/type/test/id/4321/cmd/reboot/fmt/json"
    );
    assert_eq!(
        topic(a.publish("iot-2/type/test/id/4321/evt/status/fmt/json")),
        "$iot/za6xa7/iot-2/type/test/id/4321/evt/status/fmt/json"
    );
    assert_eq!(
        a.to_client_topic("$iot/za6xa7/iot-2/type/test/id/4321/evt/status/fmt/json")
            .as_deref(),
        Some("iot-2/type/test/id/4321/evt/status/fmt/json")
    );
    assert_eq!(
        a.to_client_topic("$iot/other/iot-2/type/test/id/4321/evt/status/fmt/json"),
        None
    );
}

#[test]
fn applications_are_refused_outside_the_space() {
    let a = app("a:za6xa7:test2", AppRights::ALL);
    for filter in [
        "#",
        "iot-2/#",
        "iot-2/type/#",
        "iot-2/type/+/id/+/evt/#",
        "iot-2/type/+/id/+/+/+/fmt/+",
        "iot-2/type/te st/id/+/evt/+/fmt/+",
        "iot-2/type/+/id/+/evt/+/fmt",
        "iot-2/evt/+/fmt/+",
        "iot-2/cmd/+/fmt/+",
        "$iot/other/iot-2/type/+/id/+/evt/+/fmt/+",
        "$SYS/broker/uptime",
        "$share/g/iot-2/type/+/id/+/evt/+/fmt/+",
        "iot-2/app/#",
    ] {
        assert!(a.subscribe(filter).is_err(), "{filter}");
    }
    for t in [
        "iot-2/type/test/id/4321/mon",
        "iot-2/app/test2/mon",
        "iot-2/type/+/id/4321/cmd/x/fmt/json",
        "iot-2/type/test/id/4321/cmd/x",
        "iot-2/evt/status/fmt/json",
    ] {
        assert!(a.publish(t).is_err(), "{t}");
    }
}

#[test]
fn a_read_only_key_may_not_publish_commands_or_events() {
    let a = app("a:za6xa7:viewer", AppRights::READ_ONLY);
    let e = a.publish("iot-2/type/test/id/4321/cmd/reboot/fmt/json").unwrap_err();
    assert!(e.why.contains("may not publish commands"), "{}", e.why);
    assert!(a.publish("iot-2/type/test/id/4321/evt/status/fmt/json").is_err());
    assert!(a.subscribe("iot-2/type/+/id/+/evt/+/fmt/+").is_ok());
    let operator = app(
        "a:za6xa7:op",
        AppRights {
            publish_events: false,
            publish_commands: true,
        },
    );
    assert!(operator.publish("iot-2/type/t/id/d/cmd/c/fmt/f").is_ok());
    assert!(operator.publish("iot-2/type/t/id/d/evt/e/fmt/f").is_err());
}

#[test]
fn a_scalable_application_shares_its_subscriptions_by_client_id() {
    for id in ["A:za6xa7:svc", "A:za6xa7:svc:one"] {
        let a = app(id, AppRights::ALL);
        assert_eq!(
            topic(a.subscribe("iot-2/type/+/id/+/evt/+/fmt/+")),
            "$share/A:za6xa7:svc/$iot/za6xa7/iot-2/type/+/id/+/evt/+/fmt/+"
        );
        // Deliveries carry the broker's topic, not the share.
        assert_eq!(
            a.to_client_topic("$iot/za6xa7/iot-2/type/t/id/d/evt/e/fmt/f")
                .as_deref(),
            Some("iot-2/type/t/id/d/evt/e/fmt/f")
        );
    }
}

#[test]
fn a_gateway_names_the_device_each_topic_is_about() {
    let g = device("g:za6xa7:gw:g1");
    let m = g.publish("iot-2/type/sensor/id/s1/evt/temp/fmt/json").unwrap();
    assert_eq!(m.topic, "$iot/za6xa7/iot-2/type/sensor/id/s1/evt/temp/fmt/json");
    assert_eq!(m.device, Some(("sensor".into(), "s1".into())));
    let m = g.subscribe("iot-2/type/+/id/+/cmd/+/fmt/+").unwrap();
    assert_eq!(m.device, None);
    let m = g.subscribe("iot-2/type/gw/id/g1/cmd/+/fmt/+").unwrap();
    assert_eq!(m.device, Some(("gw".into(), "g1".into())));
    assert!(g.subscribe("iot-2/type/+/id/+/mon").is_ok());
    assert!(g.subscribe("iot-2/app/+/mon").is_err());
    assert_eq!(
        topic(g.subscribe("iot-2/type/gw/id/g1/notify")),
        "$iot/za6xa7/iot-2/type/gw/id/g1/notify"
    );
    assert!(g.subscribe("iot-2/type/gw/id/g2/notify").is_err());
    assert!(g.subscribe("iot-2/type/+/id/+/notify").is_err());
    assert!(g.publish("iot-2/type/gw/id/g1/notify").is_err());
    assert_eq!(notify_topic("o", "t", "d"), "$iot/o/iot-2/type/t/id/d/notify");
    assert!(g.publish("iot-2/type/gw/id/g1/mon").is_err());
    assert!(g.publish("iot-2/evt/status/fmt/json").is_err());
    // Its wildcard subscriptions are narrowed per message.
    let topic = "$iot/za6xa7/iot-2/type/sensor/id/s1/cmd/c/fmt/f";
    assert!(g.may_receive(topic, |t, d| (t, d) == ("sensor", "s1")));
    assert!(!g.may_receive(topic, |_, _| false));
    assert!(g.may_receive("$iot/za6xa7/iot-2/type/gw/id/g1/cmd/c/fmt/f", |_, _| false));
    assert!(!g.may_receive("$iot/za6xa7/iot-2/app/a/mon", |_, _| true));
    // Devices and applications are bounded by their filters.
    assert!(device("d:za6xa7:t:d").may_receive(topic, |_, _| false));
}

#[test]
fn device_of_reads_the_full_form() {
    assert_eq!(device_of("$iot/o/iot-2/type/t/id/d/evt/e/fmt/f"), Some(("o", "t", "d")));
    assert_eq!(device_of("$iot/o/iot-2/type/t/id/d/mon"), Some(("o", "t", "d")));
    assert_eq!(device_of("$iot/o/iot-2/app/a/mon"), None);
    assert_eq!(device_of("iot-2/type/t/id/d/mon"), None);
}

#[test]
fn status_topics_are_in_the_organizations_root() {
    assert_eq!(device_status_topic("o", "t", "d"), "$iot/o/iot-2/type/t/id/d/mon");
    assert_eq!(app_status_topic("o", "a"), "$iot/o/iot-2/app/a/mon");
    let a = app("a:o:x", AppRights::ALL);
    let filter = topic(a.subscribe("iot-2/type/+/id/+/mon"));
    assert!(matches(&filter, &device_status_topic("o", "t", "d")));
    assert!(!matches(&filter, &device_status_topic("p", "t", "d")));
    let filter = topic(a.subscribe("iot-2/app/+/mon"));
    assert!(matches(&filter, &app_status_topic("o", "a")));
}

#[test]
fn a_refusal_names_the_topic_shortened() {
    let e = device("d:o:t:d").subscribe(&"x/".repeat(5000)).unwrap_err();
    assert!(e.topic.len() <= 200);
    assert!(e.to_string().contains("a device may subscribe only to its commands"));
}

// Properties: arbitrary topics and filters, built from levels that try to escape
// (wildcards, `$iot`, other organizations, empty levels, `..`).

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("iot-2".to_string()),
        Just("type".to_string()),
        Just("id".to_string()),
        Just("evt".to_string()),
        Just("cmd".to_string()),
        Just("fmt".to_string()),
        Just("mon".to_string()),
        Just("app".to_string()),
        Just("+".to_string()),
        Just("#".to_string()),
        Just("$iot".to_string()),
        Just("org2".to_string()),
        Just("t".to_string()),
        Just("d".to_string()),
        Just("d2".to_string()),
        Just("..".to_string()),
        Just(String::new()),
        "[a-z+#$/]{1,4}",
    ]
}

fn topic_string() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(level(), 1..10).prop_map(|l| l.join("/")),
        // Near misses of the valid forms.
        (level(), level(), level()).prop_map(|(a, b, c)| format!("iot-2/evt/{a}/fmt/{b}{c}")),
        (level(), level(), level()).prop_map(|(a, b, c)| format!("iot-2/cmd/{a}/fmt/{b}/{c}")),
        (level(), level(), level(), level()).prop_map(|(t, d, e, f)| format!("iot-2/type/{t}/id/{d}/evt/{e}/fmt/{f}")),
        (level(), level(), level(), level()).prop_map(|(t, d, e, f)| format!("iot-2/type/{t}/id/{d}/cmd/{e}/fmt/{f}")),
    ]
}

fn spaces() -> Vec<(TopicSpace, &'static str)> {
    vec![
        (device("d:org1:t:d"), "$iot/org1/iot-2/type/t/id/d/"),
        (device("g:org1:t:d"), "$iot/org1/"),
        (app("a:org1:a", AppRights::ALL), "$iot/org1/"),
        (app("A:org1:a:i", AppRights::ALL), "$iot/org1/"),
    ]
}

/// The broker filter without a `$share/<group>/` in front.
fn unshared(filter: &str) -> &str {
    match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, f)| f),
        None => filter,
    }
}

proptest! {
    #[test]
    fn a_published_topic_never_leaves_its_space(t in topic_string()) {
        for (space, root) in spaces() {
            if let Ok(m) = space.publish(&t) {
                prop_assert!(m.topic.starts_with(root), "{} -> {}", t, m.topic);
                prop_assert!(tern_proto::topic::validate_topic_name(&m.topic).is_ok());
                // Status topics are the platform's alone.
                prop_assert!(!matches("$iot/+/iot-2/type/+/id/+/mon", &m.topic));
                prop_assert!(!matches("$iot/+/iot-2/app/+/mon", &m.topic));
                // And the client gets the same name back.
                prop_assert_eq!(space.to_client_topic(&m.topic), Some(t.clone()));
            }
        }
    }

    #[test]
    fn a_subscribed_filter_matches_only_its_space(f in topic_string(), other in topic_string()) {
        for (space, root) in spaces() {
            if let Ok(m) = space.subscribe(&f) {
                let inner = unshared(&m.topic);
                prop_assert!(inner.starts_with(root), "{} -> {}", f, m.topic);
                prop_assert!(tern_proto::topic::validate_topic_filter(inner).is_ok());
                prop_assert!(!root.contains(['+', '#']));
                // Whatever topic it matches is inside the root, and a device's filter
                // never matches events.
                for candidate in [other.clone(), format!("$iot/org2/{other}"), format!("$iot/org1/{other}")] {
                    if matches(inner, &candidate) {
                        prop_assert!(candidate.starts_with(root), "{} matched {}", inner, candidate);
                        if root.contains("/id/") {
                            prop_assert!(!candidate[root.len()..].starts_with("evt/"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_device_never_receives_another_devices_topic(rest in topic_string()) {
        let d = device("d:org1:t:d");
        for foreign in [
            format!("$iot/org1/iot-2/type/t/id/d2/{rest}"),
            format!("$iot/org2/iot-2/type/t/id/d/{rest}"),
            format!("$iot/org1/iot-2/type/t2/id/d/{rest}"),
            format!("iot-2/type/t/id/d/{rest}"),
        ] {
            prop_assert_eq!(d.to_client_topic(&foreign), None);
        }
    }

    #[test]
    fn only_valid_client_ids_parse_and_their_ids_are_single_levels(s in "[a-zA-Z0-9:._/+#$ -]{0,50}") {
        if let Ok(id) = ClientId::parse(&s) {
            prop_assert_eq!(id.to_string(), s.clone());
            prop_assert!(!s.contains(['/', '+', '#', '$', ' ']));
        }
    }
}

#[test]
fn topics_of_many_levels_are_refused_without_trouble() {
    let long = format!("iot-2/evt/e/fmt/f{}", "/x".repeat(1000));
    assert!(device("d:o:t:d").publish(&long).is_err());
    let long = format!("iot-2/type/t/id/d/evt/e/fmt/f{}", "/+".repeat(1000));
    assert!(app("a:o:a", AppRights::ALL).subscribe(&long).is_err());
    let ten = "iot-2/type/t/id/d/evt/e/fmt/f/x";
    assert!(app("a:o:a", AppRights::ALL).publish(ten).is_err());
}

#[test]
fn device_management_topics_name_the_device_inside_the_broker() {
    let d = device("d:za6xa7:test:4321");
    assert_eq!(
        topic(d.publish("iotdevice-1/mgmt/manage")),
        "$iot/za6xa7/iotdevice-1/type/test/id/4321/mgmt/manage"
    );
    assert_eq!(
        topic(d.subscribe("iotdm-1/#")),
        "$iot/za6xa7/iotdm-1/type/test/id/4321/#"
    );
    assert_eq!(
        topic(d.subscribe("iotdm-1/mgmt/initiate/device/reboot")),
        "$iot/za6xa7/iotdm-1/type/test/id/4321/mgmt/initiate/device/reboot"
    );
    let (broker, client) = d.dm_prefixes().unwrap();
    assert_eq!(
        (broker.as_str(), client),
        ("$iot/za6xa7/iotdm-1/type/test/id/4321/", "iotdm-1/")
    );
    assert_eq!(
        d.to_client_topic("$iot/za6xa7/iotdm-1/type/test/id/4321/response")
            .as_deref(),
        Some("iotdm-1/response")
    );
    assert_eq!(
        d.to_client_topic("$iot/za6xa7/iotdm-1/type/test/id/4322/response"),
        None
    );
    assert_eq!(
        dm_up_of("$iot/za6xa7/iotdevice-1/type/test/id/4321/mgmt/manage"),
        Some(("za6xa7", "test", "4321", "mgmt/manage"))
    );
    assert_eq!(dm_up_of("$iot/za6xa7/iot-2/type/test/id/4321/evt/e/fmt/f"), None);
    assert_eq!(
        dm_down_topic("za6xa7", "test", "4321", "response"),
        "$iot/za6xa7/iotdm-1/type/test/id/4321/response"
    );
    // A device speaks and hears only for itself.
    for refused in [
        "iotdevice-1/type/test/id/4322/mgmt/manage",
        "iotdevice-1/",
        "iotdevice-1/mgmt/+",
        "iotdevice-1/a/b/c/d/e/f/g",
    ] {
        assert!(d.publish(refused).is_err(), "{refused}");
    }
    for refused in ["iotdm-1/type/test/id/4322/#", "iotdm-1/#/x", "iotdevice-1/#"] {
        assert!(d.subscribe(refused).is_err(), "{refused}");
    }
    assert!(d.dm_prefixes().is_some());
}

#[test]
fn a_gateway_manages_itself_and_devices_behind_it_with_the_long_forms() {
    let g = device("g:za6xa7:edge:gw1");
    let m = g.publish("iotdevice-1/type/test/id/4321/mgmt/manage").unwrap();
    assert_eq!(m.topic, "$iot/za6xa7/iotdevice-1/type/test/id/4321/mgmt/manage");
    assert_eq!(m.device, Some(("test".to_string(), "4321".to_string())));
    let m = g.subscribe("iotdm-1/type/+/id/+/#").unwrap();
    assert_eq!(m.topic, "$iot/za6xa7/iotdm-1/type/+/id/+/#");
    assert_eq!(m.device, None);
    assert!(g.publish("iotdevice-1/mgmt/manage").is_err());
    assert!(g.dm_prefixes().is_none());
    assert_eq!(
        device_of("$iot/za6xa7/iotdm-1/type/test/id/4321/response"),
        Some(("za6xa7", "test", "4321"))
    );
}

#[test]
fn applications_do_not_use_device_management_topics() {
    let a = app("a:za6xa7:console", AppRights::ALL);
    assert!(a
        .publish("iotdm-1/type/test/id/4321/mgmt/initiate/device/reboot")
        .is_err());
    assert!(a.subscribe("iotdevice-1/type/+/id/+/#").is_err());
    assert!(a.subscribe("iotdm-1/type/+/id/+/response").is_err());
}
