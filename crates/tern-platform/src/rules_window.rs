//! The state a rule keeps per device ([`crate::rules`]): the sliding windows of its
//! aggregates (`avg(d.temp) over 5m`) and where its notification strategy stands (was the
//! condition true last time, how many hits in the period, since when has it held).
//!
//! Time is passed in (milliseconds), never read here, so the unit tests drive it as a fake
//! clock. Everything is bounded: samples per window, devices per rule.

use crate::rules_expr::{AggFunc, Aggregate};
use std::collections::{HashMap, VecDeque};

/// Most samples one window keeps (the oldest go first).
pub const MAX_SAMPLES: usize = 10_000;
/// Most devices a rule keeps state for; events of further devices are errors.
pub const MAX_DEVICES: usize = 10_000;

/// When a rule whose condition holds notifies (fires its actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every event for which the condition holds.
    Every,
    /// When the condition holds and did not for the device's previous event.
    BecomesTrue,
    /// When the condition has held `times` times within `period_ms` (then counting starts
    /// again).
    Count { times: u32, period_ms: u64 },
    /// When the condition has held for every event over at least `for_ms` (once per run).
    Persists { for_ms: u64 },
}

/// A sliding window of one field's values.
#[derive(Debug, Clone)]
pub struct Window {
    span_ms: u64,
    samples: VecDeque<(u64, f64)>,
}

impl Window {
    pub fn new(span_ms: u64) -> Window {
        Window {
            span_ms,
            samples: VecDeque::new(),
        }
    }

    /// Adds `value` seen at `now_ms` and forgets what is older than the span.
    pub fn push(&mut self, now_ms: u64, value: f64) {
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, value));
        self.expire(now_ms);
    }

    /// Forgets samples older than the span before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.span_ms);
        while self.samples.front().is_some_and(|(t, _)| *t < oldest) {
            self.samples.pop_front();
        }
    }

    /// The aggregate of what the window holds (`None` when empty, but for count: 0).
    pub fn value(&self, func: AggFunc) -> Option<f64> {
        let values = self.samples.iter().map(|(_, v)| *v);
        if func == AggFunc::Count {
            return Some(self.samples.len() as f64);
        }
        if self.samples.is_empty() {
            return None;
        }
        Some(match func {
            AggFunc::Avg => values.sum::<f64>() / self.samples.len() as f64,
            AggFunc::Sum => values.sum(),
            AggFunc::Min => values.fold(f64::INFINITY, f64::min),
            AggFunc::Max => values.fold(f64::NEG_INFINITY, f64::max),
            AggFunc::Last | AggFunc::Count => self.samples.back().map_or(0.0, |(_, v)| *v),
        })
    }
}

/// Where a device's notification strategy stands.
#[derive(Debug, Clone, Default)]
pub struct NotifyState {
    was_true: bool,
    hits: VecDeque<u64>,
    true_since: Option<u64>,
    fired_this_run: bool,
}

impl NotifyState {
    /// Takes the condition's outcome for an event at `now_ms`; true when the rule fires.
    pub fn step(&mut self, strategy: Strategy, holds: bool, now_ms: u64) -> bool {
        let fire = match strategy {
            Strategy::Every => holds,
            Strategy::BecomesTrue => holds && !self.was_true,
            Strategy::Count { times, period_ms } => {
                let oldest = now_ms.saturating_sub(period_ms);
                while self.hits.front().is_some_and(|t| *t < oldest) {
                    self.hits.pop_front();
                }
                if holds {
                    self.hits.push_back(now_ms);
                }
                let fire = self.hits.len() >= times as usize;
                if fire {
                    self.hits.clear();
                }
                fire
            }
            Strategy::Persists { for_ms } => {
                if holds {
                    let since = *self.true_since.get_or_insert(now_ms);
                    let fire = !self.fired_this_run && now_ms.saturating_sub(since) >= for_ms;
                    self.fired_this_run |= fire;
                    fire
                } else {
                    self.true_since = None;
                    self.fired_this_run = false;
                    false
                }
            }
        };
        self.was_true = holds;
        fire
    }
}

/// A rule's state for one device.
#[derive(Debug, Clone)]
pub struct DeviceState {
    pub windows: Vec<Window>,
    pub notify: NotifyState,
}

/// A rule's state for every device it has seen.
#[derive(Debug, Default)]
pub struct RuleState {
    devices: HashMap<String, DeviceState>,
}

impl RuleState {
    /// The state of device `key`, made for `aggregates` if new; `None` when the rule
    /// already keeps [`MAX_DEVICES`] devices.
    pub fn device(&mut self, key: &str, aggregates: &[Aggregate]) -> Option<&mut DeviceState> {
        if !self.devices.contains_key(key) {
            if self.devices.len() >= MAX_DEVICES {
                return None;
            }
            let windows = aggregates.iter().map(|a| Window::new(a.span_ms)).collect();
            let state = DeviceState {
                windows,
                notify: NotifyState::default(),
            };
            self.devices.insert(key.to_string(), state);
        }
        self.devices.get_mut(key)
    }

    /// Devices with state.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}
