//! A readable text form of a behavior, for people at a terminal: [`parse`] turns a rule into an
//! AWS-shaped [`aws::Behavior`] and [`format`] writes one back.
//!
//! AWS criteria describe *normal* behavior, which reads backwards on a command line; a rule says
//! when to *alarm*, and the parser inverts the operator:
//!
//! ```text
//! alarm when aws:all-bytes-out > 35000 over 5m     criteria: less-than-equals {count: 35000}, 300 s
//! alarm when aws:listening-tcp-ports not in {22, 443}         in-port-set {ports: [22, 443]}
//! alarm when aws:destination-ip-addresses in {10.0.0.0/8}    not-in-cidr-set {cidrs: [...]}
//! ```
//!
//! The grammar (keywords in any case; options in any order, each at most once):
//!
//! ```text
//! rule      = [NAME ":"] "alarm" "when" METRIC condition option*
//! condition = (">" | ">=" | "<" | "<=") VALUE        numeric metrics
//!           | ["not"] "in" "{" [VALUE ("," VALUE)*] "}"    set metrics
//! option    = "over" DURATION                        durationSeconds: 5m, 10m, 15m, 30m, 1h (or 300s, ...)
//!           | "for" N ["datapoint" | "datapoints"]   consecutiveDatapointsToAlarm, 1 to 10
//!           | "clear" "after" N ["datapoint" | "datapoints"]   consecutiveDatapointsToClear
//!           | "on" "dimension" NAME ["not"]          metricDimension, operator IN (NOT_IN with "not")
//!           | "quietly"                              suppressAlerts: true
//!           | "exported"                             exportMetric: true
//! ```
//!
//! | alarm when | criteria (normal) |
//! |---|---|
//! | `> v`, `>= v`, `< v`, `<= v` | `less-than-equals`, `less-than`, `greater-than-equals`, `greater-than` |
//! | `not in {...}` | `in-port-set`, `in-cidr-set` or `in-set` |
//! | `in {...}` | `not-in-port-set`, `not-in-cidr-set` or `not-in-set` |
//!
//! The metric decides the value's type, as AWS's `MetricValue` has one field per type: `count`
//! (a whole number) for numeric `aws:` metrics, `ports` and `cidrs` for the `aws:` set metrics,
//! and for custom metrics their type, which the caller looks up: `number`, `numbers`, `strings`
//! or `cidrs`. Strings may be written bare (`{sshd, nginx}`) or in double quotes with `\"` and
//! `\\` escapes. Without a name, a behavior is named after its metric (`all-bytes-out`).
//!
//! The parser checks what it can point at (metric, operator, value types, window, counts); what
//! needs the account's definitions (the dimension exists) is left to [`crate::compile`]. Errors
//! name the offending word and carry its position ([`RuleError::underline`]).
//!
//! [`format`] writes the canonical text: the name always, `>`-style operators, the largest whole
//! unit of time, options in the grammar's order, strings bare when they can be. So
//! `parse(format(b)) == b` for every behavior a rule can express, and `format(parse(text))` is
//! the canonical form of `text`. A behavior a rule cannot express (a statistical threshold, ML
//! Detect, a member that does not fit its metric) formats as a placeholder that says so.

use std::fmt::Write as _;
use std::ops::Range;

use crate::aws;
use crate::cidr::Cidr;
use crate::criteria::ComparisonOperator;
use crate::metric::{AwsMetric, CustomMetricType, Metric, MetricKind};
use crate::profile::DURATIONS_SECONDS;
use crate::value::MetricValue;

/// Why a rule does not parse, and where: `span` is the byte range of the offending word in the
/// text (empty at the end of the text when a word is missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    message: String,
    span: Range<usize>,
}

impl RuleError {
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// `text` on one line and carets under the offending word on the next (a single caret past
    /// the end when a word is missing), for a terminal.
    pub fn underline(&self, text: &str) -> String {
        let start = self.span.start.min(text.len());
        let end = self.span.end.clamp(start, text.len());
        let pad = text.get(..start).map_or(0, |t| t.chars().count());
        let width = text.get(start..end).map_or(0, |t| t.chars().count()).max(1);
        // Control characters would break the alignment, so they show as spaces.
        let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        format!("{line}\n{}{}", " ".repeat(pad), "^".repeat(width))
    }
}

