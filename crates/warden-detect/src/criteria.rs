//! Behavior criteria: the ten comparison operators, thresholds typed per operator, and the check
//! of one observed value against them.
//!
//! Criteria describe **normal** behavior (spec §5.1): a value that satisfies them conforms, any
//! other value violates. Numeric operators read `observed OP threshold`. Set operators read
//! every observed element: `in-*` needs each element inside the configured set, `not-in-*`
//! needs none inside. So an empty observed set conforms to both, which is also AWS's documented
//! rule that an empty list of ports or addresses conforms and clears a violation (DG-TS).

use std::fmt;

use crate::cidr::Cidr;
use crate::value::MetricValue;

/// AWS `comparisonOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComparisonOperator {
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
    InCidrSet,
    NotInCidrSet,
    InPortSet,
    NotInPortSet,
    InSet,
    NotInSet,
}

impl ComparisonOperator {
    pub const ALL: [ComparisonOperator; 10] = [
        ComparisonOperator::LessThan,
        ComparisonOperator::LessThanEquals,
        ComparisonOperator::GreaterThan,
        ComparisonOperator::GreaterThanEquals,
        ComparisonOperator::InCidrSet,
        ComparisonOperator::NotInCidrSet,
        ComparisonOperator::InPortSet,
        ComparisonOperator::NotInPortSet,
        ComparisonOperator::InSet,
        ComparisonOperator::NotInSet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComparisonOperator::LessThan => "less-than",
            ComparisonOperator::LessThanEquals => "less-than-equals",
            ComparisonOperator::GreaterThan => "greater-than",
            ComparisonOperator::GreaterThanEquals => "greater-than-equals",
            ComparisonOperator::InCidrSet => "in-cidr-set",
            ComparisonOperator::NotInCidrSet => "not-in-cidr-set",
            ComparisonOperator::InPortSet => "in-port-set",
            ComparisonOperator::NotInPortSet => "not-in-port-set",
            ComparisonOperator::InSet => "in-set",
            ComparisonOperator::NotInSet => "not-in-set",
        }
    }

    pub fn parse(s: &str) -> Option<ComparisonOperator> {
        ComparisonOperator::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// The numeric comparison, for the four numeric operators.
    pub fn order(self) -> Option<Order> {
        match self {
            ComparisonOperator::LessThan => Some(Order::LessThan),
            ComparisonOperator::LessThanEquals => Some(Order::LessThanEquals),
            ComparisonOperator::GreaterThan => Some(Order::GreaterThan),
            ComparisonOperator::GreaterThanEquals => Some(Order::GreaterThanEquals),
            _ => None,
        }
    }

    /// Inside or outside, for the six set operators.
    pub fn set_op(self) -> Option<SetOp> {
        match self {
            ComparisonOperator::InCidrSet | ComparisonOperator::InPortSet | ComparisonOperator::InSet => {
                Some(SetOp::In)
            }
            ComparisonOperator::NotInCidrSet
            | ComparisonOperator::NotInPortSet
            | ComparisonOperator::NotInSet => Some(SetOp::NotIn),
            _ => None,
        }
    }
}

impl fmt::Display for ComparisonOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A numeric comparison: `observed OP threshold` conforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Order {
    pub fn holds<T: PartialOrd>(self, observed: T, threshold: T) -> bool {
        match self {
            Order::LessThan => observed < threshold,
            Order::LessThanEquals => observed <= threshold,
            Order::GreaterThan => observed > threshold,
            Order::GreaterThanEquals => observed >= threshold,
        }
    }

    /// Whether the threshold is an upper bound: then a growing amount can only go from
    /// conforming to violating, never back.
    pub fn is_upper_bound(self) -> bool {
        matches!(self, Order::LessThan | Order::LessThanEquals)
    }
}

/// Whether observed elements must be inside the set or outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetOp {
    In,
    NotIn,
}

impl SetOp {
    /// Applies the set semantics to the membership of each observed element.
    fn holds(self, mut inside: impl Iterator<Item = bool>) -> bool {
        match self {
            SetOp::In => inside.all(|i| i),
            SetOp::NotIn => !inside.any(|i| i),
        }
    }
}

