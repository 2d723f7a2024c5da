//! The evaluation state of one (thing, profile, behavior): the counter window, the run of
//! consecutive datapoints, and the alarm with its violation id. Kept small, because there is one
//! per device and behavior (budget: 1 KB per device with 10 behaviors): an alarm lives in its own
//! allocation, as few behaviors are in alarm at once, and a window keeps only the amounts of
//! the periods before the current one.
//!
//! Windows. A counter datapoint is the amount of one reporting period. A behavior with a window
//! of `k` periods is checked against the sum of the current datapoint and the `k - 1` periods
//! before it. Periods without a datapoint count as zero: a device's deltas run from report to
//! report, so traffic of a missed period arrives with the next report and is not lost, and the
//! cloud side produces no datapoint for a period without a session. Until `k - 1` earlier periods
//! are known (a new device, a restarted server, a changed behavior), the window is *partial*
//! and its sum only a lower bound of the true one, so a datapoint counts only when the verdict
//! is already certain: a partial sum over an upper bound (`less-than`, `less-than-equals`)
//! violates for sure, a partial sum reaching a lower bound (`greater-than...`) conforms for sure;
//! any other partial datapoint is skipped, as if it had not arrived. So a restart causes no false
//! alarm and no false clear.
//!
//! Alarm state machine (spec §5.2). Out of alarm, `run` counts consecutive violating datapoints
//! and `consecutiveDatapointsToAlarm` of them raise the alarm; in alarm, it counts consecutive
//! conforming ones and `consecutiveDatapointsToClear` of them clear it. Any datapoint of the
//! other verdict resets the run. Skipped datapoints (partial windows, values the criteria
//! cannot judge, datapoints not newer than the last one) leave the run as it is.

use std::borrow::Cow;

use crate::criteria::Condition;
use crate::engine::{ViolationId, ViolationIds};
use crate::metric::MetricKind;
use crate::profile::Behavior;
use crate::value::MetricValue;

/// `last_ms` before the first datapoint.
const NO_DATAPOINT: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct BehaviorState {
    /// The amounts of the `k - 1` periods before the last datapoint of a counter window of `k`
    /// periods, as a ring written at `next`; empty for one-period windows and non-counters.
    /// Slots not yet written hold zero, so the window sum is the sum of all slots.
    past: Box<[u64]>,
    /// The timestamp of the last evaluated datapoint: measures gaps, refuses replays and old
    /// datapoints, and tells when the behavior went silent.
    last_ms: i64,
    alarm: Option<Box<Alarm>>,
    /// Consecutive datapoints that speak for changing the alarm state (see the module doc).
    run: u8,
    /// The ring slot written next.
    next: u8,
    /// How many ring slots hold known periods; the window is complete when all do.
    filled: u8,
}

/// An active violation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alarm {
    pub id: ViolationId,
    pub started_ms: i64,
    pub last_violation_ms: i64,
    pub last_value: MetricValue,
}

/// A change of alarm state caused by one datapoint.
#[derive(Debug)]
pub(crate) enum Change {
    Raised { id: ViolationId, value: MetricValue },
    Cleared { alarm: Box<Alarm>, value: MetricValue },
}

impl BehaviorState {
    pub fn new(behavior: &Behavior) -> Self {
        BehaviorState { past: ring(behavior), last_ms: NO_DATAPOINT, alarm: None, run: 0, next: 0, filled: 0 }
    }

    /// Starts evaluating anew after the behavior's criteria changed, keeping the alarm (the same
    /// behavior is still violated until the new criteria clear it) and the time of the last
    /// datapoint (so replays stay refused).
    pub fn reset(&mut self, behavior: &Behavior) {
        self.past = ring(behavior);
        self.run = 0;
        self.next = 0;
        self.filled = 0;
    }

    pub fn alarm(&self) -> Option<&Alarm> {
        self.alarm.as_deref()
    }

    /// Ends the alarm without a clear (invalidation).
    pub fn take_alarm(&mut self) -> Option<Box<Alarm>> {
        self.run = 0;
        self.alarm.take()
    }

    /// Puts back an alarm remembered from before a restart.
    pub fn restore(&mut self, alarm: Alarm) {
        self.last_ms = self.last_ms.max(alarm.last_violation_ms);
        self.run = 0;
        self.alarm = Some(Box::new(alarm));
    }

    /// Heap bytes and allocations held by this state, beyond its own size.
    pub fn heap(&self) -> (usize, usize) {
        let mut bytes = 0;
        let mut blocks = 0;
        if !self.past.is_empty() {
            bytes += std::mem::size_of_val(&*self.past);
            blocks += 1;
        }
        if let Some(alarm) = &self.alarm {
            let (value_bytes, value_blocks) = value_heap(&alarm.last_value);
            bytes += std::mem::size_of::<Alarm>() + value_bytes;
            blocks += 1 + value_blocks;
        }
        (bytes, blocks)
    }

    /// The time of the last evaluated datapoint, if any.
    pub fn last_ms(&self) -> Option<i64> {
        (self.last_ms != NO_DATAPOINT).then_some(self.last_ms)
    }