/// Parses one rule. `custom_metric_type` gives the type of a custom metric by name, or `None`
/// if no such metric is defined.
pub fn parse(
    text: &str,
    custom_metric_type: impl Fn(&str) -> Option<CustomMetricType>,
) -> Result<aws::Behavior, RuleError> {
    let tokens = lex(text)?;
    Parser { text, tokens, pos: 0 }.rule(&custom_metric_type)
}

/// The canonical rule of a behavior, or a placeholder naming what a rule cannot express.
pub fn format(b: &aws::Behavior) -> String {
    match condition_text(b) {
        Ok(text) => format!("{}: {text}", b.name),
        Err(why) => format!("{}: <not expressible as a rule: {why}>", b.name),
    }
}

/// A metric value as rules write it: `35000`, `7.5`, `{22, 443}`, `{sshd, "two words"}`.
/// Several fields (which AWS does not send) are written one after the other; none is `{}`.
pub fn format_value(value: &MetricValue) -> String {
    let MetricValue { count, number, numbers, strings, ports, cidrs } = value;
    let mut parts = Vec::new();
    parts.extend(count.map(|c| c.to_string()));
    parts.extend(number.map(number_text));
    parts.extend(numbers.as_ref().map(|n| set_text(n.iter().map(|n| number_text(*n)))));
    parts.extend(strings.as_ref().map(|s| set_text(s.iter().map(|s| word_text(s)))));
    parts.extend(ports.as_ref().map(|p| set_text(p.iter().map(u16::to_string))));
    parts.extend(cidrs.as_ref().map(|c| set_text(c.iter().map(|c| word_text(c)))));
    if parts.is_empty() { "{}".to_owned() } else { parts.join(" ") }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// Everything after `NAME: `, or why the behavior cannot be written as a rule.
fn condition_text(b: &aws::Behavior) -> Result<String, String> {
    let Some(c) = &b.criteria else {
        return Err("it has no criteria".into());
    };
    let Some(metric) = b.metric.as_deref() else {
        return Err("it has no metric".into());
    };
    if let Some(t) = &c.statistical_threshold {
        let statistic = t.statistic.as_deref().unwrap_or("?");
        return Err(format!("statistical threshold {statistic} on {metric}"));
    }
    if let Some(ml) = &c.ml_detection_config {
        let level = ml.confidence_level.as_deref().unwrap_or("?");
        return Err(format!("ML Detect on {metric}, confidence {level}"));
    }
    if !is_word(metric) {
        return Err(format!("metric {metric:?} is not one word"));
    }
    let op_text = c.comparison_operator.as_deref().unwrap_or_default();
    let Some(op) = ComparisonOperator::parse(op_text) else {
        return Err(format!("unknown comparison operator {op_text:?} on {metric}"));
    };
    let Some(value) = &c.value else {
        return Err(format!("{op} on {metric} has no value"));
    };
    let fields = value.present_fields();
    let [field] = fields[..] else {
        return Err(format!("{op} on {metric} has {} value fields", fields.len()));
    };
    if metric.starts_with("aws:") {
        let Some(known) = AwsMetric::parse(metric) else {
            return Err(format!("unknown metric {metric}"));
        };
        if known.kind().value_field() != field || !known.operators().contains(&op) {
            return Err(format!("{op} with value.{field} does not fit {metric}"));
        }
    }
    let mut out = format!("alarm when {metric} ");
    match (op, value) {
        (ComparisonOperator::LessThan, MetricValue { count: Some(n), .. }) => write!(out, ">= {n}"),
        (ComparisonOperator::LessThanEquals, MetricValue { count: Some(n), .. }) => write!(out, "> {n}"),
        (ComparisonOperator::GreaterThan, MetricValue { count: Some(n), .. }) => write!(out, "<= {n}"),
        (ComparisonOperator::GreaterThanEquals, MetricValue { count: Some(n), .. }) => write!(out, "< {n}"),
        (ComparisonOperator::LessThan, MetricValue { number: Some(n), .. }) => {
            write!(out, ">= {}", number_text(*n))
        }
        (ComparisonOperator::LessThanEquals, MetricValue { number: Some(n), .. }) => {
            write!(out, "> {}", number_text(*n))
        }
        (ComparisonOperator::GreaterThan, MetricValue { number: Some(n), .. }) => {
            write!(out, "<= {}", number_text(*n))
        }
        (ComparisonOperator::GreaterThanEquals, MetricValue { number: Some(n), .. }) => {
            write!(out, "< {}", number_text(*n))
        }
        (
            ComparisonOperator::InPortSet | ComparisonOperator::NotInPortSet,
            MetricValue { ports: Some(_), .. },
        )
        | (
            ComparisonOperator::InCidrSet | ComparisonOperator::NotInCidrSet,
            MetricValue { cidrs: Some(_), .. },
        )
        | (
            ComparisonOperator::InSet | ComparisonOperator::NotInSet,
            MetricValue { numbers: Some(_), .. } | MetricValue { strings: Some(_), .. },
        ) => {
            let inside = matches!(
                op,
                ComparisonOperator::NotInPortSet
                    | ComparisonOperator::NotInCidrSet
                    | ComparisonOperator::NotInSet
            );
            let keyword = if inside { "in" } else { "not in" };
            write!(out, "{keyword} {}", format_value(value))
        }
        _ => return Err(format!("{op} does not compare value.{field}")),
    }
    .expect("writing to a String cannot fail");
    if let Some(seconds) = c.duration_seconds {
        out.push_str(" over ");
        out.push_str(&duration_text(seconds));
    }
    if let Some(n) = c.consecutive_datapoints_to_alarm {
        write!(out, " for {n} {}", datapoints(n)).expect("writing to a String cannot fail");
    }
    if let Some(n) = c.consecutive_datapoints_to_clear {
        write!(out, " clear after {n} {}", datapoints(n)).expect("writing to a String cannot fail");
    }
    if let Some(d) = &b.metric_dimension {
        if !is_word(&d.dimension_name) {
            return Err(format!("dimension {:?} is not one word", d.dimension_name));
        }
        out.push_str(" on dimension ");
        out.push_str(&d.dimension_name);
        match d.operator.as_deref() {
            None | Some("IN") => {}
            Some("NOT_IN") => out.push_str(" not"),
            Some(other) => return Err(format!("unknown dimension operator {other:?}")),
        }
    }
    if b.suppress_alerts == Some(true) {
        out.push_str(" quietly");
    }
    if b.export_metric == Some(true) {
        out.push_str(" exported");
    }
    Ok(out)
}

fn datapoints(n: i64) -> &'static str {
    if n == 1 { "datapoint" } else { "datapoints" }
}

