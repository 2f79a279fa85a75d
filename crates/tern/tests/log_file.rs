//! `log_dest file`: the broker writes its log to the file and, on SIGHUP, opens the file
//! under its name again, so logrotate can move it away (as Debian's
//! /etc/logrotate.d/mosquitto does: rotate, then `kill -HUP`).
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::{Duration, Instant};

fn wait_for_line(path: &std::path::Path, needle: &str) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|text| text.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sighup_reopens_the_log_file_after_logrotate_moved_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tern.log");
    let broker = Broker::with_config(
        "log.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest file {}\n",
            log.display()
        ),
    );
    let first = broker.connect(V311, "before-rotation");
    assert!(
        wait_for_line(&log, "before-rotation"),
        "the log file gets the connect line"
    );
    first.disconnect();

    let rotated = dir.path().join("tern.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    broker.signal(SIGHUP);
    assert!(
        wait_for_line(&log, "log file"),
        "SIGHUP opens the file under its name again"
    );
    let second = broker.connect(V311, "after-rotation");
    assert!(wait_for_line(&log, "after-rotation"), "new lines go to the new file");
    second.disconnect();
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("before-rotation") && !old.contains("after-rotation"));
}
