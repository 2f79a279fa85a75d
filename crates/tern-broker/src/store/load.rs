//! Reading the whole store at start-up. Records that do not decode are skipped and
//! counted; the broker reports them in one line and carries on with the rest.

use super::records::{MessageRecord, RetainedRecord, SessionRecord};
use super::{INCOMING, MESSAGES, RETAINED, SESSIONS};
use anyhow::Result;
use redb::{Database, ReadableTable};
use std::collections::BTreeMap;

/// One stored session with what belongs to it.
#[derive(Debug)]
pub struct LoadedSession {
    pub client_id: String,
    pub record: SessionRecord,
    /// By sequence number, oldest first.
    pub messages: Vec<(u64, MessageRecord)>,
    pub incoming_qos2: Vec<u16>,
}

/// Everything the store held.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<(String, RetainedRecord)>,
    /// Records that did not decode (left out).
    pub skipped: usize,
}

pub(super) fn read_all(db: &Database) -> Result<Loaded> {
    // Create the tables on first use, so reading never meets a missing table.
    let tx = db.begin_write()?;
    {
        tx.open_table(SESSIONS)?;
        tx.open_table(MESSAGES)?;
        tx.open_table(INCOMING)?;
        tx.open_table(RETAINED)?;
    }
    tx.commit()?;
    let tx = db.begin_read()?;
    let mut loaded = Loaded::default();
    let mut sessions: BTreeMap<String, LoadedSession> = BTreeMap::new();
    for entry in tx.open_table(SESSIONS)?.iter()? {
        let Ok((key, value)) = entry else {
            loaded.skipped += 1;
            continue;
        };
        match SessionRecord::decode(value.value()) {
            Some(record) => {
                let client_id = key.value().to_string();
                sessions.insert(
                    client_id.clone(),
                    LoadedSession {
                        client_id,
                        record,
                        messages: Vec::new(),
                        incoming_qos2: Vec::new(),
                    },
                );
            }
            None => loaded.skipped += 1,
        }
    }
    for entry in tx.open_table(MESSAGES)?.iter()? {
        let Ok((key, value)) = entry else {
            loaded.skipped += 1;
            continue;
        };
        let (client_id, seq) = key.value();
        match (sessions.get_mut(client_id), MessageRecord::decode(value.value())) {
            (Some(session), Some(record)) => session.messages.push((seq, record)),
            _ => loaded.skipped += 1,
        }
    }
    for entry in tx.open_table(INCOMING)?.iter()? {
        let Ok((key, _)) = entry else {
            loaded.skipped += 1;
            continue;
        };
        let (client_id, packet_id) = key.value();
        if let Some(session) = sessions.get_mut(client_id) {
            session.incoming_qos2.push(packet_id);
        }
    }
    for entry in tx.open_table(RETAINED)?.iter()? {
        let Ok((key, value)) = entry else {
            loaded.skipped += 1;
            continue;
        };
        match RetainedRecord::decode(value.value()) {
            Some(record) => loaded.retained.push((key.value().to_string(), record)),
            None => loaded.skipped += 1,
        }
    }
    loaded.sessions = sessions.into_values().collect();
    Ok(loaded)
}
