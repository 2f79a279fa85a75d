//! The historian on PostgreSQL (issue #17) against the real binary and a real server
//! (Debian's `postgresql`, a throwaway one from `common::postgres`): events a device
//! publishes over MQTT are stored in the database the broker's `historian_postgres`
//! names and read back through the REST API exactly; Tern creates the schema at the first
//! start and migrates nothing at the second; retention deletes in SQL; stopping the
//! server mid-stream while the device keeps publishing loses nothing: every event the
//! broker acknowledged meanwhile is in the database once it is back, in order, once; and
//! events kept in the spool while the database is down survive a kill -9 of the broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_rest/harness.rs"]
mod harness;

use common::iot::iot;
use common::postgres::{shared, Postgres};
use common::*;
use harness::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::*;

const TEMP: &str = "/historian/types/test/devices/4321/events/temp";
/// How long stored events may take to reach the database (a catch-up after an outage
/// waits for the backend's reconnect backoff, 5 s at most).
const STORED_WITHIN: Duration = Duration::from_secs(30);

/// The REST tests' platform with the historian on database `db` of `pg` (created here),
/// its device allowed many messages a second, storing switched on for za6xa7.
fn platform_on(pg: &Postgres, db: &str) -> Platform {
    pg.create_database(db);
    platform_with(pg, db)
}

/// Like [`platform_on`], on a database the test made.
fn platform_with(pg: &Postgres, db: &str) -> Platform {
    let mut p = Platform::start();
    iot(
        &p.data,
        &["org", "set", "za6xa7", "--device-messages-per-second", "100000"],
    );
    let config = std::fs::read_to_string(&p.config).unwrap();
    let config = format!("historian_postgres {}\n{config}", pg.conn_str(db));
    std::fs::write(&p.config, config).unwrap();
    p.stop_and_restart();
    let broker = p.broker.as_ref().unwrap();
    assert!(broker.log_contains("historian: PostgreSQL"), "the historian's schema");
    assert!(
        broker.logged("storing events in PostgreSQL"),
        "{:?}",
        broker.log.lock().unwrap()
    );
    let set = p
        .call(&p.admin, "PUT", "/config/historian", Some(json!({"enabled": true})))
        .ok(200);
    assert_eq!(set["enabled"], true);
    p
}

fn temps(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| json!({"d": {"temp": i as f64 * 0.5, "n": i}}).to_string().into_bytes())
        .collect()
}

/// Publishes at QoS 1, each acknowledged before the next.
fn publish_all(device: &mut Client, topic: &str, payloads: &[Vec<u8>]) {
    for (i, payload) in payloads.iter().enumerate() {
        let id = u16::try_from(i % 60_000 + 1).unwrap();
        assert_eq!(
            device.publish(topic, payload, QoS::AtLeastOnce, false, id),
            ReasonCode::SUCCESS
        );
    }
}

