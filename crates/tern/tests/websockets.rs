//! MQTT over WebSocket (`protocol websockets`), over ws and wss: paho-mqtt's checks with
//! `transport="websockets"` under 3.1.1 and 5.0, and the WebSocket layer by hand over a
//! raw socket (the upgrade answer, packets spanning frames, ping, close, refusals with
//! the HTTP status or close code that names the fault, X-Forwarded-For).
#![allow(clippy::unwrap_used)]
mod common;
use common::pki::Ca;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use tern_proto::*;

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// A WebSocket client written for these tests: frames by hand, masked as RFC 6455 asks.
struct WsClient {
    stream: TcpStream,
    /// Bytes read past the last frame.
    pending: Vec<u8>,
}

impl WsClient {
    /// Sends the upgrade request with `extra` header lines; returns the client and the
    /// broker's whole HTTP answer.
    fn upgrade(addr: SocketAddr, extra: &str) -> (WsClient, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(format!("{UPGRADE}{extra}\r\n").as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => answer.push(byte[0]),
                _ => break,
            }
        }
        let mut client = WsClient {
            stream,
            pending: Vec::new(),
        };
        let answer = String::from_utf8_lossy(&answer).to_string();
        if let Some(length) = answer
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            let mut body = vec![0u8; length];
            client.stream.read_exact(&mut body).unwrap();
            return (client, answer + &String::from_utf8_lossy(&body));
        }
        (client, answer)
    }

    fn open(addr: SocketAddr) -> WsClient {
        let (client, answer) = WsClient::upgrade(addr, "Sec-WebSocket-Protocol: mqtt\r\n");
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        client
    }

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.stream.write_all(&WsClient::frame(opcode, payload)).unwrap();
    }

    fn send_packet(&mut self, packet: &Packet, version: ProtocolVersion) {
        let mut out = bytes::BytesMut::new();
        encode(packet, version, &mut out).unwrap();
        self.send_frame(0x82, &out);
    }

    /// The next frame: its first byte (FIN and opcode) and payload; `None` once closed.
    fn recv_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.pending.len() >= 2 {
                assert_eq!(self.pending[1] & 0x80, 0, "server frames are not masked");
                let (len, at) = match self.pending[1] & 0x7f {
                    126 if self.pending.len() >= 4 => {
                        (u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize, 4)
                    }
                    127 if self.pending.len() >= 10 => {
                        (u64::from_be_bytes(self.pending[2..10].try_into().unwrap()) as usize, 10)
                    }
                    n @ 0..=125 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.pending.len() >= at + len {
                    let first = self.pending[0];
                    let payload = self.pending[at..at + len].to_vec();
                    self.pending.drain(..at + len);
                    return Some((first, payload));
                }
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next MQTT packet from the byte stream the binary frames carry, whatever the
    /// frame boundaries.
    fn recv_streamed(&mut self, stream: &mut bytes::BytesMut, version: ProtocolVersion) -> Packet {
        loop {
            if let Some(packet) = decode(stream, version, usize::MAX).unwrap() {
                return packet;
            }
            let (first, payload) = self.recv_frame().expect("a frame");
            assert!(
                first == 0x82 || first == 0x80,
                "binary or continuation frame, got {first:#x}"
            );
            stream.extend_from_slice(&payload);
        }
    }

    /// The next MQTT packet, from binary frames (each holding whole packets here).
    fn recv_packet(&mut self, version: ProtocolVersion) -> Packet {
        let (first, payload) = self.recv_frame().expect("a frame");
        assert_eq!(first, 0x82, "a final binary frame");
        let mut buf = bytes::BytesMut::from(&payload[..]);
        decode(&mut buf, version, usize::MAX).unwrap().expect("a whole packet")
    }
}

fn subscription(filter: &str) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        },
    }
}

fn ws_broker(extra: &str) -> Broker {
    let conf =
        format!("listener 0 127.0.0.1\nlistener 0 127.0.0.1\nprotocol websockets\n{extra}\nallow_anonymous true\n");
    Broker::with_config("ws.conf", &conf)
}