/// `1h`, `5m` or `90s`: the largest unit that divides the duration.
fn duration_text(seconds: i64) -> String {
    match seconds {
        0 => "0s".to_owned(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The shortest text that reads back as the same `f64`, without a needless `.0`: `75`, `0.1`,
/// `1e300`. (`Display` would write `1e300` as 301 digits.)
fn number_text(n: f64) -> String {
    let text = format!("{n:?}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => text,
    }
}

fn set_text(items: impl Iterator<Item = String>) -> String {
    format!("{{{}}}", items.collect::<Vec<_>>().join(", "))
}

/// A set element as a bare word when it lexes as one, else in double quotes.
fn word_text(s: &str) -> String {
    if is_word(s) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `s` lexes as exactly one bare word.
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_word_char)
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !matches!(c, '{' | '}' | ',' | '"' | '<' | '>' | '\\')
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A run of word characters: keywords, names, numbers, addresses.
    Word(String),
    /// A double-quoted string, unescaped.
    Quoted(String),
    /// `>`, `>=`, `<` or `<=`.
    Compare(&'static str),
    Open,
    Close,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Range<usize>,
}

fn lex(text: &str) -> Result<Vec<Token>, RuleError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let single = |tok| Token { tok, span: start..start + c.len_utf8() };
        match c {
            c if c.is_whitespace() => {}
            '{' => tokens.push(single(Tok::Open)),
            '}' => tokens.push(single(Tok::Close)),
            ',' => tokens.push(single(Tok::Comma)),
            '<' | '>' => {
                let or_equals = chars.next_if(|(_, c)| *c == '=').is_some();
                let op = match (c, or_equals) {
                    ('<', false) => "<",
                    ('<', true) => "<=",
                    ('>', false) => ">",
                    _ => ">=",
                };
                tokens.push(Token { tok: Tok::Compare(op), span: start..start + op.len() });
            }
            '"' => {
                let mut value = String::new();
                let end = loop {
                    match chars.next() {
                        None => {
                            return Err(RuleError {
                                message: "this quoted string has no closing '\"'".into(),
                                span: start..text.len(),
                            });
                        }
                        Some((i, '"')) => break i + 1,
                        Some((i, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => value.push(e),
                            other => {
                                let end = other.map_or(text.len(), |(j, e)| j + e.len_utf8());
                                return Err(RuleError {
                                    message: "in quotes, '\\' may only escape '\"' or '\\'".into(),
                                    span: i..end,
                                });
                            }
                        },
                        Some((_, c)) => value.push(c),
                    }
                };
                tokens.push(Token { tok: Tok::Quoted(value), span: start..end });
            }
            '\\' => {
                return Err(RuleError {
                    message: "'\\' may only appear in quotes".into(),
                    span: start..start + 1,
                });
            }
            c if c.is_control() => {
                return Err(RuleError {
                    message: format!("unexpected control character {c:?}"),
                    span: start..start + c.len_utf8(),
                });
            }
            _ => {
                let mut end = start + c.len_utf8();
                while let Some((i, c)) = chars.next_if(|(_, c)| is_word_char(*c)) {
                    end = i + c.len_utf8();
                }
                tokens.push(Token { tok: Tok::Word(text[start..end].to_owned()), span: start..end });
            }
        }
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

/// The options seen so far, to refuse one given twice.
#[derive(Default)]
struct Seen {
    over: bool,
    to_alarm: bool,
    to_clear: bool,
    dimension: bool,
    quietly: bool,
    exported: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    /// The span of the next token, or an empty one at the end of the text.
    fn here(&self) -> Range<usize> {
        self.peek().map_or(self.text.len()..self.text.len(), |t| t.span.clone())
    }

    /// The next token as a message shows it: `'bigger'`, or `the end of the rule`.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the rule".to_owned(),
            Some(t) => format!("'{}'", &self.text[t.span.clone()]),
        }
    }

    fn error_here<T>(&self, message: impl Into<String>) -> Result<T, RuleError> {
        Err(RuleError { message: message.into(), span: self.here() })
    }

    fn error_at<T>(&self, span: Range<usize>, message: impl Into<String>) -> Result<T, RuleError> {
        Err(RuleError { message: message.into(), span })
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.is_keyword(keyword);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str, after: &str) -> Result<(), RuleError> {
        if self.eat_keyword(keyword) {
            Ok(())
        } else {
            self.error_here(format!("expected '{keyword}' after {after}, found {}", self.found()))
        }
    }

    /// The next token if it is a word (or, where `quoted_too`, a quoted string).
    fn word(&mut self, quoted_too: bool) -> Option<(String, Range<usize>)> {
        match self.peek() {
            Some(Token { tok: Tok::Word(w), span }) => {
                let out = (w.clone(), span.clone());
                self.pos += 1;
                Some(out)
            }
            Some(Token { tok: Tok::Quoted(s), span }) if quoted_too => {
                let out = (s.clone(), span.clone());
                self.pos += 1;
                Some(out)
            }
            _ => None,
        }
    }

    fn rule(
        mut self,
        custom_metric_type: &dyn Fn(&str) -> Option<CustomMetricType>,
    ) -> Result<aws::Behavior, RuleError> {
        if self.tokens.is_empty() {
            return self.error_here("the rule is empty; expected 'alarm when METRIC ...'");
        }
        let name = match self.peek() {
            Some(Token { tok: Tok::Word(w), span }) if w.len() > 1 && w.ends_with(':') => {
                let (name, span) = (w[..w.len() - 1].to_owned(), span.clone());
                if !is_valid_name(&name) {
                    return self.error_at(span, format!("behavior name '{name}' {NAME_RULE}"));
                }
                self.pos += 1;
                Some(name)
            }
            _ => None,
        };
        if !self.eat_keyword("alarm") {
            let message = match &name {
                Some(name) => format!("expected 'alarm when' after '{name}:', found {}", self.found()),
                None => format!(
                    "expected 'alarm when' or 'NAME: alarm when' at the start, found {}",
                    self.found()
                ),
            };
            return self.error_here(message);
        }
        self.expect_keyword("when", "'alarm'")?;
        let Some((metric_name, metric_span)) = self.word(false) else {
            return self.error_here(format!("expected a metric name after 'when', found {}", self.found()));
        };
        let metric = resolve_metric(&metric_name, custom_metric_type)
            .map_err(|message| RuleError { message, span: metric_span.clone() })?;
        let (comparison_operator, value) = self.condition(&metric)?;

        let mut criteria = aws::BehaviorCriteria {
            comparison_operator: Some(comparison_operator.as_str().to_owned()),
            value: Some(value),
            ..Default::default()
        };
        let mut behavior = aws::Behavior {
            name: name.unwrap_or_else(|| metric_name.strip_prefix("aws:").unwrap_or(&metric_name).to_owned()),
            metric: Some(metric_name.clone()),
            ..Default::default()
        };
        let mut seen = Seen::default();
        while let Some(token) = self.peek() {
            let span = token.span.clone();
            let once = |seen: &mut bool, what: &str| -> Result<(), RuleError> {
                if std::mem::replace(seen, true) {
                    Err(RuleError { message: format!("'{what}' is given twice"), span: span.clone() })
                } else {
                    Ok(())
                }
            };
            if self.eat_keyword("over") {
                once(&mut seen.over, "over")?;
                if !metric.takes_duration() {
                    let why = if metric.kind().is_list() {
                        ", a set, is judged on each report"
                    } else {
                        " is a duration already"
                    };
                    return self.error_at(span, format!("{metric}{why}: it takes no window ('over')"));
                }
                criteria.duration_seconds = Some(self.duration()?);
            } else if self.eat_keyword("for") {
                once(&mut seen.to_alarm, "for")?;
                criteria.consecutive_datapoints_to_alarm = Some(self.datapoints("for")?);
            } else if self.eat_keyword("clear") {
                once(&mut seen.to_clear, "clear after")?;
                self.expect_keyword("after", "'clear'")?;
                criteria.consecutive_datapoints_to_clear = Some(self.datapoints("clear after")?);
            } else if self.eat_keyword("on") {
                once(&mut seen.dimension, "on dimension")?;
                self.expect_keyword("dimension", "'on'")?;
                if !metric.takes_dimension() {
                    return self.error_at(
                        span,
                        format!(
                            "{metric} cannot be narrowed by a dimension; dimensions apply to \
                             aws:num-messages-sent, aws:num-messages-received, aws:message-byte-size, \
                             aws:num-authorization-failures and aws:source-ip-address"
                        ),
                    );
                }
                let Some((dimension, dimension_span)) = self.word(false) else {
                    return self.error_here(format!(
                        "expected a dimension name after 'on dimension', found {}",
                        self.found()
                    ));
                };
                if !is_valid_name(&dimension) {
                    return self
                        .error_at(dimension_span, format!("dimension name '{dimension}' {NAME_RULE}"));
                }
                let operator = if self.eat_keyword("not") { "NOT_IN" } else { "IN" };
                behavior.metric_dimension =
                    Some(aws::MetricDimension { dimension_name: dimension, operator: Some(operator.into()) });
            } else if self.eat_keyword("quietly") {
                once(&mut seen.quietly, "quietly")?;
                behavior.suppress_alerts = Some(true);
            } else if self.eat_keyword("exported") {
                once(&mut seen.exported, "exported")?;
                behavior.export_metric = Some(true);
            } else {
                return self.error_here(format!(
                    "unexpected {} after the condition; expected over, for, clear after, on dimension, \
                     quietly or exported",
                    self.found()
                ));
            }
        }
        behavior.criteria = Some(criteria);
        Ok(behavior)
    }

    /// The operator and value, with the operator inverted into AWS's "normal" sense.
    fn condition(&mut self, metric: &Metric) -> Result<(ComparisonOperator, MetricValue), RuleError> {
        let kind = metric.kind();
        let numeric = !kind.is_list();
        let expected = if numeric { ">, >=, < or <=" } else { "'in {...}' or 'not in {...}'" };
        let op_span = self.here();
        let token = self.peek().map(|t| t.tok.clone());
        let set_word = self.is_keyword("in") || self.is_keyword("not");
        match token {
            Some(Tok::Compare(op)) if numeric => {
                self.pos += 1;
                let normal = match op {
                    ">" => ComparisonOperator::LessThanEquals,
                    ">=" => ComparisonOperator::LessThan,
                    "<" => ComparisonOperator::GreaterThanEquals,
                    _ => ComparisonOperator::GreaterThan,
                };
                if !metric.operators().contains(&normal) {
                    // In the order rules write them: '>', '>=', '<', '<='.
                    let allowed: Vec<&str> = [
                        ComparisonOperator::LessThanEquals,
                        ComparisonOperator::LessThan,
                        ComparisonOperator::GreaterThanEquals,
                        ComparisonOperator::GreaterThan,
                    ]
                    .into_iter()
                    .filter(|o| metric.operators().contains(o))
                    .filter_map(alarm_symbol)
                    .collect();
                    return self.error_at(
                        op_span,
                        format!("'{op}' is not allowed for {metric}; use {}", allowed.join(" or ")),
                    );
                }
                let value = self.number_value(kind, op)?;
                Ok((normal, value))
            }
            Some(Tok::Word(_)) if set_word && !numeric => {
                // 'not in' alarms on elements outside the set: normal is inside.
                let normal_inside = self.eat_keyword("not");
                self.expect_keyword("in", "'not'")?;
                let normal = match (kind, normal_inside) {
                    (MetricKind::PortSet, true) => ComparisonOperator::InPortSet,
                    (MetricKind::PortSet, false) => ComparisonOperator::NotInPortSet,
                    (MetricKind::CidrSet, true) => ComparisonOperator::InCidrSet,
                    (MetricKind::CidrSet, false) => ComparisonOperator::NotInCidrSet,
                    (_, true) => ComparisonOperator::InSet,
                    (_, false) => ComparisonOperator::NotInSet,
                };
                Ok((normal, self.set_value(kind)?))
            }
            // An operator of the other family: say which family the metric takes.
            Some(Tok::Compare(_)) => self.wrong_family(metric, expected),
            Some(Tok::Word(_)) if set_word => self.wrong_family(metric, expected),
            _ => self.error_here(format!(
                "expected an operator after {metric}, found {}; use {expected}",
                self.found()
            )),
        }
    }

    fn wrong_family<T>(&self, metric: &Metric, expected: &str) -> Result<T, RuleError> {
        self.error_here(format!(
            "{metric} is {}: expected {expected} after it, found {}",
            kind_text(metric.kind()),
            self.found()
        ))
    }

    fn number_value(&mut self, kind: MetricKind, op: &str) -> Result<MetricValue, RuleError> {
        let Some((text, span)) = self.word(false) else {
            let what = if kind == MetricKind::Number { "a number" } else { "a whole number" };
            return self.error_here(format!("expected {what} after '{op}', found {}", self.found()));
        };
        if kind == MetricKind::Number {
            match parse_number(&text) {
                Some(n) => Ok(MetricValue::number(n)),
                None => self.error_at(span, format!("expected a number after '{op}', found '{text}'")),
            }
        } else {
            match text.parse::<u64>() {
                Ok(n) => Ok(MetricValue::count(n)),
                Err(_) => self.error_at(
                    span,
                    format!("expected a whole number (0 or more) after '{op}', found '{text}'"),
                ),
            }
        }
    }

    fn set_value(&mut self, kind: MetricKind) -> Result<MetricValue, RuleError> {
        let element = match kind {
            MetricKind::PortSet => "a port",
            MetricKind::CidrSet => "an IP address or CIDR block",
            MetricKind::NumberSet => "a number",
            _ => "a string",
        };
        if !matches!(self.peek(), Some(Token { tok: Tok::Open, .. })) {
            return self.error_here(format!("expected '{{' to open the set, found {}", self.found()));
        }
        self.pos += 1;
        let mut value = match kind {
            MetricKind::PortSet => MetricValue::ports(Vec::new()),
            MetricKind::CidrSet => MetricValue::cidrs(Vec::<String>::new()),
            MetricKind::NumberSet => MetricValue::numbers(Vec::new()),
            _ => MetricValue::strings(Vec::<String>::new()),
        };
        if matches!(self.peek(), Some(Token { tok: Tok::Close, .. })) {
            self.pos += 1;
            return Ok(value);
        }
        loop {
            let Some((text, span)) = self.word(true) else {
                return self.error_here(format!("expected {element} in the set, found {}", self.found()));
            };
            let bad =
                |what: &str| RuleError { message: format!("'{text}' is not {what}"), span: span.clone() };
            match kind {
                MetricKind::PortSet => {
                    let port = text.parse::<u16>().map_err(|_| bad("a port (0 to 65535)"))?;
                    value.ports.get_or_insert_default().push(port);
                }
                MetricKind::CidrSet => {
                    text.parse::<Cidr>().map_err(|_| bad("an IP address or CIDR block"))?;
                    value.cidrs.get_or_insert_default().push(text);
                }
                MetricKind::NumberSet => {
                    let n = parse_number(&text).ok_or_else(|| bad("a number"))?;
                    value.numbers.get_or_insert_default().push(n);
                }
                _ => value.strings.get_or_insert_default().push(text),
            }
            match self.next() {
                Some(Token { tok: Tok::Comma, .. }) => {}
                Some(Token { tok: Tok::Close, .. }) => return Ok(value),
                _ => {
                    self.pos -= 1;
                    let last = &self.text[span];
                    return self
                        .error_here(format!("expected ',' or '}}' after '{last}', found {}", self.found()));
                }
            }
        }
    }

    /// `5m`, `300s`, `1h`: one of AWS's windows.
    fn duration(&mut self) -> Result<i64, RuleError> {
        const ALLOWED: &str = "5m, 10m, 15m, 30m or 1h";
        let Some((text, span)) = self.word(false) else {
            return self
                .error_here(format!("expected a window ({ALLOWED}) after 'over', found {}", self.found()));
        };
        let seconds = text.char_indices().last().and_then(|(i, unit)| {
            let scale = match unit.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
            let amount: i64 =
                text[..i].parse().ok().filter(|_| text[..i].bytes().all(|b| b.is_ascii_digit()))?;
            amount.checked_mul(scale)
        });
        match seconds {
            Some(s) if DURATIONS_SECONDS.iter().any(|d| i64::from(*d) == s) => Ok(s),
            _ => self.error_at(span, format!("the window after 'over' must be {ALLOWED}, found '{text}'")),
        }
    }

    /// `N` or `N datapoints`, with N from 1 to 10.
    fn datapoints(&mut self, after: &str) -> Result<i64, RuleError> {
        let Some((text, span)) = self.word(false) else {
            return self
                .error_here(format!("expected a count of 1 to 10 after '{after}', found {}", self.found()));
        };
        let n = match text.parse::<i64>() {
            Ok(n @ 1..=10) if text.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return self
                    .error_at(span, format!("expected a count of 1 to 10 after '{after}', found '{text}'"));
            }
        };
        if !self.eat_keyword("datapoints") {
            self.eat_keyword("datapoint");
        }
        Ok(n)
    }
}

/// What a metric of this kind measures, for messages.
fn kind_text(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter | MetricKind::Gauge | MetricKind::Number => "a number",
        MetricKind::PortSet => "a set of ports",
        MetricKind::CidrSet => "a set of addresses",
        MetricKind::NumberSet => "a set of numbers",
        MetricKind::StringSet => "a set of strings",
    }
}

/// The rule operator that alarms where the AWS (normal) operator `op` stops holding.
fn alarm_symbol(op: ComparisonOperator) -> Option<&'static str> {
    match op {
        ComparisonOperator::LessThanEquals => Some("'>'"),
        ComparisonOperator::LessThan => Some("'>='"),
        ComparisonOperator::GreaterThanEquals => Some("'<'"),
        ComparisonOperator::GreaterThan => Some("'<='"),
        _ => None,
    }
}

fn resolve_metric(
    name: &str,
    custom_metric_type: &dyn Fn(&str) -> Option<CustomMetricType>,
) -> Result<Metric, String> {
    if name.starts_with("aws:") {
        return AwsMetric::parse(name).map(Metric::Aws).ok_or_else(|| {
            let names: Vec<&str> = AwsMetric::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown metric '{name}'; the aws: metrics are {}", names.join(", "))
        });
    }
    match custom_metric_type(name) {
        Some(metric_type) => Ok(Metric::Custom { name: name.to_owned(), metric_type }),
        None => Err(format!("'{name}' is neither an aws: metric nor a defined custom metric")),
    }
}

/// A finite number (`f64`'s syntax; `inf` and `NaN` are not thresholds).
fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

const NAME_RULE: &str = "must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'";

fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}