/// Rows of za6xa7's device in `tern_events`, as psql prints one column of them.
fn rows(pg: &Postgres, db: &str, column: &str) -> Vec<String> {
    pg.psql(
        db,
        &format!("SELECT {column} FROM tern_events WHERE org = 'za6xa7' AND device_id = '4321' ORDER BY ts_ms, id"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Waits until the database holds `n` events of the device (never more).
fn wait_rows(pg: &Postgres, db: &str, n: usize) {
    within(STORED_WITHIN, &format!("{n} events in PostgreSQL"), || {
        let count: usize = pg
            .try_psql(db, "SELECT count(*) FROM tern_events WHERE org = 'za6xa7'")
            .ok()?
            .trim()
            .parse()
            .ok()?;
        assert!(count <= n, "{count} events stored, more than the {n} published");
        (count == n).then_some(())
    });
}

/// The stored events of `event` through the REST API, all pages.
fn query_all(p: &Platform, event: &str) -> Vec<Value> {
    let base = format!("/historian/types/test/devices/4321/events/{event}?start=0&limit=100");
    let mut all = Vec::new();
    let mut next = base.clone();
    loop {
        let page = p.call(&p.reader, "GET", &next, None).ok(200);
        all.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["bookmark"].as_str() {
            Some(b) => next = format!("{base}&bookmark={b}"),
            None => return all,
        }
    }
}

#[test]
fn events_published_over_mqtt_are_stored_in_postgresql_and_read_back_exactly() {
    let Some(pg) = shared() else { return };
    let db = "stored";
    let p = platform_on(pg, db);
    let mut device = p.device();
    let mut json_payloads = temps(0, 250);
    // Skipped by all aggregates but count: no such field, and a field that is no number.
    json_payloads.insert(7, br#"{"d": {"hum": 3}}"#.to_vec());
    json_payloads.insert(20, br#"{"d": {"temp": "hot"}}"#.to_vec());
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &json_payloads);
    let raw: Vec<Vec<u8>> = vec![vec![0, 1, 2, 255], b"{\"s\":\"nul \\u0000\"}".to_vec()];
    publish_all(&mut device, "iot-2/evt/raw/fmt/bin", &raw[..1]);
    publish_all(&mut device, "iot-2/evt/raw/fmt/json", &raw[1..]);
    wait_rows(pg, db, 254);

    // Through the REST API, page by page (bookmarks from the database's row ids).
    let events = query_all(&p, "temp");
    let payloads: Vec<Value> = events.iter().map(|e| e["payload"].clone()).collect();
    let expected: Vec<Value> = json_payloads
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(payloads, expected, "JSON payloads as published, in order");
    assert!(events.iter().all(|e| e["format"] == "json"));
    let got_raw: Vec<Value> = query_all(&p, "raw").iter().map(|e| e["payload"].clone()).collect();
    // jsonb cannot hold U+0000: that payload is kept as bytes (and returned) all the same.
    assert_eq!(
        got_raw,
        vec![json!("AAEC/w=="), serde_json::from_slice::<Value>(&raw[1]).unwrap()]
    );

    // In the database: the payload bytes as published, JSON bodies for SQL.
    let hex: Vec<String> = json_payloads.iter().map(|b| format!("\\x{}", to_hex(b))).collect();
    let stored_payloads: Vec<String> = rows(pg, db, "payload")
        .into_iter()
        .filter(|p| hex.contains(p))
        .collect();
    assert_eq!(stored_payloads, hex);
    let bodies = pg.psql(
        db,
        "SELECT count(*), sum((body #>> '{d,temp}')::float8) FROM tern_events \
         WHERE event_id = 'temp' AND jsonb_typeof(body #> '{d,temp}') = 'number'",
    );
    let sum: f64 = (0..250).map(|i| i as f64 * 0.5).sum();
    assert_eq!(bodies.trim(), format!("250|{sum}"));
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM tern_events WHERE body IS NULL")
            .trim(),
        "2"
    );

    // Aggregates, computed by the database, agree with values computed here.
    let from = events[0]["timestamp"].as_str().unwrap().replace('+', "%2B");
    for agg in ["count", "min", "max", "sum", "avg", "last"] {
        let path = format!("{TEMP}?start={from}&agg={agg}&interval=1m&field=d.temp");
        let answer = p.call(&p.reader, "GET", &path, None).ok(200);
        assert_eq!(answer["points"], json!(per_minute(&events, agg)), "{agg}");
    }
    let count = p
        .call(
            &p.reader,
            "GET",
            &format!("{TEMP}?start={from}&agg=count&interval=1h"),
            None,
        )
        .ok(200);
    let total: u64 = count["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 252, "count needs no field and counts every event");
}

/// The points an aggregate per minute of `d.temp` should have, from the events as the API
/// returned them (ISO-8601 timestamps: the minute is their first 16 characters).
fn per_minute(events: &[Value], agg: &str) -> Vec<Value> {
    let mut minutes: Vec<(String, Vec<f64>, usize)> = Vec::new();
    for e in events {
        let minute = e["timestamp"].as_str().unwrap()[..16].to_string();
        if minutes.last().is_none_or(|(m, _, _)| *m != minute) {
            minutes.push((minute, Vec::new(), 0));
        }
        let (_, numbers, all) = minutes.last_mut().unwrap();
        *all += 1;
        if let Some(v) = e["payload"]["d"]["temp"].as_f64() {
            numbers.push(v);
        }
    }
    minutes
        .into_iter()
        .filter(|(_, numbers, _)| agg == "count" || !numbers.is_empty())
        .map(|(minute, numbers, all)| {
            let sum: f64 = numbers.iter().sum();
            let value = match agg {
                "count" => json!(all),
                "min" => json!(numbers.iter().copied().fold(f64::INFINITY, f64::min)),
                "max" => json!(numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                "sum" => json!(sum),
                "avg" => json!(sum / numbers.len() as f64),
                "last" => json!(numbers.last().unwrap()),
                _ => unreachable!(),
            };
            json!({"timestamp": format!("{minute}:00.000+0000"), "value": value})
        })
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_schema_is_created_at_the_first_start_and_the_second_migrates_nothing() {
    let Some(pg) = shared() else { return };
    let db = "schema";
    let mut p = platform_on(pg, db);
    let broker = p.broker.as_ref().unwrap();
    assert!(broker.log_contains("historian schema created (version 1)"));
    assert_eq!(
        pg.psql(db, "SELECT component, version FROM tern_schema_version").trim(),
        "historian|1"
    );
    let indexes = pg.psql(
        db,
        "SELECT indexname FROM pg_indexes WHERE tablename = 'tern_events' ORDER BY indexname",
    );
    assert!(
        indexes.contains("tern_events_series") && indexes.contains("tern_events_org_time"),
        "{indexes}"
    );
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(0, 3));
    wait_rows(pg, db, 3);
    drop(device);

    p.stop_and_restart();
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_contains("historian schema at version 1, nothing to migrate"),
        "the second connection"
    );
    assert!(!broker.logged("historian schema created"));
    assert_eq!(
        pg.psql(db, "SELECT component, version FROM tern_schema_version").trim(),
        "historian|1",
        "no migration recorded twice"
    );
    // The events of the first run are still there and more join them.
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(3, 2));
    wait_rows(pg, db, 5);
    let n: Vec<String> = rows(pg, db, "body #>> '{d,n}'");
    assert_eq!(n, ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_schema_newer_than_this_tern_knows_is_refused_and_left_alone() {
    let Some(pg) = shared() else { return };
    let db = "newer";
    pg.create_database(db);
    pg.psql(
        db,
        "CREATE TABLE tern_schema_version (component text NOT NULL, version integer NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version)); \
         INSERT INTO tern_schema_version (component, version) VALUES ('historian', 99)",
    );
    let p = platform_with(pg, db);
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_line(&[
            "unavailable",
            "version 99, newer than this Tern knows (1): upgrade Tern"
        ]),
        "{:?}",
        broker.log.lock().unwrap()
    );
    assert_eq!(
        pg.psql(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'tern_events'")
            .trim(),
        "0",
        "nothing created in a schema Tern does not know"
    );
    // Events are kept for when Tern is upgraded; queries say why they cannot answer.
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(0, 3));
    let refused = p.call(&p.reader, "GET", &format!("{TEMP}?start=0"), None).refused(503);
    assert!(refused.contains("not connected"), "{refused}");
}

#[test]
fn a_database_outage_mid_stream_loses_nothing_and_keeps_the_order() {
    // A server of its own: the other tests' server keeps running.
    let Some(pg) = Postgres::start() else { return };
    let db = "outage";
    let p = platform_on(&pg, db);
    let device = p.device();

    // The device publishes without pause (each event acknowledged before the next),
    // numbering its events, until told to stop.
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut device = device;
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(SeqCst) {
                let payload = temps(n, 1).remove(0);
                let id = u16::try_from(n % 60_000 + 1).unwrap();
                let code = device.publish("iot-2/evt/temp/fmt/json", &payload, QoS::AtLeastOnce, false, id);
                assert_eq!(code, ReasonCode::SUCCESS, "event {n}");
                n += 1;
                acked.store(n, SeqCst);
                // About 500 events a second: enough to be mid-stream, few enough to check.
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let published_at_least = |n: usize| {
        let acked = acked.clone();
        wait_until(&format!("{n} events acknowledged"), move || acked.load(SeqCst) >= n);
    };
    published_at_least(100);
    wait_until("events in PostgreSQL", || {
        pg.try_psql(db, "SELECT count(*) FROM tern_events")
            .is_ok_and(|c| c.trim().parse::<usize>().is_ok_and(|c| c > 0))
    });

    pg.stop_fast();
    let down_from = acked.load(SeqCst);
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_line(&["historian: PostgreSQL", "unavailable"]),
        "the outage noticed"
    );
    published_at_least(down_from + 300);
    pg.start_server();
    let up_from = acked.load(SeqCst);
    assert!(broker.log_contains("PostgreSQL is back"), "the reconnect");
    published_at_least(up_from + 200);
    stop.store(true, SeqCst);
    let total = publisher.join().unwrap();
    assert!(total >= down_from + 500, "{total} events published");

    // Every acknowledged event, once, in the order published.
    wait_rows(&pg, db, total);
    let numbers: Vec<usize> = rows(&pg, db, "body #>> '{d,n}'")
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..total).collect::<Vec<_>>(),
        "in order, none twice, none lost"
    );
    assert_eq!(
        pg.psql(db, "SELECT count(DISTINCT (writer, seq)) FROM tern_events")
            .trim(),
        total.to_string()
    );
    assert!(
        broker.log_contains("buffered events caught up with PostgreSQL"),
        "the catch-up finished"
    );
    // And the REST API reads them all back from the database, in order.
    let through_api: Vec<u64> = query_all(&p, "temp")
        .iter()
        .map(|e| e["payload"]["d"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(through_api.len(), total);
    assert!(through_api.iter().enumerate().all(|(i, n)| *n == i as u64));
}

/// `GET /metrics` with an admin API key made before the broker started.
fn metrics(p: &Platform, auth: &str) -> String {
    let answer = request(p.http(), "GET", "/metrics", &[("Authorization", auth)], b"");
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body).unwrap()
}

#[test]
fn events_acknowledged_while_the_database_is_down_survive_a_kill_9() {
    let Some(pg) = Postgres::start() else { return };
    let db = "spooled";
    let mut p = platform_on(&pg, db);
    let key = admin_key(&p.data);
    let auth = basic(&key.id, &key.secret);
    p.stop_and_restart();
    let has = |p: &Platform, line: &str| metrics(p, &auth).lines().any(|l| l == line);
    within(STORED_WITHIN, "connected", || {
        has(&p, "tern_historian_pg_connected 1").then_some(())
    });

    pg.stop_fast();
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(0, 200));
    // Stored: in the spool, on disk, before the historian counts them.
    within(STORED_WITHIN, "200 events spooled", || {
        (has(&p, "tern_historian_stored_total 200") && has(&p, "tern_historian_pg_buffered 200")).then_some(())
    });
    assert!(has(&p, "tern_historian_pg_connected 0"));
    drop(device);
    p.kill_and_restart();
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_contains("200 events buffered by an earlier run wait"),
        "the spool read back at start"
    );
    assert!(has(&p, "tern_historian_pg_buffered 200"));

    pg.start_server();
    wait_rows(&pg, db, 200);
    assert!(broker.log_contains("buffered events caught up with PostgreSQL"));
    let numbers: Vec<String> = rows(&pg, db, "body #>> '{d,n}'");
    let expected: Vec<String> = (0..200).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected);
    within(STORED_WITHIN, "the spool empty", || {
        has(&p, "tern_historian_pg_buffered 0").then_some(())
    });
    assert!(has(&p, "tern_historian_pg_dropped_total 0"));
}