#[test]
fn paho_clients_pass_their_checks_over_ws_and_wss_under_3_1_1_and_5() {
    if !peer_available(
        "paho-mqtt (pip install paho-mqtt)",
        python_module_exists("paho.mqtt.client"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ws");
    let (cert, key) = ca.server("server");
    let conf = format!(
        "allow_anonymous true\nlistener 0 127.0.0.1\nprotocol websockets\nlistener 0 127.0.0.1\nprotocol websockets\ncertfile {}\nkeyfile {}\n",
        cert.display(),
        key.display()
    );
    let broker = Broker::with_config("wss.conf", &conf);
    let addrs = broker.listening_addrs();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_check.py");
    let cafile = ca.cafile();
    for (transport, port) in [("ws", addrs[0].port()), ("wss", addrs[1].port())] {
        for version in ["3.1.1", "5"] {
            let out = Command::new("python3")
                .args([
                    script,
                    "localhost",
                    &port.to_string(),
                    version,
                    transport,
                    cafile.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("0 failed"),
                "paho {version} over {transport}:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn upgrade_answer_and_packets_across_frames_under_both_versions() {
    let broker = ws_broker("");
    let ws_addr = broker.listening_addrs()[1];
    for version in VERSIONS {
        let (mut ws, answer) = WsClient::upgrade(ws_addr, "Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n");
        // RFC 6455 section 1.3's key and accept value; the first MQTT subprotocol offered.
        assert_eq!(
            answer,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqttv3.1\r\n\r\n"
        );
        let mut connect = bytes::BytesMut::new();
        let id = format!("ws-{version:?}");
        encode(
            &Packet::Connect(Box::new(connect_packet(version, &id, true, 60))),
            version,
            &mut connect,
        )
        .unwrap();
        let mut subscribe = bytes::BytesMut::new();
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: vec![subscription("ws/+")],
            properties: Properties::default(),
        });
        encode(&packet, version, &mut subscribe).unwrap();
        // CONNECT split over two frames of one fragmented message, SUBSCRIBE in the
        // second half's frame, a ping between them.
        let (a, b) = connect.split_at(5);
        ws.send_frame(0x02, a);
        ws.send_frame(0x89, b"are you there");
        ws.send_frame(0x80, &[b, &subscribe[..]].concat());
        let (first, pong) = ws.recv_frame().unwrap();
        assert_eq!((first, &pong[..]), (0x8a, &b"are you there"[..]));
        match version {
            V5 => {
                let Packet::ConnectAck(ack) = ws.recv_packet(version) else {
                    panic!()
                };
                assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
            }
            _ => assert_eq!(ws.recv_frame().unwrap(), (0x82, b"\x20\x02\x00\x00".to_vec())),
        }
        assert!(matches!(ws.recv_packet(version), Packet::SubscribeAck(_)));
        // A plain TCP client's message reaches the WebSocket subscriber.
        let mut tcp = broker.connect(version, &format!("tcp-{version:?}"));
        tcp.publish("ws/a", b"over tcp", QoS::AtLeastOnce, false, 7);
        let Packet::Publish(publish) = ws.recv_packet(version) else {
            panic!()
        };
        assert_eq!((&publish.topic[..], &publish.payload[..]), ("ws/a", &b"over tcp"[..]));
        ws.send_packet(&Packet::PublishAck(PublishResponse::new(publish.packet_id)), version);
        // A close frame is echoed with its code, and the broker ends the stream.
        ws.send_frame(0x88, &1000u16.to_be_bytes());
        assert_eq!(ws.recv_frame(), Some((0x88, 1000u16.to_be_bytes().to_vec())));
        assert_eq!(ws.recv_frame(), None);
        broker.wait_closed(&id);
    }
}

#[test]
fn a_session_moves_between_websocket_and_tcp() {
    let broker = ws_broker("");
    let ws_addr = broker.listening_addrs()[1];
    let mut ws = WsClient::open(ws_addr);
    let mut connect = connect_packet(V311, "mover", false, 60);
    connect.clean_start = false;
    ws.send_packet(&Packet::Connect(Box::new(connect)), V311);
    assert!(matches!(ws.recv_packet(V311), Packet::ConnectAck(_)));
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        subscriptions: vec![subscription("move/#")],
        properties: Properties::default(),
    });
    ws.send_packet(&subscribe, V311);
    assert!(matches!(ws.recv_packet(V311), Packet::SubscribeAck(_)));
    // Taken over by a TCP connection with the same client id: the WebSocket one is closed
    // (close frame, then the end of the stream) and the session is the newcomer's.
    let mut tcp = Client::open(broker.addr, V311);
    let mut again = connect_packet(V311, "mover", false, 60);
    again.clean_start = false;
    let ack = tcp.connect(&again);
    assert!(ack.session_present);
    let mut closed = false;
    while let Some((first, _)) = ws.recv_frame() {
        closed |= first == 0x88;
    }
    assert!(closed, "a close frame before the end of the stream");
    let mut other = broker.connect(V311, "pub");
    other.publish("move/1", b"x", QoS::AtLeastOnce, false, 1);
    assert_eq!(&tcp.recv_publish().payload[..], b"x");
}

#[test]
fn upgrade_refusals_answer_with_the_status_naming_the_fault() {
    let broker = ws_broker(
        "websockets_path /mqtt\nwebsockets_origins https://app.example\nwebsockets_require_subprotocol true\nwebsockets_headers_size 2048",
    );
    let addr = broker.listening_addrs()[1];
    let cases: [(&str, &str, &str); 4] = [
        (
            "Origin: https://evil.example\r\nSec-WebSocket-Protocol: mqtt\r\n",
            "403 Forbidden",
            "origin",
        ),
        ("Origin: https://app.example\r\n", "400 Bad Request", "subprotocol"),
        (
            &"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(40),
            "431",
            "2048",
        ),
        (
            "Origin: https://app.example\r\nSec-WebSocket-Protocol: mqtt\r\n",
            "101",
            "",
        ),
    ];
    for (extra, status, word) in cases {
        let (_, answer) = WsClient::upgrade(addr, extra);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {answer}");
        assert!(answer.contains(word), "{answer}");
    }
    // Another path is not this listener's.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(UPGRADE.replace("/mqtt", "/other").as_bytes()).unwrap();
    stream.write_all(b"Sec-WebSocket-Protocol: mqtt\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 404 Not Found"), "{answer}");
    assert!(broker.log_contains("WebSocket upgrade refused (404 Not Found)"));
    // Only version 13 of the protocol is spoken.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let old_version = UPGRADE.replace("Version: 13", "Version: 8");
    stream
        .write_all(format!("{old_version}Sec-WebSocket-Protocol: mqtt\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"), "{answer}");
    // A plain HTTP request is not an upgrade.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required"), "{answer}");
}

#[test]
fn bad_frames_cost_only_their_connection_with_a_close_code() {
    let broker = ws_broker("message_size_limit 1000\nmax_packet_size 2000");
    let addr = broker.listening_addrs()[1];
    let mut bystander = broker.connect(V5, "bystander");
    let too_big = vec![0u8; 5000];
    let cases: [(Vec<u8>, u16, &str); 4] = [
        (WsClient::frame(0x81, b"\x10"), 1003, "text frame"),
        (vec![0x82, 0x01, 0x10], 1002, "unmasked"),
        (WsClient::frame(0x82, &too_big), 1009, "message of 5000 bytes"),
        (
            WsClient::frame(0x80, b"\x10"),
            1002,
            "continuation frame outside a message",
        ),
    ];
    for (frame, code, word) in cases {
        let mut ws = WsClient::open(addr);
        ws.stream.write_all(&frame).unwrap();
        assert_eq!(ws.recv_frame(), Some((0x88, code.to_be_bytes().to_vec())), "{word}");
        assert_eq!(ws.recv_frame(), None, "{word}: the stream ends");
        assert!(broker.log_contains(word), "{word}");
    }
    // An MQTT packet over the broker's maximum spread over small frames is refused by the
    // MQTT layer, as over TCP.
    let mut ws = WsClient::open(addr);
    ws.send_packet(&Packet::Connect(Box::new(connect_packet(V5, "big", true, 60))), V5);
    assert!(matches!(ws.recv_packet(V5), Packet::ConnectAck(_)));
    let publish = publish_packet("t", &vec![b'x'; 3000], QoS::AtMostOnce, false, 0);
    let mut bytes = bytes::BytesMut::new();
    encode(&publish, V5, &mut bytes).unwrap();
    ws.send_frame(0x02, &bytes[..100]);
    let Packet::Disconnect(disconnect) = ws.recv_packet(V5) else {
        panic!()
    };
    assert_eq!(disconnect.reason_code, ReasonCode::PACKET_TOO_LARGE);
    bystander.ping();
}

#[test]
fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let trusted = ws_broker("websockets_trusted_proxies 127.0.0.1");
    let untrusted = ws_broker("websockets_trusted_proxies 192.0.2.1");
    for (broker, shown) in [(&trusted, "198.51.100.7"), (&untrusted, "127.0.0.1")] {
        let addr = broker.listening_addrs()[1];
        let (mut ws, answer) = WsClient::upgrade(addr, "X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n");
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        ws.send_packet(
            &Packet::Connect(Box::new(connect_packet(V311, "proxied", true, 60))),
            V311,
        );
        assert!(matches!(ws.recv_packet(V311), Packet::ConnectAck(_)));
        assert!(
            broker.log_line(&["client connected", &format!("peer={shown}:"), "client=proxied"]),
            "{shown}"
        );
    }
}

