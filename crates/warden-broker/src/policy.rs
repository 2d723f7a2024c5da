//! AWS IoT policy documents (the subset Warden enforces) and their evaluation.
//!
//! A policy is JSON in AWS's shape: `Allow`/`Deny` statements over the actions `iot:Connect`,
//! `iot:Publish`, `iot:Subscribe` and `iot:Receive` (wildcards such as `iot:*` allowed), on
//! resource ARNs with `*` and `?` wildcards and the variables `${iot:Connection.Thing.ThingName}`,
//! `${iot:ClientId}` and `${iot:Certificate.Subject.CommonName}`. An explicit `Deny` wins over any
//! `Allow`; nothing allowed is denied.
//!
//! What Warden cannot enforce is refused when the policy is parsed, never silently ignored:
//! ignoring a `Condition` on an `Allow` would grant more than the author meant. Other `iot:`
//! actions (shadows, jobs, ...) are accepted and simply never asked about, so policies written for
//! AWS load unchanged. Pure logic: no I/O.

use std::fmt;

use serde_json::Value;

/// What an MQTT client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// CONNECT, on `client/{clientId}`.
    Connect,
    /// PUBLISH, on `topic/{topic}`.
    Publish,
    /// SUBSCRIBE, on `topicfilter/{filter}`.
    Subscribe,
    /// Delivery of a message to the client, on `topic/{topic}`.
    Receive,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Connect => "iot:Connect",
            Action::Publish => "iot:Publish",
            Action::Subscribe => "iot:Subscribe",
            Action::Receive => "iot:Receive",
        }
    }
}

/// The values of policy variables for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The thing name: the verified certificate's CN.
    pub thing_name: &'a str,
    pub client_id: &'a str,
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A `Deny` statement matched; no `Allow` can override it.
    ExplicitDeny,
    /// No statement allowed it.
    ImplicitDeny,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

/// A parsed, enforceable policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    deny: bool,
    actions: Vec<Pattern>,
    resources: Vec<Pattern>,
}

/// A resource or action pattern: literal text, `*`, `?` and policy variables.
#[derive(Debug, Clone, PartialEq)]
struct Pattern(Vec<Token>);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    AnyRun,
    AnyChar,
    Var(Variable),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Variable {
    ThingName,
    ClientId,
}

/// Largest document AWS accepts (policy size limit), to bound parsing work.
const MAX_DOCUMENT_BYTES: usize = 20 * 1024;

impl Policy {
    /// Parses a policy document, refusing anything Warden would not enforce as written.
    pub fn parse(document: &str) -> Result<Policy, PolicyError> {
        let err = |msg: String| Err(PolicyError(msg));
        if document.len() > MAX_DOCUMENT_BYTES {
            return err(format!(
                "policy document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                document.len()
            ));
        }
        let doc: Value = serde_json::from_str(document)
            .map_err(|e| PolicyError(format!("policy document is not JSON: {e}")))?;
        let Value::Object(doc) = doc else {
            return err("policy document must be a JSON object".into());
        };
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Statement" | "Id") {
                return err(format!("unsupported policy element \"{key}\""));
            }
        }
        match doc.get("Version") {
            None | Some(Value::String(_)) => {}
            Some(_) => return err("Version must be a string such as \"2012-10-17\"".into()),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(item @ Value::Object(_)) => vec![item],
            Some(_) => return err("Statement must be an object or an array of objects".into()),
            None => return err("policy document has no Statement".into()),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| statement(s).map_err(|e| PolicyError(format!("Statement[{i}]: {}", e.0))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// Evaluates several policies together (all attached to a certificate and its thing's
    /// groups): any matching `Deny` wins, then any matching `Allow`.
    pub fn evaluate<'p>(
        policies: impl IntoIterator<Item = &'p Policy>,
        action: Action,
        resource: &str,
        ctx: &Context,
    ) -> Decision {
        let mut allowed = false;
        for policy in policies {
            for s in &policy.statements {
                let applies = s.actions.iter().any(|a| a.matches(action.name(), ctx))
                    && s.resources.iter().any(|r| r.matches(resource, ctx));
                if applies {
                    if s.deny {
                        return Decision::ExplicitDeny;
                    }
                    allowed = true;
                }
            }
        }
        if allowed { Decision::Allow } else { Decision::ImplicitDeny }
    }
}