#[test]
fn retention_deletes_old_and_oversize_events_from_postgresql() {
    let Some(pg) = shared() else { return };
    let db = "retention";
    let mut p = platform_on(pg, db);
    // The same broker with its test clock on.
    let config = std::fs::read_to_string(&p.config).unwrap();
    p.broker.take().unwrap().stop();
    p.broker = Some(Broker::with_test_clock("mosquitto.conf", &config));
    p.call(
        &p.admin,
        "PUT",
        "/config/historian",
        Some(json!({"enabled": true, "retentionDays": 1})),
    )
    .ok(200);
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(0, 5));
    wait_rows(pg, db, 5);
    // Half a day later, two more; a day and a bit after the first five, they go.
    p.broker.as_mut().unwrap().advance_clock(43_200);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(5, 2));
    wait_rows(pg, db, 7);
    p.broker.as_mut().unwrap().advance_clock(50_000);
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_contains("historian: retention removed 5 events of za6xa7"),
        "the retention sweep"
    );
    assert_eq!(rows(pg, db, "body #>> '{d,n}'"), ["5", "6"]);
    // By size, counted in SQL: room for one event, so a newer one pushes both out.
    let newest = temps(7, 1);
    let room = newest[0].len() + "json".len() + 13;
    p.call(
        &p.admin,
        "PUT",
        "/config/historian",
        Some(json!({"enabled": true, "retentionDays": 1, "retentionBytes": room})),
    )
    .ok(200);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &newest);
    wait_rows(pg, db, 3);
    p.broker.as_mut().unwrap().advance_clock(60);
    let broker = p.broker.as_ref().unwrap();
    assert!(
        broker.log_contains(&format!(
            "historian: retention removed 2 events of za6xa7 (over {room} bytes)"
        )),
        "the retention sweep by size"
    );
    assert_eq!(rows(pg, db, "body #>> '{d,n}'"), ["7"]);
}