#[test]
fn a_socket_that_never_upgrades_is_closed_after_the_connect_timeout() {
    let conf = "connect_timeout = 1\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nprotocol = \"websockets\"\n";
    let broker = Broker::with_config("ws.toml", conf);
    let addr = broker.addr;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"GET /mqtt HTTP/1.1\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "closed by the broker");
}

#[test]
fn a_slow_reader_gets_every_message_whole_and_in_order() {
    // websockets_log_level is mosquitto's libwebsockets debug level: accepted, no effect.
    let broker = ws_broker("websockets_log_level 255");
    let ws_addr = broker.listening_addrs()[1];
    let mut ws = WsClient::open(ws_addr);
    ws.send_packet(&Packet::Connect(Box::new(connect_packet(V5, "slow", true, 60))), V5);
    assert!(matches!(ws.recv_packet(V5), Packet::ConnectAck(_)));
    ws.send_packet(
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: vec![subscription("big/#")],
            properties: Properties::default(),
        }),
        V5,
    );
    assert!(matches!(ws.recv_packet(V5), Packet::SubscribeAck(_)));
    // 8 MB while the WebSocket client reads nothing: the socket fills, frames are cut
    // where the socket stopped taking bytes, and the rest follows later.
    let mut publisher = broker.connect(V5, "fast");
    let payload = vec![b'w'; 64 * 1024];
    for i in 0..128u16 {
        publisher.publish(&format!("big/{i}"), &payload, QoS::AtLeastOnce, false, i + 1);
    }
    let mut stream = bytes::BytesMut::new();
    for i in 0..128u16 {
        let Packet::Publish(p) = ws.recv_streamed(&mut stream, V5) else {
            panic!("a PUBLISH")
        };
        assert_eq!(&p.topic[..], format!("big/{i}"));
        assert_eq!(p.payload.len(), payload.len());
        ws.send_packet(&Packet::PublishAck(PublishResponse::new(p.packet_id)), V5);
    }
}

#[test]
fn paho_passes_an_origin_check_with_the_brokers_own_origin() {
    if !peer_available(
        "paho-mqtt (pip install paho-mqtt)",
        python_module_exists("paho.mqtt.client"),
    ) {
        return;
    }
    let broker = ws_broker("websockets_origins https://app.example");
    let port = broker.listening_addrs()[1].port();
    // paho-mqtt sends `Origin: http://<host>:<port>`, the broker's own origin.
    let script = format!(
        "import paho.mqtt.client as m\n\
         c = m.Client(m.CallbackAPIVersion.VERSION2, client_id='paho-origin', transport='websockets')\n\
         c.connect('127.0.0.1', {port})\n\
         c.loop_start()\n\
         info = c.publish('origin/ok', b'x', qos=1)\n\
         info.wait_for_publish(20)\n\
         print('published' if info.is_published() else 'not published')\n\
         c.disconnect()\n"
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("published") && !stdout.contains("not"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