fn statement(v: &Value) -> Result<Statement, PolicyError> {
    let err = |msg: String| Err(PolicyError(msg));
    let Value::Object(s) = v else {
        return err("must be an object".into());
    };
    for key in s.keys() {
        match key.as_str() {
            "Effect" | "Action" | "Resource" | "Sid" => {}
            "Condition" | "NotAction" | "NotResource" | "Principal" | "NotPrincipal" => {
                return err(format!(
                    "\"{key}\" is not supported by Warden; rewrite the statement without it"
                ));
            }
            other => return err(format!("unknown statement element \"{other}\"")),
        }
    }
    let deny = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => false,
        Some("Deny") => true,
        _ => return err("Effect must be \"Allow\" or \"Deny\"".into()),
    };
    let actions = strings(s.get("Action"), "Action")?
        .into_iter()
        .map(|a| {
            if a == "*" || a.starts_with("iot:") {
                Pattern::parse(a, false)
            } else {
                Err(PolicyError(format!("Action \"{a}\" is not an iot: action")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let resources = strings(s.get("Resource"), "Resource")?
        .into_iter()
        .map(|r| Pattern::parse(r, true))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Statement { deny, actions, resources })
}

fn strings<'v>(v: Option<&'v Value>, name: &str) -> Result<Vec<&'v str>, PolicyError> {
    let err = || PolicyError(format!("{name} must be a string or an array of strings"));
    match v {
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().map(|i| i.as_str().ok_or_else(err)).collect()
        }
        None => Err(PolicyError(format!("{name} is missing"))),
        _ => Err(err()),
    }
}

impl Pattern {
    fn parse(text: &str, variables: bool) -> Result<Pattern, PolicyError> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                let end =
                    rest.find('}').ok_or_else(|| PolicyError(format!("unclosed variable in \"{text}\"")))?;
                let var = match &rest[2..end] {
                    "iot:Connection.Thing.ThingName" | "iot:Certificate.Subject.CommonName" => {
                        Variable::ThingName
                    }
                    "iot:ClientId" => Variable::ClientId,
                    other => {
                        return Err(PolicyError(format!(
                            "policy variable ${{{other}}} is not supported (supported: \
                             iot:Connection.Thing.ThingName, iot:ClientId, iot:Certificate.Subject.CommonName)"
                        )));
                    }
                };
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Var(var));
                rest = &rest[end + 1..];
                continue;
            }
            match c {
                '*' => {
                    flush(&mut literal, &mut tokens);
                    tokens.push(Token::AnyRun);
                }
                '?' => {
                    flush(&mut literal, &mut tokens);
                    tokens.push(Token::AnyChar);
                }
                c => literal.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut literal, &mut tokens);
        Ok(Pattern(tokens))
    }

    /// Glob match. Variable values match literally: a client id holding `*` widens nothing.
    fn matches(&self, text: &str, ctx: &Context) -> bool {
        glob(&self.0, text, ctx)
    }
}

fn flush(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal)));
    }
}

/// One character of a pattern after variables are substituted.
#[derive(Clone, Copy, PartialEq)]
enum Glob {
    Lit(char),
    AnyChar,
    AnyRun,
}