    /// Evaluates one datapoint of this behavior's series at `at_ms`.
    pub fn observe(
        &mut self,
        behavior: &Behavior,
        period_ms: i64,
        at_ms: i64,
        value: &MetricValue,
        ids: &mut dyn ViolationIds,
    ) -> Option<Change> {
        if at_ms <= self.last_ms {
            return None;
        }
        let (measured, verdict) = if behavior.metric.kind() == MetricKind::Counter {
            let amount = value.count?;
            let steps = match self.last_ms() {
                Some(last) => periods_between(last, at_ms, period_ms),
                None => 0,
            };
            self.last_ms = at_ms;
            let (sum, complete) = self.slide(amount, steps);
            let measured = MetricValue::count(sum);
            let verdict = decide(&behavior.criteria.condition, &measured, complete);
            (Cow::Owned(measured), verdict)
        } else {
            let verdict = behavior.check(value)?;
            self.last_ms = at_ms;
            (Cow::Borrowed(value), Some(verdict))
        };
        self.step(verdict?, behavior, at_ms, measured, ids)
    }

    /// Moves the window to the period of a new `amount`, `steps` periods after the previous
    /// datapoint (0 for the first one), and returns the window's sum and whether it is complete.
    fn slide(&mut self, amount: u64, steps: u64) -> (u64, bool) {
        let len = self.past.len();
        if len == 0 {
            return (amount, true);
        }
        // The periods strictly between the previous datapoint and this one had none: zero.
        let gaps = steps.saturating_sub(1).min(len as u64);
        for _ in 0..gaps {
            self.push(0);
        }
        let complete = usize::from(self.filled) == len;
        let sum = self.past.iter().fold(amount, |sum, v| sum.saturating_add(*v));
        self.push(amount);
        (sum, complete)
    }

    fn push(&mut self, amount: u64) {
        let len = self.past.len();
        self.past[usize::from(self.next)] = amount;
        self.next = ((usize::from(self.next) + 1) % len) as u8;
        if usize::from(self.filled) < len {
            self.filled += 1;
        }
    }

    fn step(
        &mut self,
        conforms: bool,
        behavior: &Behavior,
        at_ms: i64,
        measured: Cow<'_, MetricValue>,
        ids: &mut dyn ViolationIds,
    ) -> Option<Change> {
        let to_alarm = behavior.criteria.consecutive_to_alarm.max(1);
        let to_clear = behavior.criteria.consecutive_to_clear.max(1);
        match (&mut self.alarm, conforms) {
            (None, true) => {
                self.run = 0;
                None
            }
            (None, false) => {
                self.run += 1;
                if self.run < to_alarm {
                    return None;
                }
                self.run = 0;
                let id = ids.next_id();
                let value = measured.into_owned();
                self.alarm = Some(Box::new(Alarm {
                    id,
                    started_ms: at_ms,
                    last_violation_ms: at_ms,
                    last_value: value.clone(),
                }));
                Some(Change::Raised { id, value })
            }
            (Some(alarm), false) => {
                self.run = 0;
                alarm.last_violation_ms = at_ms;
                alarm.last_value = measured.into_owned();
                None
            }
            (Some(_), true) => {
                self.run += 1;
                if self.run < to_clear {
                    return None;
                }
                self.run = 0;
                let alarm = self.alarm.take()?;
                Some(Change::Cleared { alarm, value: measured.into_owned() })
            }
        }
    }
}

/// The ring for a behavior's window: one slot per period before the current one.
fn ring(behavior: &Behavior) -> Box<[u64]> {
    // At most 3600 / 300 = 12 periods, so the ring fits the `u8` positions.
    let periods = behavior.window_periods().min(usize::from(u8::MAX));
    vec![0; periods - 1].into_boxed_slice()
}

/// Whole periods from `last_ms` to `at_ms` (rounded, at least 1), so that reports arriving a
/// little early or late still land in the next period.
fn periods_between(last_ms: i64, at_ms: i64, period_ms: i64) -> u64 {
    let period = period_ms.max(1);
    let elapsed = at_ms.saturating_sub(last_ms);
    let periods = elapsed.saturating_add(period / 2) / period;
    periods.max(1) as u64
}

/// The verdict on a window sum: certain when the window is complete; on a partial window only
/// when more periods could not change it (see the module doc), else `None`.
fn decide(condition: &Condition, measured: &MetricValue, complete: bool) -> Option<bool> {
    let conforms = condition.check(measured)?;
    match condition {
        _ if complete => Some(conforms),
        Condition::Count(order, _) if order.is_upper_bound() => (!conforms).then_some(false),
        Condition::Count(..) => conforms.then_some(true),
        _ => Some(conforms),
    }
}

/// Heap bytes and allocations of a metric value's lists.
fn value_heap(v: &MetricValue) -> (usize, usize) {
    fn list<T>(l: &Option<Vec<T>>, each: impl Fn(&T) -> (usize, usize)) -> (usize, usize) {
        match l {
            Some(l) if l.capacity() > 0 => {
                l.iter().fold((l.capacity() * std::mem::size_of::<T>(), 1), |(b, n), x| {
                    let (xb, xn) = each(x);
                    (b + xb, n + xn)
                })
            }
            _ => (0, 0),
        }
    }
    let text = |s: &String| (s.capacity(), usize::from(s.capacity() > 0));
    let parts = [
        list(&v.numbers, |_| (0, 0)),
        list(&v.strings, text),
        list(&v.ports, |_| (0, 0)),
        list(&v.cidrs, text),
    ];
    parts.iter().fold((0, 0), |(b, n), (pb, pn)| (b + pb, n + pn))
}
