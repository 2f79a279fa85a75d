//! The historian consumer's batch: events grouped by series as they arrive, and the cache
//! that tells, per topic, which series (if any) a published message belongs to.
//!
//! At full speed the consumer sees hundreds of thousands of messages a second on the same
//! few topics, so what it does per message is kept to a hash lookup (or, for the same
//! topic as the message before, one comparison) and a push: the topic is split, its
//! organization's settings asked and its ids copied once per topic, not per message. A
//! batch hands each series' ids to the store once ([`SeriesBatch`]), with its events in
//! arrival order, so the store neither sorts nor compares ids per event.
//!
//! The cache answers for the settings it was filled under: it is emptied when an
//! organization's settings or the `historian_topic` lines change, and when it holds more
//! than [`MAX_TOPICS`] topics (a flood of distinct topics costs memory up to that bound,
//! then the same work per message as without a cache).

use crate::historian::{Historian, StoredEvent};
use crate::lec::event_of;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Most topics (and series) the cache remembers before it starts again.
pub const MAX_TOPICS: usize = 100_000;

/// One event of a series: when the broker took it, its format, its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEvent {
    pub timestamp_ms: u64,
    pub format: Arc<str>,
    pub payload: Bytes,
}

/// One series' events of a batch: an organization's device and event id (or a
/// `historian_topic` store's topic), its events oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesBatch {
    pub org: String,
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    pub events: Vec<SeriesEvent>,
}

impl SeriesBatch {
    /// Its events as [`StoredEvent`]s (ids copied into each).
    pub fn stored_events(&self) -> impl Iterator<Item = StoredEvent> + '_ {
        self.events.iter().map(|e| StoredEvent {
            org: self.org.clone(),
            type_id: self.type_id.clone(),
            device_id: self.device_id.clone(),
            event_id: self.event_id.clone(),
            format: e.format.to_string(),
            timestamp_ms: e.timestamp_ms,
            payload: e.payload.clone(),
        })
    }

    /// Whether `e` is of this series.
    pub fn holds(&self, e: &StoredEvent) -> bool {
        self.org == e.org && self.type_id == e.type_id && self.device_id == e.device_id && self.event_id == e.event_id
    }
}

/// Groups events into series, keeping each series' events in the given order
/// ([`StoredEvent`]s in any order in, one [`SeriesBatch`] per series out, events sorted by
/// time).
pub fn group(events: &[StoredEvent]) -> Vec<SeriesBatch> {
    let mut sorted: Vec<&StoredEvent> = events.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.org, &a.type_id, &a.device_id, &a.event_id, a.timestamp_ms).cmp(&(
            &b.org,
            &b.type_id,
            &b.device_id,
            &b.event_id,
            b.timestamp_ms,
        ))
    });
    let mut out: Vec<SeriesBatch> = Vec::new();
    for e in sorted {
        if !out.last().is_some_and(|s| s.holds(e)) {
            out.push(SeriesBatch {
                org: e.org.clone(),
                type_id: e.type_id.clone(),
                device_id: e.device_id.clone(),
                event_id: e.event_id.clone(),
                events: Vec::new(),
            });
        }
        if let Some(series) = out.last_mut() {
            series.events.push(SeriesEvent {
                timestamp_ms: e.timestamp_ms,
                format: Arc::from(e.format.as_str()),
                payload: e.payload.clone(),
            });
        }
    }
    out
}

/// A series the cache knows, and where it is in the batch being filled.
#[derive(Debug)]
struct Series {
    ids: [String; 4],
    /// The batch ([`Batcher::epoch`]) `slot` belongs to.
    epoch: u64,
    slot: usize,
}

/// What the cache says of a topic: not stored, or stored in series `series` with this
/// format.
type Answer = Option<(usize, Arc<str>)>;

/// The consumer's batch being filled, and its cache of topics.
#[derive(Debug, Default)]
pub struct Batcher {
    topics: HashMap<Box<str>, Answer>,
    /// The last topic looked up, and its answer (a device's burst is one topic).
    last: Option<(Box<str>, Answer)>,
    series: Vec<Series>,
    series_of: HashMap<[String; 4], usize>,
    /// What the settings were when the cache was filled (their generation, and the
    /// `historian_topic` lines in force).
    settings: Option<(u64, usize)>,
    batch: Vec<SeriesBatch>,
    epoch: u64,
    events: usize,
}

impl Batcher {
    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Forgets what the cache knows if `historian`'s settings changed since it learnt it.
    /// Call before a run of [`Batcher::push`]es (a change of an organization's settings
    /// is also seen at each push; one of the `historian_topic` lines only here).
    pub fn check_settings(&mut self, historian: &Historian) {
        let topics = historian.configs.topics.all();
        let now = (historian.configs.generation(), Arc::as_ptr(&topics) as usize);
        if self.settings != Some(now) {
            self.topics.clear();
            self.last = None;
            self.settings = Some(now);
        }
    }

    /// Adds a published message to the batch if its topic is stored (as a device event
    /// its organization wants, or by a `historian_topic` line); whether it was.
    pub fn push(&mut self, historian: &Historian, topic: &str, payload: Bytes, timestamp_ms: u64) -> bool {
        let Some((series, format)) = self.answer(historian, topic) else {
            return false;
        };
        let entry = &mut self.series[series];
        if entry.epoch != self.epoch || entry.slot >= self.batch.len() {
            let [org, type_id, device_id, event_id] = entry.ids.clone();
            entry.epoch = self.epoch;
            entry.slot = self.batch.len();
            self.batch.push(SeriesBatch {
                org,
                type_id,
                device_id,
                event_id,
                events: Vec::new(),
            });
        }
        self.batch[entry.slot].events.push(SeriesEvent {
            timestamp_ms,
            format,
            payload,
        });
        self.events += 1;
        true
    }