/// Wildcard matching in O(pattern x text) with the classic single-backtrack-point algorithm,
/// so no pattern a user writes can make evaluation exponential.
fn glob(tokens: &[Token], text: &str, ctx: &Context) -> bool {
    let mut p = Vec::with_capacity(text.len());
    for t in tokens {
        match t {
            Token::Literal(lit) => p.extend(lit.chars().map(Glob::Lit)),
            Token::Var(Variable::ThingName) => p.extend(ctx.thing_name.chars().map(Glob::Lit)),
            Token::Var(Variable::ClientId) => p.extend(ctx.client_id.chars().map(Glob::Lit)),
            Token::AnyChar => p.push(Glob::AnyChar),
            Token::AnyRun => p.push(Glob::AnyRun),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(Glob::AnyChar) => (pi, ti) = (pi + 1, ti + 1),
            Some(Glob::Lit(c)) if *c == t[ti] => (pi, ti) = (pi + 1, ti + 1),
            Some(Glob::AnyRun) => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            _ => match backtrack {
                // Let the last star swallow one more character and retry from there.
                Some((star, from)) => {
                    backtrack = Some((star, from + 1));
                    (pi, ti) = (star + 1, from + 1);
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|g| *g == Glob::AnyRun)
}

/// Builds the resource ARNs the broker asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    prefix: String,
}

impl Arns {
    /// `region` and `account` as configured (defaults `local` and `000000000000`).
    pub fn new(region: &str, account: &str) -> Arns {
        Arns { prefix: format!("arn:aws:iot:{region}:{account}:") }
    }

    pub fn client(&self, client_id: &str) -> String {
        format!("{}client/{client_id}", self.prefix)
    }

    pub fn topic(&self, topic: &str) -> String {
        format!("{}topic/{topic}", self.prefix)
    }

    pub fn topic_filter(&self, filter: &str) -> String {
        format!("{}topicfilter/{filter}", self.prefix)
    }

    /// The resource ARN of `action` on `target` (client id, topic or filter).
    pub fn resource(&self, action: Action, target: &str) -> String {
        match action {
            Action::Connect => self.client(target),
            Action::Publish | Action::Receive => self.topic(target),
            Action::Subscribe => self.topic_filter(target),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allowed",
            Decision::ExplicitDeny => "denied by an explicit Deny",
            Decision::ImplicitDeny => "not allowed by any policy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARNS: fn() -> Arns = || Arns::new("local", "000000000000");
    const CTX: Context<'static> = Context { thing_name: "dev-1", client_id: "dev-1/agent" };

    fn check(policies: &[&str], action: Action, target: &str, expect: Decision) {
        let policies: Vec<Policy> = policies.iter().map(|p| Policy::parse(p).unwrap()).collect();
        let resource = ARNS().resource(action, target);
        assert_eq!(Policy::evaluate(&policies, action, &resource, &CTX), expect, "{action:?} {target}");
    }

    fn parse_err(doc: &str) -> String {
        Policy::parse(doc).unwrap_err().0
    }

    /// The default thing policy as DESIGN.md describes it.
    const THING: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": [
          "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
          "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}/*"]},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": "arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": "arn:aws:iot:*:*:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}
      ]
    }"#;

    const QUARANTINE: &str = r#"{
      "Statement": [{"Effect": "Deny", "Action": ["iot:Publish"],
        "Resource": "arn:aws:iot:*:*:topic/devices/*"}]
    }"#;

    const TELEMETRY: &str = r#"{"Statement": {"Effect": "Allow", "Action": "iot:Pub*",
        "Resource": "arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/telemetry"}}"#;

    #[test]
    fn thing_uses_its_own_topics_only() {
        use Decision::*;
        check(&[THING], Action::Connect, "dev-1", Allow);
        check(&[THING], Action::Connect, "dev-1/agent", Allow);
        check(&[THING], Action::Connect, "dev-10", ImplicitDeny);
        check(&[THING], Action::Connect, "dev-2", ImplicitDeny);
        check(&[THING], Action::Publish, "$aws/things/dev-1/defender/metrics/cbor", Allow);
        check(&[THING], Action::Publish, "$aws/things/dev-2/defender/metrics/cbor", ImplicitDeny);
        check(&[THING], Action::Publish, "$aws/things/dev-10/defender/metrics/cbor", ImplicitDeny);
        check(&[THING], Action::Subscribe, "$aws/things/dev-1/defender/metrics/cbor/+", Allow);
        check(&[THING], Action::Subscribe, "$aws/things/+/defender/metrics/cbor/accepted", ImplicitDeny);
        check(&[THING], Action::Subscribe, "#", ImplicitDeny);
        check(&[THING], Action::Receive, "$aws/things/dev-1/defender/metrics/cbor/accepted", Allow);
    }

    #[test]
    fn explicit_deny_wins_over_allow_in_any_policy() {
        use Decision::*;
        check(&[THING, TELEMETRY], Action::Publish, "devices/dev-1/telemetry", Allow);
        check(&[THING, TELEMETRY, QUARANTINE], Action::Publish, "devices/dev-1/telemetry", ExplicitDeny);
        check(&[QUARANTINE, THING, TELEMETRY], Action::Publish, "devices/dev-1/telemetry", ExplicitDeny);
        check(&[THING, QUARANTINE], Action::Publish, "$aws/things/dev-1/defender/metrics/json", Allow);
        check(&[], Action::Connect, "dev-1", ImplicitDeny);
    }

    #[test]
    fn action_wildcards() {
        let all = r#"{"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}"#;
        let star = r#"{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#;
        for action in [Action::Connect, Action::Publish, Action::Subscribe, Action::Receive] {
            check(&[all], action, "x", Decision::Allow);
            check(&[star], action, "x", Decision::Allow);
        }
        check(&[TELEMETRY], Action::Subscribe, "devices/dev-1/telemetry", Decision::ImplicitDeny);
    }

    #[test]
    fn wildcards_in_resources() {
        let p = r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": ["arn:aws:iot:*:*:topic/a/?/c", "arn:aws:iot:*:*:topic/x/*/z"]}]}"#;
        check(&[p], Action::Publish, "a/b/c", Decision::Allow);
        check(&[p], Action::Publish, "a/bb/c", Decision::ImplicitDeny);
        check(&[p], Action::Publish, "x/1/2/z", Decision::Allow);
        check(&[p], Action::Publish, "x//z", Decision::Allow);
        check(&[p], Action::Publish, "x/z", Decision::ImplicitDeny);
    }

    #[test]
    fn variable_values_match_literally() {
        let p = r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:*:*:topic/c/${iot:ClientId}"}]}"#;
        let policy = Policy::parse(p).unwrap();
        let ctx = Context { thing_name: "t", client_id: "*" };
        let resource = ARNS().topic("c/anything");
        assert_eq!(Policy::evaluate([&policy], Action::Publish, &resource, &ctx), Decision::ImplicitDeny);
        let resource = ARNS().topic("c/*");
        assert_eq!(Policy::evaluate([&policy], Action::Publish, &resource, &ctx), Decision::Allow);
    }

    #[test]
    fn mqtt_wildcards_in_filters_are_plain_characters() {
        let p = r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Subscribe",
            "Resource": "arn:aws:iot:*:*:topicfilter/sensors/+/temp"}]}"#;
        check(&[p], Action::Subscribe, "sensors/+/temp", Decision::Allow);
        check(&[p], Action::Subscribe, "sensors/dev-1/temp", Decision::ImplicitDeny);
    }

    #[test]
    fn unsupported_elements_are_refused_with_a_reason() {
        let e = parse_err(
            r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*",
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}}]}"#,
        );
        assert_eq!(
            e,
            "Statement[0]: \"Condition\" is not supported by Warden; rewrite the statement without it"
        );
        let e = parse_err(
            r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingTypeName}"}]}"#,
        );
        assert!(e.contains("policy variable ${iot:Connection.Thing.ThingTypeName} is not supported"), "{e}");
        assert!(parse_err("[]").contains("must be a JSON object"));
        assert!(parse_err("{}").contains("no Statement"));
        assert!(parse_err("nope").contains("not JSON"));
        assert!(
            parse_err(r#"{"Statement": [{"Effect": "Maybe", "Action": "iot:Connect", "Resource": "*"}]}"#)
                .contains("Effect must be")
        );
        assert!(
            parse_err(r#"{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#)
                .contains("not an iot: action")
        );
        assert!(
            parse_err(r#"{"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}"#)
                .contains("Action must be")
        );
        assert!(
            parse_err(r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Connect"}]}"#)
                .contains("Resource is missing")
        );
        assert!(parse_err(r#"{"Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "${iot:ClientId"}]}"#)
            .contains("unclosed variable"));
    }

    #[test]
    fn other_iot_actions_load_but_grant_nothing_here() {
        let p = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "shadow", "Effect": "Allow",
            "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow"], "Resource": "*"}]}"#;
        check(&[p], Action::Publish, "anything", Decision::ImplicitDeny);
    }

    #[test]
    fn pathological_patterns_terminate() {
        let p = format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Action": "iot:Publish", "Resource": "{}b"}}]}}"#,
            "*a".repeat(12)
        );
        let topic = "a".repeat(60);
        check(&[&p], Action::Publish, &topic, Decision::ImplicitDeny);
    }
}
