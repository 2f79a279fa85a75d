//! Query timings on the embedded historian store with a month of data (issue 17: "queries
//! over a month of one device's minute data answer in well under a second on the
//! embedded store, with 10 M stored events"; "a query can never make the broker drop
//! messages").
//!
//! Fills a store through the library (`EmbeddedStore::append_series`, as the broker's
//! consumer does) with 30 days of minute data of `DEVICES` devices (default 232:
//! 232 x 43,200 = 10,022,400 events), device `dev0` among them, each event
//! `{"d":{"temp":...}}`, then times what the REST API does for `dev0` (the answer's JSON
//! built, HTTP left out): the first page, a page from the middle through a bookmark, every
//! page of the month, `count` per day, `avg` per hour and per day, `max` per minute over a
//! day; each ROUNDS times, median (min to max). Last, a writer appends a 1000-event batch
//! every 100 ms (10,000 events a second, the consumer's pace at that rate) while four
//! threads run month-long aggregates without pause: the batches' write times with and
//! without the queries show whether a query holds up storing.
//!
//! ```sh
//! cargo bench -p tern-platform --bench historian_query
//! DEVICES=24 cargo bench -p tern-platform --bench historian_query   # ~1 M events
//! STORE=/tmp/hq cargo bench ...   # keep the store there; a second run reuses it
//! ```

use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_platform::historian::{EventQuery, HistorianBackend};
use tern_platform::historian_batch::{SeriesBatch, SeriesEvent};
use tern_platform::historian_embedded::EmbeddedStore;
use tern_platform::historian_query::{aggregate, page_json, AggKind, Aggregate};

const MINUTE: u64 = 60_000;
const MINUTES: u64 = 30 * 24 * 60;
/// 2026-11-01T00:00:00Z: the month stored.
const START: u64 = 1_793_491_200_000;
const END: u64 = START + MINUTES * MINUTE;
/// Minutes of data per `append_series` call while loading.
const LOAD_MINUTES: u64 = 10;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn temp(device: u64, minute: u64) -> f64 {
    20.0 + ((device * 7 + minute) % 100) as f64 / 10.0
}

fn payload(device: u64, minute: u64) -> Bytes {
    Bytes::from(format!("{{\"d\":{{\"temp\":{:.1}}}}}", temp(device, minute)))
}

/// The batch of minutes `from..to` of every device: one series each.
fn batch(devices: u64, from: u64, to: u64) -> Vec<SeriesBatch> {
    let format: Arc<str> = Arc::from("json");
    (0..devices)
        .map(|d| SeriesBatch {
            org: "bench1".into(),
            type_id: "sensor".into(),
            device_id: format!("dev{d}"),
            event_id: "temp".into(),
            events: (from..to)
                .map(|m| SeriesEvent {
                    // Devices report at their own second of the minute.
                    timestamp_ms: START + m * MINUTE + (d * 250) % MINUTE,
                    format: format.clone(),
                    payload: payload(d, m),
                })
                .collect(),
        })
        .collect()
}

fn load(store: &EmbeddedStore, devices: u64) {
    let t0 = Instant::now();
    let mut m = 0;
    while m < MINUTES {
        let to = (m + LOAD_MINUTES).min(MINUTES);
        store.append_series(&batch(devices, m, to)).expect("append");
        m = to;
        if m % (MINUTES / 10) == 0 {
            eprintln!("  loaded {} of {MINUTES} minutes ({:.0?})", m, t0.elapsed());
        }
    }
    let n = devices * MINUTES;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "loaded {n} events ({devices} devices x {MINUTES} minutes) in {secs:.1} s ({:.0} events/s)",
        n as f64 / secs
    );
}

fn query(limit: usize) -> EventQuery {
    EventQuery {
        org: "bench1".into(),
        type_id: "sensor".into(),
        device_id: "dev0".into(),
        event_id: "temp".into(),
        start_ms: START,
        end_ms: END,
        limit,
        after: None,
    }
}

