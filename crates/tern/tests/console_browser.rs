//! The web console (docs/console.md) end to end in a real browser: headless Chromium
//! driven through ChromeDriver's WebDriver API against the real binary. The test logs in
//! with a key made by `tern admin key create`, watches the messages-in plot move while
//! it publishes, finds its MQTT client in the clients list, publishes from the form (a bad
//! topic first, whose refusal shows next to the field) and receives the message with a
//! real MQTT client, deletes a retained message, kicks the client, logs out, and sees the
//! session end on a revoked key and after the idle timeout. Each page is written as a
//! screenshot to target/console-screenshots/.
#![allow(clippy::unwrap_used)]
mod common;
use base64::Engine;
use common::browser::{chromium_installed, Browser};
use common::page::{screenshots, UNLABELLED};
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tern_proto::{Packet, QoS, ReasonCode};

/// Whether the clients list shows `arguments[0]`.
const LISTED: &str = "document.querySelector('#clients-body') && document.querySelector('#clients-body').textContent.includes(arguments[0])";

/// A client that stays connected without pinging (keep alive 0).
fn quiet_client(broker: &Broker, id: &str) -> Client {
    let mut client = broker.client(V5);
    let ack = client.connect(&connect_packet(V5, id, true, 0));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id}: {ack:?}");
    client
}

struct Console {
    broker: Broker,
    http: SocketAddr,
    data: tempfile::TempDir,
    key_id: String,
    /// `ID:SECRET`, as a user pastes it.
    key: String,
}

fn start_console() -> Console {
    let data = tempfile::tempdir().unwrap();
    let made = admin_key(data.path());
    let key_id = made.id.clone();
    let key = made.pair();
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\nmessage_size_limit 1000\npersistence true\npersistence_location {}\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let http = broker.listening_addrs()[1];
    Console {
        broker,
        http,
        data,
        key_id,
        key,
    }
}

/// Logs in on the login page with `key`, typed and submitted with Enter.
fn log_in(browser: &Browser, key: &str) {
    browser.clear("#key");
    browser.type_into("#key", &format!("{key}\u{E007}"));
    browser.wait(
        "the console after login",
        "!document.querySelector('#top').hidden",
        json!([]),
    );
}

#[test]
fn the_console_logs_in_plots_lists_publishes_and_kicks() {
    if !peer_available("chromium and chromium-driver (apt)", chromium_installed()) {
        return;
    }
    let console = start_console();
    let mut watcher = quiet_client(&console.broker, "console-watch-me");
    watcher.subscribe("console/#", QoS::AtLeastOnce);
    let mut publisher = quiet_client(&console.broker, "load-maker");
    let mut reader = quiet_client(&console.broker, "load-reader");
    reader.subscribe("load/x", QoS::AtMostOnce);
    let browser = Browser::start(&[]);
    // Screenshots 1000 px wide (docs/console/ has copies).
    browser.command("POST", "window/rect", Some(json!({"width": 1000, "height": 760})));
    browser.open(&format!("http://{}/", console.http));

    // The login page refuses a wrong key next to the field, then takes the right one.
    browser.find("#login");
    browser.screenshot(&screenshots(), "login");
    browser.type_into("#key", &format!("{}:tern_wrong\u{E007}", console.key_id));
    let refused = browser.wait(
        "the refusal",
        "document.querySelector('#key-error').textContent",
        json!([]),
    );
    assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
    log_in(&browser, &console.key);
    browser.find("#fig-in");
    overview_moves(&browser, &mut publisher);
    drop(reader);
    overview_range(&browser);
    clients_pages(&browser, &console, &mut publisher);
    topics_page(&browser, &console, &mut watcher);
    topic_tree_and_subscribe(&browser, &mut publisher);
    kick(&browser, &console, &mut watcher);
    phone_width(&browser, &console);
    keyboard(&browser, &console);
    log_out(&browser);
    session_ends(&browser, &console);

    // The page broke no rule of its Content-Security-Policy and threw nothing.
    let problems: Vec<String> = browser
        .log()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Uncaught"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
}

