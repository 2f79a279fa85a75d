//! The web console (docs/console.md) in Firefox: Debian's `firefox-esr`, headless, driven
//! over Marionette (tests/common/firefox.rs) against the real binary. The Chromium tests
//! (console_browser.rs) cover every feature; this one walks the console's main paths in
//! the other engine: log in with a key typed into the form, the overview plots drawn from
//! the statistics stream, the test's MQTT client in the clients list, a message published
//! from the form that a real MQTT client receives, the live topic tree and the subscribe
//! panel, a kick done with the keyboard, the keyboard path through the menu, pages no
//! wider than a phone with every control labelled; no uncaught error or
//! Content-Security-Policy violation in Firefox's console. Each page is written to
//! target/console-screenshots/firefox-*.png.
#![allow(clippy::unwrap_used)]
mod common;
use common::firefox::{Firefox, FIREFOX};
use common::page::{screenshots, UNLABELLED};
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tern_proto::{Packet, QoS, ReasonCode};

/// A client that stays connected without pinging (keep alive 0).
fn quiet_client(broker: &Broker, id: &str) -> Client {
    let mut client = broker.client(V5);
    let ack = client.connect(&connect_packet(V5, id, true, 0));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id}: {ack:?}");
    client
}

#[test]
fn the_console_works_in_firefox() {
    if !peer_available("firefox-esr (apt)", std::path::Path::new(FIREFOX).exists()) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let key = admin_key(data.path()).pair();
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\npersistence true\npersistence_location {}\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let http = broker.listening_addrs()[1];
    let mut watcher = quiet_client(&broker, "firefox-watch-me");
    watcher.subscribe("firefox/#", QoS::AtLeastOnce);
    let mut publisher = quiet_client(&broker, "firefox-publisher");

    let firefox = Firefox::start(1000, 760);
    firefox.open(&format!("http://{http}/"));
    firefox.find("#login");
    firefox.screenshot(&screenshots(), "firefox-login");
    // The key typed into the form and sent with Enter.
    firefox.type_into("#key", &format!("{key}\u{E007}"));
    firefox.wait(
        "the console after login",
        "!document.querySelector('#top').hidden",
        json!([]),
    );

    overview(&firefox, &mut publisher);
    clients(&firefox);
    topics(&firefox, &mut watcher, &mut publisher);
    kick(&firefox, http, &mut watcher);
    keyboard(&firefox, http);
    phone_width(&firefox, http);

    // Firefox's console service has every page error: an uncaught exception or
    // rejection, a refused module, a Content-Security-Policy violation.
    let errors = firefox.errors();
    assert!(errors.is_empty(), "Firefox's console: {errors:#?}");
    drop(firefox);
    drop(broker);
}

