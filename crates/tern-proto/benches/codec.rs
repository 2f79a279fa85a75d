#![allow(clippy::unwrap_used)]
//! Codec throughput: decode and encode of a 16-byte and a 1 KiB PUBLISH, a CONNECT with
//! properties, and the encode-once fan-out path (`PublishFrame::write`).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tern_proto::*;

fn publish(size: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteStr::from_static("sensors/building-1/floor-2/temperature"),
        packet_id: 42,
        properties: Properties::default(),
        payload: Bytes::from(vec![0x5A; size]),
    })
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol_version: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteStr::from_static("device-0001"),
        will: None,
        username: Some(ByteStr::from_static("user")),
        password: Some(Bytes::from_static(b"secret")),
        properties: Properties(vec![
            Property::SessionExpiryInterval(3600),
            Property::ReceiveMaximum(100),
            Property::MaximumPacketSize(1 << 20),
            Property::TopicAliasMaximum(10),
            Property::UserProperty((ByteStr::from_static("site"), ByteStr::from_static("lab"))),
        ]),
    }))
}

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let mut wire = BytesMut::new();
    encode(packet, version, &mut wire).unwrap();
    let wire = wire.freeze();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    // The input buffer is built in the untimed setup: only decoding is measured.
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| black_box(decode(&mut buf, version, usize::MAX).unwrap()),
            BatchSize::SmallInput,
        )
    });
    // As a broker reads: many packets in one buffer, split off one after another.
    let stream: Vec<u8> = wire.iter().copied().cycle().take(wire.len() * 1000).collect();
    group.throughput(Throughput::Elements(1000));
    group.bench_function("decode_stream_x1000", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                while let Some(p) = decode(&mut buf, version, usize::MAX).unwrap() {
                    black_box(p);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    let mut out = BytesMut::with_capacity(wire.len() * 2);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(packet), version, &mut out).unwrap();
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_packet(c, "publish_16B_v311", &publish(16), ProtocolVersion::V3_1_1);
    bench_packet(c, "publish_1KiB_v311", &publish(1024), ProtocolVersion::V3_1_1);
    bench_packet(c, "publish_16B_v5", &publish(16), ProtocolVersion::V5);
    bench_packet(c, "connect_v5_properties", &connect(), ProtocolVersion::V5);

    let Packet::Publish(p) = publish(16) else {
        unreachable!()
    };
    let frame = PublishFrame::new(&p, ProtocolVersion::V3_1_1).unwrap();
    let mut out = BytesMut::with_capacity(64 * 1024);
    c.bench_function("publish_16B_frame_write", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            frame.write(&mut out, black_box(7), false);
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