/// The messages-in figure and plot move while the test publishes.
fn overview_moves(browser: &Browser, publisher: &mut Client) {
    let deadline = Instant::now() + PATIENCE;
    let mut sent = 0u32;
    loop {
        for _ in 0..20 {
            publisher.publish("load/x", b"tick", QoS::AtMostOnce, false, 0);
            sent += 1;
        }
        // A retained message is written to the store: a commit to time.
        publisher.publish("load/retained", sent.to_string().as_bytes(), QoS::AtMostOnce, true, 0);
        let plotted = browser.eval(
            "const d = (id) => document.querySelector(id).dataset; \
             return [Number(d('#plot-in').max), Number(d('#plot-in').points), \
                     Number(d('#plot-deliveries').max), Number(d('#plot-commit').points)];",
            json!([]),
        );
        // A few samples, the rate above 0 in them; deliveries seen; commits timed.
        let above = |i: usize| plotted[i].as_f64().is_some_and(|m| m > 0.0);
        if above(0) && plotted[1].as_f64().is_some_and(|n| n >= 4.0) && above(2) && above(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the messages-in plot did not move after {sent} messages"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let figure = browser.text("#fig-in");
    let points = browser.eval(
        "return Number(document.querySelector('#plot-in').dataset.points);",
        json!([]),
    );
    assert!(points.as_f64().unwrap() >= 1.0, "{points}");
    assert!(
        browser.text("#fig-connections").trim() == "3",
        "connections: {}",
        browser.text("#fig-connections")
    );
    assert!(!figure.is_empty());
    browser.wait(
        "the totals",
        "document.querySelector('#totals').textContent.includes('Subscriptions')",
        json!([]),
    );
}

/// The plots can show less than the 15 minutes they keep.
fn overview_range(browser: &Browser) {
    browser.eval(
        "const r = document.querySelector('#range'); r.value = '1'; r.dispatchEvent(new Event('change'));",
        json!([]),
    );
    browser.wait(
        "the one-minute axis",
        "document.querySelector('#plot-in').textContent.includes('−60 s')",
        json!([]),
    );
    browser.screenshot(&screenshots(), "overview");
}

/// The clients list shows both clients; the search narrows it to one; a client's page
/// shows its subscription, and an offline session's page its queue.
fn clients_pages(browser: &Browser, console: &Console, publisher: &mut Client) {
    browser.click("a[data-page=clients]");
    browser.wait("the watcher in the list", LISTED, json!(["console-watch-me"]));
    browser.wait("the publisher in the list", LISTED, json!(["load-maker"]));
    browser.type_into("#client-search", "console-w");
    browser.wait(
        "the search to narrow the list",
        "!document.querySelector('#clients-body').textContent.includes('load-maker')",
        json!([]),
    );
    browser.screenshot(&screenshots(), "clients");

    // One client's page: its details and subscription.
    browser.click("#clients-body a");
    browser.wait(
        "the client's details",
        "document.querySelector('#client-details') && document.querySelector('#client-details').dataset.connected === 'true'",
        json!([]),
    );
    browser.wait(
        "its subscription",
        "document.querySelector('#subs-body').textContent.includes('console/#')",
        json!([]),
    );
    browser.screenshot(&screenshots(), "client");

    // An offline session with two QoS 1 messages waiting.
    let mut holder = console.broker.client(V311);
    holder.connect(&connect_packet(V311, "queue-holder", false, 0));
    holder.subscribe("held/#", QoS::AtLeastOnce);
    holder.disconnect();
    for (n, payload) in [(1, "first held"), (2, "second held")] {
        let acked = publisher.publish("held/x", payload.as_bytes(), QoS::AtLeastOnce, false, n);
        assert_eq!(acked, ReasonCode::SUCCESS);
    }
    browser.open(&format!("http://{}/#/clients/queue-holder", console.http));
    browser.wait(
        "the queue",
        "document.querySelector('#queue-note') && document.querySelector('#queue-note').textContent.includes('2 queued') \
         && document.querySelector('#queue-body').textContent.includes('second held')",
        json!([]),
    );
    browser.screenshot(&screenshots(), "client-queue");
}

/// The publish form: the API's refusal of a bad topic shows next to the topic field.
fn topics_page(browser: &Browser, console: &Console, watcher: &mut Client) {
    browser.click("a[data-page=topics]");
    browser.type_into("#pub-topic", "console/+/bad");
    browser.click("#pub-send");
    let error = browser.wait(
        "the topic's error",
        "document.querySelector('#pub-topic-error').textContent",
        json!([]),
    );
    assert!(error.as_str().unwrap().contains("wildcard"), "{error}");
    browser.screenshot(&screenshots(), "topics-error");
    browser.clear("#pub-topic");
    browser.type_into("#pub-topic", "console/from-form");
    // A payload over the broker's message_size_limit: refused next to the payload.
    browser.eval(
        "document.querySelector('#pub-payload').value = 'x'.repeat(1500);",
        json!([]),
    );
    browser.click("#pub-send");
    let error = browser.wait(
        "the payload's error",
        "document.querySelector('#pub-payload-error').textContent",
        json!([]),
    );
    assert!(error.as_str().unwrap().contains("message_size_limit"), "{error}");
    browser.screenshot(&screenshots(), "topics-payload-error");
    // A user property line without '=' is refused before anything is sent.
    browser.type_into("#pub-props", "unit");
    browser.click("#pub-send");
    let error = browser.wait(
        "the user properties' error",
        "document.querySelector('#pub-props-error').textContent",
        json!([]),
    );
    assert!(error.as_str().unwrap().contains("name=value"), "{error}");
    browser.type_into("#pub-props", "=celsius\nsource=console");
    browser.clear("#pub-payload");
    browser.type_into("#pub-payload", "hello from the console");
    browser.click("#pub-retain");
    browser.click("#pub-send");
    let got = watcher.recv_publish();
    assert_eq!(&got.topic[..], "console/from-form");
    assert_eq!(&got.payload[..], b"hello from the console");
    let properties: Vec<(String, String)> = got
        .properties
        .user_properties()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        properties,
        [("unit".into(), "celsius".into()), ("source".into(), "console".into())]
    );
    browser.wait(
        "the publish result",
        "document.querySelector('#pub-result').textContent.includes('1 session')",
        json!([]),
    );
    assert_eq!(browser.text("#pub-topic-error"), "");

    // The retained message it left is listed, and deleted from the list.
    browser.click("#retained-filter");
    browser.clear("#retained-filter");
    browser.type_into("#retained-filter", "console/#\u{E007}");
    browser.wait(
        "the retained message",
        "document.querySelector('#retained-body').textContent.includes('hello from the console')",
        json!([]),
    );
    browser.screenshot(&screenshots(), "topics");
    browser.click("#retained-delete-0");
    browser.click("#retained-delete-0-confirm");
    browser.wait(
        "the retained message to go",
        "document.querySelector('#retained-body').textContent.includes('No retained messages match')",
        json!([]),
    );
    let mut late = quiet_client(&console.broker, "late-reader");
    late.subscribe("console/#", QoS::AtLeastOnce);
    late.expect_quiet();
}

/// The live topic tree shows a topic's last value, rate and retained flag; the subscribe
/// panel refuses a bad filter next to the field, then shows live messages.
fn topic_tree_and_subscribe(browser: &Browser, publisher: &mut Client) {
    const TOPIC_ROW: &str = "(() => { const r = document.querySelector(`#tree [data-topic=\"${arguments[0]}\"]`); return r ? r.textContent : ''; })()";
    // The retained message the overview left, from the retained listing.
    let row = browser.wait("the retained topic in the tree", TOPIC_ROW, json!(["load/retained"]));
    assert!(row.as_str().unwrap().contains("retained"), "{row}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        publisher.publish("console/tree/temp", b"21.5", QoS::AtMostOnce, false, 0);
        let row = browser.eval(&format!("return {TOPIC_ROW};"), json!(["console/tree/temp"]));
        let text = row.as_str().unwrap_or_default().to_string();
        if text.contains("21.5") && !text.contains(" 0/s") {
            break;
        }
        assert!(Instant::now() < deadline, "the tree did not show the topic: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.type_into("#sub-filter", "console/#/bad\u{E007}");
    let error = browser.wait(
        "the filter's error",
        "document.querySelector('#sub-filter-error').textContent",
        json!([]),
    );
    assert!(error.as_str().unwrap().contains('#'), "{error}");
    browser.clear("#sub-filter");
    browser.type_into("#sub-filter", "console/panel/+\u{E007}");
    common::page::panel_shows_only_its_filter(publisher, "console", || {
        let shown = browser.eval("return document.querySelector('#sub-messages').textContent;", json!([]));
        shown.as_str().unwrap_or_default().to_string()
    });
    browser.screenshot(&screenshots(), "topics-live");
    browser.click("#sub-stop");
}

/// Kick: the client gets DISCONNECT 0x98 and the page says it is gone.
fn kick(browser: &Browser, console: &Console, watcher: &mut Client) {
    browser.open(&format!("http://{}/#/clients/console-watch-me", console.http));
    // With the keyboard: Enter on Kick asks, and moves the focus to the button that
    // does it; Escape backs out; Enter twice kicks.
    browser.type_into("#kick", "\u{E007}");
    browser.wait(
        "the focus on the confirmation",
        "document.activeElement.id === 'kick-confirm'",
        json!([]),
    );
    browser.type_into("#kick-confirm", "\u{E00C}");
    browser.wait(
        "the question to go",
        "!document.querySelector('#kick-confirm')",
        json!([]),
    );
    browser.type_into("#kick", "\u{E007}");
    browser.type_into("#kick-confirm", "\u{E007}");
    let seen = watcher.expect_closed();
    assert!(
        matches!(seen.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "{seen:?}"
    );
    browser.wait(
        "the kick to show",
        "document.querySelector('#client-note').textContent.includes('Kicked') && document.querySelector('#client-details').dataset.connected === 'false'",
        json!([]),
    );
}

/// A phone-width screen: nothing is wider than the window on any page, every control
/// has a label.
fn phone_width(browser: &Browser, console: &Console) {
    browser.command("POST", "window/rect", Some(json!({"width": 390, "height": 844})));
    for (page, ready, name) in [
        ("clients", "#clients-body", "clients-phone"),
        ("overview", "#plot-in", "overview-phone"),
        ("topics", "#sub-filter", "topics-phone"),
        ("clients/queue-holder", "#queue-body tr", "client-phone"),
    ] {
        browser.open(&format!("http://{}/#/{page}", console.http));
        browser.find(ready);
        if page == "clients" {
            browser.wait("the list", LISTED, json!(["load-maker"]));
        }
        let overflow = browser.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        );
        assert!(
            overflow.as_f64().unwrap() <= 0.0,
            "{page} is wider than the screen by {overflow}px"
        );
        assert_eq!(browser.eval(UNLABELLED, json!([])), json!([]), "{page}");
        browser.screenshot(&screenshots(), name);
    }
    browser.command("POST", "window/rect", Some(json!({"width": 1000, "height": 760})));
}

/// Presses `key` (a WebDriver key code, "\u{E004}" is Tab) on whatever has the focus.
fn press(browser: &Browser, key: &str) {
    let keys = json!([{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]);
    let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": keys}]});
    browser.command("POST", "actions", Some(actions));
}

/// With the keyboard alone: the first Tab reaches the skip link, Enter on it moves to
/// the page, and from the top the menu's links come in reading order.
fn keyboard(browser: &Browser, console: &Console) {
    browser.open(&format!("http://{}/#/topics", console.http));
    browser.eval("window.beforeReload = true; location.reload();", json!([]));
    browser.wait(
        "the page reloaded",
        "!window.beforeReload && document.querySelector('#sub-filter')",
        json!([]),
    );
    press(browser, "\u{E004}");
    let focused = browser.eval("return document.activeElement.className;", json!([]));
    assert_eq!(focused, json!("skip"));
    let mut order = Vec::new();
    for _ in 0..4 {
        press(browser, "\u{E004}");
        order.push(browser.eval("return document.activeElement.textContent.trim();", json!([])));
    }
    assert_eq!(
        order,
        [json!("Overview"), json!("Clients"), json!("Topics"), json!("Log out")]
    );
    browser.eval("document.querySelector('.skip').focus();", json!([]));
    press(browser, "\u{E007}");
    browser.wait(
        "the focus on the page",
        "document.activeElement.id === 'main'",
        json!([]),
    );
    // The next Tab goes into the page, not back to the menu.
    press(browser, "\u{E004}");
    let inside = browser.eval(
        "return document.getElementById('main').contains(document.activeElement);",
        json!([]),
    );
    assert_eq!(inside, json!(true));
}

/// Log out: back to the login page, and the key is gone from the tab.
fn log_out(browser: &Browser) {
    browser.click("#logout");
    browser.find("#login");
    let stored = browser.eval("return sessionStorage.getItem('tern.auth');", json!([]));
    assert_eq!(stored, Value::Null);
}

/// Thirty idle minutes end the session.
fn session_ends(browser: &Browser, console: &Console) {
    log_in(browser, &console.key);
    browser.eval(
        "sessionStorage.setItem('tern.seen', String(Date.now() - 31 * 60 * 1000)); location.hash = '#/topics';",
        json!([]),
    );
    let notice = browser.wait(
        "the idle timeout",
        "document.querySelector('#login-notice') && document.querySelector('#login-notice').textContent",
        json!([]),
    );
    assert!(notice.as_str().unwrap().contains("expired"), "{notice}");

    // A revoked key sends the console back to the login page at its next call.
    log_in(browser, &console.key);
    let data = console.data.path().to_str().unwrap();
    let out = tern(&["admin", "key", "revoke", "--data-dir", data, &console.key_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    browser.click("a[data-page=clients]");
    let notice = browser.wait(
        "the refused key",
        "document.querySelector('#login-notice') && document.querySelector('#login-notice').textContent",
        json!([]),
    );
    assert!(notice.as_str().unwrap().contains("refused"), "{notice}");
}

/// Sends `GET path` (with `auth` as its Authorization) and returns the connection.
fn http_get(addr: SocketAddr, path: &str, auth: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// Everything the server sends until it closes.
fn read_all(mut stream: TcpStream) -> String {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).to_string()
}

/// Reads a statistics stream until it has brought `events` events; returns the text.
fn read_events(stream: &mut TcpStream, events: usize) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // Each event ends with an empty line (the chunked encoding's framing has none).
    while seen.matches("\n\n").count() < events {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

#[test]
fn the_console_files_are_public_and_carry_a_strict_policy_and_the_stream_needs_a_key() {
    let console = start_console();
    let get = |path: &str, auth: Option<&str>| http_get(console.http, path, auth);
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let answer = read_all(get(path, None)).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{path}: {answer}");
        assert!(answer.contains(&format!("content-type: {kind}")), "{path}: {answer}");
        assert!(answer.contains("content-security-policy: default-src 'none'; script-src 'self'"));
        assert!(answer.contains("x-content-type-options: nosniff"));
    }
    assert!(read_all(get("/console/../Cargo.toml", None)).starts_with("HTTP/1.1 404"));
    // Data is not public: the API and the statistics stream need the key.
    assert!(read_all(get("/api/v1/clients", None)).starts_with("HTTP/1.1 401"));
    assert!(read_all(get("/api/v1/stream/stats", None)).starts_with("HTTP/1.1 401"));
    // With the key: events, one a second, the first at once; the count of open streams.
    let (id, secret) = console.key.split_once(':').unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let mut stream = get("/api/v1/stream/stats", Some(&auth));
    let seen = read_events(&mut stream, 2);
    let lower = seen.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/event-stream"), "{seen}");
    assert!(seen.contains("\"streams_open\":1"), "{seen}");
    assert!(seen.contains("\"messages_dropped\":0"), "{seen}");
    streams_are_capped(console.http, &auth);
    message_streams(console.http, &auth);
    // The broker stopping ends the stream (the broker exits cleanly with it open).
    console.broker.stop();
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
}

/// The message stream: a key is needed, a bad or shared filter gets 400 naming it, and
/// at most 8 are open at once.
fn message_streams(addr: SocketAddr, auth: &str) {
    assert!(read_all(http_get(addr, "/api/v1/stream/messages?filter=%23", None)).starts_with("HTTP/1.1 401"));
    for bad in ["a/%23/b", "%24share/g/a", ""] {
        let answer = read_all(http_get(
            addr,
            &format!("/api/v1/stream/messages?filter={bad}"),
            Some(auth),
        ));
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("\"field\":\"filter\""), "{bad}: {answer}");
    }
    let mut open: Vec<TcpStream> = (0..8)
        .map(|_| http_get(addr, "/api/v1/stream/messages?filter=%23", Some(auth)))
        .collect();
    for stream in &mut open {
        assert!(read_events(stream, 1).contains("\"matched\":0"));
    }
    let refused = read_all(http_get(addr, "/api/v1/stream/messages?filter=%23", Some(auth)));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
}

/// With one stream open: at most 32 are open, the 33rd is refused, and a stream whose
/// client went gives its place back.
fn streams_are_capped(addr: SocketAddr, auth: &str) {
    let mut others: Vec<TcpStream> = (1..32)
        .map(|_| http_get(addr, "/api/v1/stream/stats", Some(auth)))
        .collect();
    for other in &mut others {
        read_events(other, 1);
    }
    let refused = read_all(http_get(addr, "/api/v1/stream/stats", Some(auth)));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("streams are open already"), "{refused}");
    drop(others);
    let mut again = None;
    wait_until("the closed streams to give their places back", || {
        let mut one = http_get(addr, "/api/v1/stream/stats", Some(auth));
        let mut head = [0u8; 12];
        let accepted = one.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200";
        if accepted {
            again = Some(one);
        }
        accepted
    });
    // Its events count the streams open: this one and the first, once the broker has
    // seen every closed one go.
    let mut again = again.unwrap();
    wait_until("the count of open streams to fall to 2", || {
        read_events(&mut again, 1).contains("\"streams_open\":2,")
    });
}