/// The overview's plots are drawn (a polyline with a width on the page) and the
/// messages-in rate rises while the test publishes.
fn overview(firefox: &Firefox, publisher: &mut Client) {
    firefox.find("#plot-in");
    let deadline = Instant::now() + PATIENCE;
    loop {
        for _ in 0..20 {
            publisher.publish("load/x", b"tick", QoS::AtMostOnce, false, 0);
        }
        let drawn = firefox.eval(
            "const p = document.querySelector('#plot-in'); \
             const line = p.querySelector('polyline'); \
             return [Number(p.dataset.max), Number(p.dataset.points), line ? line.getBBox().width : 0, \
                     document.querySelectorAll('svg polyline').length];",
            json!([]),
        );
        let at = |i: usize| drawn[i].as_f64().unwrap_or(0.0);
        if at(0) > 0.0 && at(1) >= 3.0 && at(2) > 0.0 && at(3) >= 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the plots did not draw: {drawn}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(firefox.text("#fig-connections").trim(), "2");
    firefox.wait(
        "the totals",
        "document.querySelector('#totals').textContent.includes('Subscriptions')",
        json!([]),
    );
    // The plots can show the last minute only.
    firefox.eval(
        "const r = document.querySelector('#range'); r.value = '1'; r.dispatchEvent(new Event('change'));",
        json!([]),
    );
    firefox.wait(
        "the one-minute axis",
        "document.querySelector('#plot-in').textContent.includes('−60 s')",
        json!([]),
    );
    firefox.screenshot(&screenshots(), "firefox-overview");
}

/// Whether the clients list shows `arguments[0]`.
const LISTED: &str = "document.querySelector('#clients-body') && document.querySelector('#clients-body').textContent.includes(arguments[0])";

/// The clients list shows the test's clients; the search narrows it.
fn clients(firefox: &Firefox) {
    firefox.click("a[data-page=clients]");
    firefox.wait("the watcher in the list", LISTED, json!(["firefox-watch-me"]));
    firefox.wait("the publisher in the list", LISTED, json!(["firefox-publisher"]));
    firefox.type_into("#client-search", "firefox-w");
    firefox.wait(
        "the search to narrow the list",
        "!document.querySelector('#clients-body').textContent.includes('firefox-publisher')",
        json!([]),
    );
    firefox.screenshot(&screenshots(), "firefox-clients");
}

/// The publish form sends a message with a user property that a real MQTT 5.0 client
/// receives; the live tree shows a published topic's value; the subscribe panel shows
/// live messages.
fn topics(firefox: &Firefox, watcher: &mut Client, publisher: &mut Client) {
    firefox.click("a[data-page=topics]");
    firefox.type_into("#pub-topic", "firefox/from-form");
    firefox.type_into("#pub-payload", "hello from firefox");
    firefox.type_into("#pub-props", "source=firefox");
    firefox.click("#pub-send");
    let got = watcher.recv_publish();
    assert_eq!(&got.topic[..], "firefox/from-form");
    assert_eq!(&got.payload[..], b"hello from firefox");
    let properties: Vec<(String, String)> = got
        .properties
        .user_properties()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(properties, [("source".into(), "firefox".into())]);
    firefox.wait(
        "the publish result",
        "document.querySelector('#pub-result').textContent.includes('1 session')",
        json!([]),
    );
    const TOPIC_ROW: &str = "(() => { const r = document.querySelector(`#tree [data-topic=\"${arguments[0]}\"]`); return r ? r.textContent : ''; })()";
    let deadline = Instant::now() + PATIENCE;
    loop {
        publisher.publish("firefox/tree/temp", b"21.5", QoS::AtMostOnce, false, 0);
        let row = firefox.eval(&format!("return {TOPIC_ROW};"), json!(["firefox/tree/temp"]));
        if row.as_str().unwrap_or_default().contains("21.5") {
            break;
        }
        assert!(Instant::now() < deadline, "the tree did not show the topic: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The subscribe panel shows the messages of its filter and not the others.
    firefox.type_into("#sub-filter", "firefox/panel/+\u{E007}");
    common::page::panel_shows_only_its_filter(publisher, "firefox", || {
        let shown = firefox.eval("return document.querySelector('#sub-messages').textContent;", json!([]));
        shown.as_str().unwrap_or_default().to_string()
    });
    firefox.eval("window.scrollTo(0, 0);", json!([]));
    firefox.screenshot(&screenshots(), "firefox-topics");
    firefox.click("#sub-stop");
}

/// Kick with the keyboard: Enter on Kick asks and moves the focus to the button that
/// does it, Escape backs out, Enter twice kicks: the client gets DISCONNECT 0x98.
fn kick(firefox: &Firefox, http: SocketAddr, watcher: &mut Client) {
    firefox.open(&format!("http://{http}/#/clients/firefox-watch-me"));
    firefox.type_into("#kick", "\u{E007}");
    firefox.wait(
        "the focus on the confirmation",
        "document.activeElement.id === 'kick-confirm'",
        json!([]),
    );
    firefox.type_into("#kick-confirm", "\u{E00C}");
    firefox.wait(
        "the question to go",
        "!document.querySelector('#kick-confirm')",
        json!([]),
    );
    firefox.type_into("#kick", "\u{E007}");
    firefox.type_into("#kick-confirm", "\u{E007}");
    let seen = watcher.expect_closed();
    assert!(
        matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "{seen:?}"
    );
    firefox.wait(
        "the kick to show",
        "document.querySelector('#client-note').textContent.includes('Kicked')",
        json!([]),
    );
    firefox.screenshot(&screenshots(), "firefox-client");
}

/// With the keyboard alone: after a reload the first Tab reaches the skip link, the next
/// ones the menu's links in order; Enter on the skip link moves the focus into the page.
fn keyboard(firefox: &Firefox, http: SocketAddr) {
    firefox.open(&format!("http://{http}/#/topics"));
    firefox.eval("window.beforeReload = true; location.reload();", json!([]));
    firefox.wait(
        "the page reloaded",
        "!window.beforeReload && document.querySelector('#sub-filter')",
        json!([]),
    );
    firefox.press("\u{E004}");
    let focused = firefox.eval("return document.activeElement.className;", json!([]));
    assert_eq!(focused, json!("skip"));
    let mut order = Vec::new();
    for _ in 0..4 {
        firefox.press("\u{E004}");
        order.push(firefox.eval("return document.activeElement.textContent.trim();", json!([])));
    }
    assert_eq!(
        order,
        [json!("Overview"), json!("Clients"), json!("Topics"), json!("Log out")]
    );
    firefox.eval("document.querySelector('.skip').focus();", json!([]));
    firefox.press("\u{E007}");
    firefox.wait(
        "the focus on the page",
        "document.activeElement.id === 'main'",
        json!([]),
    );
}

/// At about 390 px (a phone) no page is wider than the window, and every control has
/// a label.
fn phone_width(firefox: &Firefox, http: SocketAddr) {
    // Firefox's narrowest window is 500 px: zoomed, its page is 390 CSS px wide (392
    // after Firefox's rounding).
    firefox.command("WebDriver:SetWindowRect", json!({"width": 500, "height": 844}));
    let inner = firefox.eval("return window.innerWidth;", json!([])).as_f64().unwrap();
    firefox.zoom(inner / 390.0);
    firefox.wait("a page 390 px wide", "window.innerWidth <= 392", json!([]));
    for (page, ready) in [
        ("overview", "#plot-in"),
        ("clients", "#clients-body"),
        ("topics", "#sub-filter"),
    ] {
        firefox.open(&format!("http://{http}/#/{page}"));
        firefox.find(ready);
        let overflow = firefox.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        );
        assert!(
            overflow.as_f64().unwrap() <= 0.0,
            "{page} is wider than the screen by {overflow}px"
        );
        assert_eq!(firefox.eval(UNLABELLED, json!([])), json!([]), "{page}");
        firefox.screenshot(&screenshots(), &format!("firefox-{page}-phone"));
    }
}
