//! The state a rule keeps per device ([`crate::rules`]): the sliding windows of its
//! aggregates (`avg(d.temp) over 5m`) and where its notification strategy stands (was the
//! condition true last time, how many hits in the period, since when has it held).
//!
//! Time is passed in (milliseconds), never read here, so the unit tests drive it as a fake
//! clock. Everything is bounded: a window's memory is fixed (slices of its span), and a
//! rule keeps at most [`MAX_DEVICES`] devices.

use crate::rules_expr::{AggFunc, Aggregate};
use std::collections::{HashMap, VecDeque};

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

/// How many slices a window is cut into.
pub const SLICES: u64 = 60;

/// The values of one slice of a window's time.
#[derive(Debug, Clone, Copy)]
struct Slice {
    start_ms: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

/// A sliding window of one field's values, kept as [`SLICES`] slices of its span (count,
/// sum, min, max, last each), so its memory is fixed however many values arrive. A value
/// leaves the window once its whole slice is older than the span: at most a slice's time
/// (span / 60) late.
#[derive(Debug, Clone)]
pub struct Window {
    span_ms: u64,
    slice_ms: u64,
    slices: VecDeque<Slice>,
}

impl Window {
    pub fn new(span_ms: u64) -> Window {
        Window {
            span_ms,
            slice_ms: (span_ms / SLICES).max(1),
            slices: VecDeque::new(),
        }
    }

    /// Adds `value` seen at `now_ms` and forgets what is older than the span.
    pub fn push(&mut self, now_ms: u64, value: f64) {
        self.expire(now_ms);
        let start_ms = now_ms - now_ms % self.slice_ms;
        match self.slices.back_mut() {
            // (A clock that went back adds to the newest slice.)
            Some(slice) if slice.start_ms >= start_ms => {
                slice.count += 1;
                slice.sum += value;
                slice.min = slice.min.min(value);
                slice.max = slice.max.max(value);
                slice.last = value;
            }
            _ => self.slices.push_back(Slice {
                start_ms,
                count: 1,
                sum: value,
                min: value,
                max: value,
                last: value,
            }),
        }
    }

    /// Forgets the slices wholly older than the span before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.span_ms);
        while self
            .slices
            .front()
            .is_some_and(|s| s.start_ms + self.slice_ms <= oldest)
        {
            self.slices.pop_front();
        }
    }

    /// The aggregate of what the window holds (`None` when empty, but for count: 0).
    pub fn value(&self, func: AggFunc) -> Option<f64> {
        let count: u64 = self.slices.iter().map(|s| s.count).sum();
        if func == AggFunc::Count {
            return Some(count as f64);
        }
        let slices = self.slices.iter();
        let last = self.slices.back()?;
        Some(match func {
            AggFunc::Avg => slices.map(|s| s.sum).sum::<f64>() / count as f64,
            AggFunc::Sum => slices.map(|s| s.sum).sum(),
            AggFunc::Min => slices.fold(f64::INFINITY, |m, s| m.min(s.min)),
            AggFunc::Max => slices.fold(f64::NEG_INFINITY, |m, s| m.max(s.max)),
            AggFunc::Last | AggFunc::Count => last.last,
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