/// Runs `f` `rounds` times; prints the median and range, and what the last run said.
fn time(what: &str, rounds: usize, mut f: impl FnMut() -> String) {
    let mut times = Vec::new();
    let mut answer = String::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        answer = f();
        times.push(t0.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {what} | {:.1} ms ({:.1} to {:.1}) | {answer} |",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

fn agg(store: &EmbeddedStore, kind: AggKind, interval_ms: u64, start_ms: u64, end_ms: u64) -> Value {
    let field = if kind == AggKind::Count {
        Vec::new()
    } else {
        vec!["d".to_string(), "temp".to_string()]
    };
    let a = Aggregate {
        kind,
        interval_ms,
        field,
    };
    let q = EventQuery {
        start_ms,
        end_ms,
        ..query(1000)
    };
    aggregate(store, q, &a).expect("aggregate")
}

fn points(v: &Value) -> String {
    let points = v["points"].as_array().map_or(&[][..], |p| p.as_slice());
    let sum: f64 = points.iter().filter_map(|p| p["value"].as_f64()).sum();
    format!("{} points, values summing to {sum:.1}", points.len())
}

fn queries(store: &EmbeddedStore, rounds: usize) {
    println!("| query (dev0, 43,200 events in the month) | median (min to max) of {rounds} | answer |");
    println!("|---|---|---|");
    time("first page of 1000 of the month", rounds, || {
        let page = store.query(&query(1000)).expect("query");
        let json = page_json(&page).to_string();
        format!("{} events, {} bytes of JSON", page.events.len(), json.len())
    });
    // The bookmark after 21 pages: the middle of the month.
    let mut q = query(1000);
    for _ in 0..21 {
        q.after = store.query(&q).expect("query").bookmark;
    }
    time("a page of 1000 from the middle (bookmark)", rounds, || {
        let page = store.query(&q).expect("query");
        let json = page_json(&page).to_string();
        let first = page.events.first().map_or(0, |e| e.timestamp_ms);
        format!(
            "{} events from minute {}, {} bytes of JSON",
            page.events.len(),
            (first - START) / MINUTE,
            json.len()
        )
    });
    time("every page of the month (44 pages)", rounds, || {
        let (mut q, mut n, mut pages) = (query(1000), 0, 0);
        loop {
            let page = store.query(&q).expect("query");
            n += page.events.len();
            pages += 1;
            let _ = page_json(&page).to_string();
            match page.bookmark {
                Some(b) => q.after = Some(b),
                None => break,
            }
        }
        format!("{n} events in {pages} pages")
    });
    time("agg=count, interval=1d, the month", rounds, || {
        points(&agg(store, AggKind::Count, 86_400_000, START, END))
    });
    time("agg=avg, field=d.temp, interval=1h, the month", rounds, || {
        points(&agg(store, AggKind::Avg, 3_600_000, START, END))
    });
    time("agg=avg, field=d.temp, interval=1d, the month", rounds, || {
        points(&agg(store, AggKind::Avg, 86_400_000, START, END))
    });
    time("agg=max, field=d.temp, interval=1m, one day", rounds, || {
        points(&agg(store, AggKind::Max, MINUTE, START, START + 1440 * MINUTE))
    });
}

/// A writer at 10,000 events a second (a 1000-event batch every 100 ms, new minutes
/// after the month) for `secs`, with `readers` threads running month-long aggregates
/// meanwhile; the batches' write times and the queries run.
fn writes_under_queries(store: &Arc<EmbeddedStore>, readers: usize, secs: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..readers {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                agg(&store, AggKind::Avg, 3_600_000, START, END);
                n += 1;
            }
            n
        }));
    }
    let t0 = Instant::now();
    let mut times = Vec::new();
    let mut stored = 0;
    let mut tick = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        // 1000 events: 100 devices' events of one new minute... of 10 minutes of the next month.
        let from = MINUTES + 10 * tick;
        let batch: Vec<SeriesBatch> = batch(100, from, from + 10);
        let w0 = Instant::now();
        store.append_series(&batch).expect("append");
        times.push(w0.elapsed());
        stored += batch.iter().map(|s| s.events.len()).sum::<usize>();
        tick += 1;
        let next = t0 + Duration::from_millis(100 * tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let queries: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {readers} | {queries} | {stored} ({:.0}/s) | {:.1} / {:.1} / {:.1} |",
        stored as f64 / elapsed,
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100]),
        ms(times[times.len() - 1])
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and `cargo test --benches`: nothing to list or run.
        return;
    }
    let devices = env("DEVICES", 232);
    let rounds = env("ROUNDS", 5) as usize;
    let (dir, keep): (PathBuf, bool) = match std::env::var_os("STORE") {
        Some(dir) => (dir.into(), true),
        None => (
            std::env::temp_dir().join(format!("tern-historian-query-{}", std::process::id())),
            false,
        ),
    };
    let path = tern_platform::historian_embedded::store_path(&dir);
    let fresh = !path.exists();
    let store = Arc::new(EmbeddedStore::open(&dir).expect("open the store"));
    if fresh {
        load(&store, devices);
    } else {
        println!("reusing the store in {}", dir.display());
    }
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!("store: {} ({:.0} MiB)\n", path.display(), size as f64 / 1048576.0);
    queries(&store, rounds);
    println!("\n| aggregate threads | aggregates done | events stored | batch write ms p50 / p99 / max |");
    println!("|---|---|---|---|");
    for readers in [0, 4] {
        writes_under_queries(&store, readers, env("WRITE_SECS", 10));
    }
    drop(store);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