/// An operator with its threshold, typed so that only the pairs AWS allows exist. Sets are kept
/// sorted and without duplicates (for binary search); numbers never NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A numeric operator with `value.count` (`aws:` numeric metrics).
    Count(Order, u64),
    /// A numeric operator with `value.number` (custom `number` metrics).
    Number(Order, f64),
    /// `in-port-set` / `not-in-port-set` with `value.ports`.
    Ports(SetOp, Vec<u16>),
    /// `in-cidr-set` / `not-in-cidr-set` with `value.cidrs`.
    Cidrs(SetOp, Vec<Cidr>),
    /// `in-set` / `not-in-set` with `value.numbers` (custom `number-list` metrics). `-0.0` is
    /// stored as `0.0`, so the two compare equal as they do in JSON.
    Numbers(SetOp, Vec<f64>),
    /// `in-set` / `not-in-set` with `value.strings` (custom `string-list` metrics), compared
    /// exactly (case-sensitive).
    Strings(SetOp, Vec<String>),
}

impl Condition {
    /// The AWS operator of this condition.
    pub fn operator(&self) -> ComparisonOperator {
        let order = |o: &Order| match o {
            Order::LessThan => ComparisonOperator::LessThan,
            Order::LessThanEquals => ComparisonOperator::LessThanEquals,
            Order::GreaterThan => ComparisonOperator::GreaterThan,
            Order::GreaterThanEquals => ComparisonOperator::GreaterThanEquals,
        };
        let set = |s: &SetOp, inside, outside| if *s == SetOp::In { inside } else { outside };
        match self {
            Condition::Count(o, _) | Condition::Number(o, _) => order(o),
            Condition::Ports(s, _) => set(s, ComparisonOperator::InPortSet, ComparisonOperator::NotInPortSet),
            Condition::Cidrs(s, _) => set(s, ComparisonOperator::InCidrSet, ComparisonOperator::NotInCidrSet),
            Condition::Numbers(s, _) | Condition::Strings(s, _) => {
                set(s, ComparisonOperator::InSet, ComparisonOperator::NotInSet)
            }
        }
    }

    /// Checks an observed value: `Some(true)` conforms, `Some(false)` violates, `None` when the
    /// value cannot be judged by this condition (it lacks the field compared, or holds a
    /// non-finite number or an unreadable address). Evaluation skips such datapoints rather
    /// than guess; the ingest path validates values, so they do not occur in practice.
    pub fn check(&self, observed: &MetricValue) -> Option<bool> {
        match self {
            Condition::Count(order, threshold) => observed.count.map(|c| order.holds(c, *threshold)),
            Condition::Number(order, threshold) => {
                let n = observed.number.filter(|n| n.is_finite())?;
                Some(order.holds(n, *threshold))
            }
            Condition::Ports(op, set) => {
                let ports = observed.ports.as_ref()?;
                Some(op.holds(ports.iter().map(|p| set.binary_search(p).is_ok())))
            }
            Condition::Cidrs(op, set) => {
                let cidrs = observed.cidrs.as_ref()?;
                let parsed: Vec<Cidr> = cidrs.iter().map(|c| c.parse().ok()).collect::<Option<_>>()?;
                Some(op.holds(parsed.iter().map(|c| set.iter().any(|net| net.contains(c)))))
            }
            Condition::Numbers(op, set) => {
                let numbers = observed.numbers.as_ref()?;
                if !numbers.iter().all(|n| n.is_finite()) {
                    return None;
                }
                let inside = |n: &f64| set.binary_search_by(|s| s.total_cmp(&normalize(*n))).is_ok();
                Some(op.holds(numbers.iter().map(inside)))
            }
            Condition::Strings(op, set) => {
                let strings = observed.strings.as_ref()?;
                Some(op.holds(strings.iter().map(|s| set.binary_search(s).is_ok())))
            }
        }
    }
}

/// `-0.0` becomes `0.0`, so `total_cmp` orders numbers the way `==` compares them.
pub(crate) fn normalize(n: f64) -> f64 {
    n + 0.0
}

/// The AWS default for both consecutive counts.
pub const DEFAULT_CONSECUTIVE_DATAPOINTS: u8 = 1;

/// What a behavior considers normal, and how many datapoints it takes to change its mind.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub condition: Condition,
    /// `durationSeconds` as configured: 300, 600, 900, 1800 or 3600, or `None`. Only counters
    /// use it (see [`crate::Behavior::window_periods`]).
    pub duration_seconds: Option<u32>,
    /// `consecutiveDatapointsToAlarm`, 1–10.
    pub consecutive_to_alarm: u8,
    /// `consecutiveDatapointsToClear`, 1–10.
    pub consecutive_to_clear: u8,
}
