//! Publisher and subscriber tasks of the load generator.
//!
//! A publisher writes pre-encoded frames in batches (one `write` per batch), at a fixed
//! offered rate (open loop: it never waits for the broker to catch up) or as fast as the
//! socket takes them; QoS 1/2 publishers keep a bounded window of unacknowledged messages.
//! A subscriber acknowledges in batches and records end-to-end latency from the
//! timestamp in each payload, counting duplicates instead of hiding them.

use super::wire::{now_nanos, read_header, Frame, Raw};
use anyhow::Result;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::*;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

pub struct Publisher {
    pub raw: Raw,
    pub frame: Frame,
    pub qos: QoS,
    /// Messages per second offered; 0: as fast as possible.
    pub rate: u64,
    /// Messages per write when sending as fast as possible.
    pub batch: usize,
    /// Unacknowledged QoS 1/2 messages allowed.
    pub inflight: usize,
    /// Stop after this many messages (0: no limit).
    pub count: u64,
}

/// Runs until `stop` (or `count`) and returns how many messages were sent.
pub async fn publish(p: Publisher, stop: Instant, progress: Arc<Progress>) -> Result<u64> {
    let Raw {
        mut reader,
        mut writer,
        mut input,
        version,
    } = p.raw;
    let window = Arc::new(Semaphore::new(if p.qos == QoS::AtMostOnce { 0 } else { p.inflight }));
    let (release_tx, mut release_rx) = mpsc::unbounded_channel::<u16>();
    let acks = window.clone();
    let reading = tokio::spawn(async move {
        loop {
            match decode(&mut input, version, usize::MAX) {
                Ok(Some(Packet::PublishAck(_) | Packet::PublishComplete(_))) => acks.add_permits(1),
                Ok(Some(Packet::PublishReceived(r))) => {
                    let _ = release_tx.send(r.packet_id);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    input.reserve(16 * 1024);
                    match reader.read_buf(&mut input).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                Err(_) => return,
            }
        }
    });
    let started = Instant::now();
    let mut out = BytesMut::with_capacity(256 * 1024);
    let (mut sent, mut packet_id) = (0u64, 0u16);
    let tick = Duration::from_millis(1);
    while Instant::now() < stop && (p.count == 0 || sent < p.count) {
        let mut n = if p.rate == 0 {
            p.batch as u64
        } else {
            let due = (started.elapsed().as_secs_f64() * p.rate as f64) as u64;
            due.saturating_sub(sent)
        };
        if p.count != 0 {
            n = n.min(p.count - sent);
        }
        if p.qos != QoS::AtMostOnce && n > 0 {
            // Take what the window allows now, waiting for at least one if it is empty.
            let available = (window.available_permits() as u64).min(n);
            n = if available == 0 {
                tokio::select! {
                    permit = window.acquire() => { permit?.forget(); 1 }
                    Some(id) = release_rx.recv() => { release(&mut out, id, version); 0 }
                    () = tokio::time::sleep_until(stop) => 0,
                }
            } else {
                if let Ok(permits) = window.try_acquire_many(available as u32) {
                    permits.forget();
                }
                available
            };
        }
        while let Ok(id) = release_rx.try_recv() {
            release(&mut out, id, version);
        }
        for _ in 0..n {
            packet_id = if packet_id == u16::MAX { 1 } else { packet_id + 1 };
            p.frame.write(&mut out, packet_id, sent as u32);
            sent += 1;
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
            progress.sent.fetch_add(n, Relaxed);
        }
        if p.rate != 0 {
            tokio::time::sleep(tick).await;
        }
    }
    // Let QoS 1/2 flows finish: every permit back (PUBREL still to be sent on the way).
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.qos != QoS::AtMostOnce && window.available_permits() < p.inflight && Instant::now() < deadline {
        tokio::select! {
            Some(id) = release_rx.recv() => {
                release(&mut out, id, version);
                writer.write_all(&out).await?;
                out.clear();
            }
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    let mut bye = BytesMut::new();
    encode(&Packet::Disconnect(Disconnect::default()), version, &mut bye)?;
    let _ = writer.write_all(&bye).await;
    reading.abort();
    Ok(sent)
}

fn release(out: &mut BytesMut, id: u16, version: ProtocolVersion) {
    let _ = encode(&Packet::PublishRelease(PublishResponse::new(id)), version, out);
}

/// What one subscriber saw.
pub struct Received {
    pub messages: u64,
    pub duplicates: u64,
    /// When the last message arrived.
    pub last_at: Option<Instant>,
    /// End-to-end latency in microseconds.
    pub latency: Histogram<u64>,
}

/// Reads until `expected` (known once `done` is set) messages came, or `done` is set and
/// nothing arrived for `idle`.
pub async fn subscribe(
    raw: Raw,
    expected: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    idle: Duration,
    progress: Arc<Progress>,
) -> Result<Received> {
    let Raw {
        mut reader,
        mut writer,
        mut input,
        version,
    } = raw;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut messages, mut duplicates) = (0u64, 0u64);
    let mut last_at = None;
    let mut last_sequence: HashMap<u32, u32> = HashMap::new();
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut batch = 0u64;
        while let Some(packet) = decode(&mut input, version, usize::MAX)? {
            match packet {
                Packet::Publish(p) => {
                    if let Some((sent_at, sequence, publisher)) = read_header(&p.payload) {
                        let micros = now_nanos().saturating_sub(sent_at) / 1000;
                        let _ = latency.record(micros.max(1));
                        // Delivery is in order per publisher, so a sequence not above the last
                        // one seen from that publisher is a duplicate.
                        match last_sequence.get(&publisher) {
                            Some(&previous) if sequence <= previous => duplicates += 1,
                            _ => {
                                last_sequence.insert(publisher, sequence);
                            }
                        }
                    }
                    batch += 1;
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => encode(
                            &Packet::PublishAck(PublishResponse::new(p.packet_id)),
                            version,
                            &mut out,
                        )?,
                        QoS::ExactlyOnce => encode(
                            &Packet::PublishReceived(PublishResponse::new(p.packet_id)),
                            version,
                            &mut out,
                        )?,
                    }
                }
                Packet::PublishRelease(r) => encode(
                    &Packet::PublishComplete(PublishResponse::new(r.packet_id)),
                    version,
                    &mut out,
                )?,
                _ => {}
            }
        }
        if batch > 0 {
            messages += batch;
            last_at = Some(Instant::now());
            progress.received.fetch_add(batch, Relaxed);
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
        if done.load(Relaxed) && messages >= expected.load(Relaxed) + duplicates {
            break;
        }
        if input.capacity() - input.len() < 16 * 1024 {
            input.reserve(64 * 1024);
        }
        let wait = if done.load(Relaxed) {
            idle
        } else {
            Duration::from_millis(200)
        };
        match tokio::time::timeout(wait, reader.read_buf(&mut input)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) if done.load(Relaxed) => break,
            Err(_) => {}
        }
    }
    let mut bye = BytesMut::new();
    encode(&Packet::Disconnect(Disconnect::default()), version, &mut bye)?;
    let _ = writer.write_all(&bye).await;
    Ok(Received {
        messages,
        duplicates,
        last_at,
        latency,
    })
}