    /// Whether messages on `topic` are stored.
    pub fn stores(&mut self, historian: &Historian, topic: &str) -> bool {
        self.answer(historian, topic).is_some()
    }

    fn answer(&mut self, historian: &Historian, topic: &str) -> Answer {
        // An organization's change is in force for the next message (one atomic load).
        if self.settings.map(|(generation, _)| generation) != Some(historian.configs.generation()) {
            self.check_settings(historian);
        }
        match &self.last {
            Some((last, answer)) if **last == *topic => answer.clone(),
            _ => {
                let answer = match self.topics.get(topic) {
                    Some(answer) => answer.clone(),
                    None => self.learn(historian, topic),
                };
                self.last = Some((topic.into(), answer.clone()));
                answer
            }
        }
    }

    /// What to do with messages on `topic`, asked of the settings and remembered.
    fn learn(&mut self, historian: &Historian, topic: &str) -> Answer {
        if self.topics.len() >= MAX_TOPICS {
            self.topics.clear();
        }
        let ids = match event_of(topic) {
            Some([org, t, d, e, f]) if historian.configs.wants(org, t, e) => {
                Some(([org, t, d, e].map(str::to_string), f.to_string()))
            }
            Some(_) => None,
            // A plain listener's message, stored by a `historian_topic` line.
            None => historian
                .configs
                .topics
                .event(topic, Bytes::new(), 0)
                .map(|e| ([e.org, e.type_id, e.device_id, e.event_id], e.format)),
        };
        let answer = ids.map(|(ids, format)| {
            let series = match self.series_of.get(&ids) {
                Some(&series) => series,
                None => {
                    self.series.push(Series {
                        ids: ids.clone(),
                        epoch: u64::MAX,
                        slot: 0,
                    });
                    self.series_of.insert(ids, self.series.len() - 1);
                    self.series.len() - 1
                }
            };
            (series, Arc::from(format))
        });
        self.topics.insert(topic.into(), answer.clone());
        answer
    }

    /// Takes the batch (leaving an empty one), each series' events in arrival order.
    pub fn take(&mut self) -> Vec<SeriesBatch> {
        self.epoch += 1;
        self.events = 0;
        if self.series.len() >= MAX_TOPICS {
            // Series are found through the topics: both start again.
            self.series.clear();
            self.series_of.clear();
            self.topics.clear();
            self.last = None;
        }
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::historian::{HistorianConfig, NoStore};

    fn topic(org: &str, device: &str, event: &str, format: &str) -> String {
        format!("$iot/{org}/iot-2/type/sensor/id/{device}/evt/{event}/fmt/{format}")
    }

    fn historian(dir: &std::path::Path) -> Historian {
        let (historian, errors) = Historian::new(dir, Arc::new(NoStore("test".into())));
        assert!(errors.is_empty(), "{errors:?}");
        let config = HistorianConfig::from_json(serde_json::json!({"enabled": true, "filter": {"eventIds": ["temp"]}}));
        historian.configure("org1", config.unwrap()).unwrap();
        historian
    }

    #[test]
    fn events_are_grouped_by_series_in_arrival_order_and_only_wanted_ones_kept() {
        let dir = std::env::temp_dir().join(format!("tern-historian-batch-{}", std::process::id()));
        let historian = historian(&dir);
        let mut batcher = Batcher::default();
        batcher.check_settings(&historian);
        let pushes = [
            (topic("org1", "a", "temp", "json"), 3, true),
            (topic("org1", "b", "temp", "json"), 1, true),
            (topic("org1", "a", "temp", "bin"), 2, true),
            (topic("org1", "a", "hum", "json"), 4, false),
            (topic("org2", "a", "temp", "json"), 5, false),
            ("plain/topic".to_string(), 6, false),
            (topic("org1", "a", "temp", "json"), 7, true),
        ];
        for (topic, ms, stored) in &pushes {
            let payload = Bytes::from(ms.to_string());
            assert_eq!(batcher.push(&historian, topic, payload, *ms), *stored, "{topic}");
        }
        assert_eq!(batcher.len(), 4);
        let batch = batcher.take();
        assert!(batcher.is_empty());
        let series: Vec<(&str, Vec<(u64, &str)>)> = batch
            .iter()
            .map(|s| {
                assert_eq!((&*s.org, &*s.type_id, &*s.event_id), ("org1", "sensor", "temp"));
                let events = s.events.iter().map(|e| (e.timestamp_ms, &*e.format)).collect();
                (&*s.device_id, events)
            })
            .collect();
        assert_eq!(
            series,
            [
                ("a", vec![(3, "json"), (2, "bin"), (7, "json")]),
                ("b", vec![(1, "json")])
            ]
        );
        // The same events as `StoredEvent`s, grouped again: one series each, by time.
        let stored: Vec<StoredEvent> = batch.iter().flat_map(|s| s.stored_events()).collect();
        let regrouped = group(&stored);
        assert_eq!(regrouped.len(), 2);
        let times: Vec<u64> = regrouped[0].events.iter().map(|e| e.timestamp_ms).collect();
        assert_eq!(times, [2, 3, 7]);
        // A new batch starts its series afresh; a change of settings counts at once.
        assert!(batcher.push(&historian, &topic("org1", "b", "temp", "json"), Bytes::new(), 8));
        historian
            .configure(
                "org1",
                HistorianConfig::from_json(serde_json::json!({"enabled": false})).unwrap(),
            )
            .unwrap();
        assert!(!batcher.push(&historian, &topic("org1", "b", "temp", "json"), Bytes::new(), 9));
        let batch = batcher.take();
        assert_eq!(batch.len(), 1);
        assert_eq!((&*batch[0].device_id, batch[0].events.len()), ("b", 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
