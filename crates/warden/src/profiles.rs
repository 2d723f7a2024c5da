//! `warden profiles`: security profiles whose behaviors are written as rules
//! (`alarm when aws:all-bytes-out > 35000 over 5m`; the language is [`warden_detect::rule`]'s):
//! `CreateSecurityProfile`, `DescribeSecurityProfile`, `UpdateSecurityProfile`,
//! `DeleteSecurityProfile`, `ListSecurityProfiles`, `AttachSecurityProfile`,
//! `DetachSecurityProfile` and `ListTargetsForSecurityProfile`.
//!
//! Rules are parsed before anything is changed, so a bad rule is reported by its bad word, not
//! as a JSON member the server refused. The types of custom metrics, which decide how a rule's
//! value is read, are looked up through the API as the parser meets them.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::Context as _;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use warden_detect::{CustomMetricType, aws, rule};

use crate::behaviors;
use crate::client::{Api, ApiArgs, ApiError, ListArgs, Paging, label};
use crate::output::{Column, Format, Printer, col, emit, render_record, time};

/// The rule language, for `create --help` and `update --help`.
const RULE_SYNTAX: &str = "\
Rules:
  [NAME:] alarm when METRIC CONDITION [OPTION ...]

  CONDITION  > N | >= N | < N | <= N    numeric metrics: aws: counts, custom numbers
             not in {A, B, ...}         alarm when an element is outside the set
             in {A, B, ...}             alarm when an element is inside the set
  OPTION     over 5m|10m|15m|30m|1h     the window counters are summed over (durationSeconds)
             for N datapoints           alarm after N violating datapoints in a row (1-10)
             clear after N datapoints   clear after N conforming datapoints in a row (1-10)
             on dimension NAME [not]    only messages on (with not: off) the dimension's topics
             quietly                    record violations but send no alert (suppressAlerts)
             exported                   export the metric (exportMetric)

  AWS criteria describe normal behavior; a rule says when to alarm, so its operator is the
  inverse: 'alarm when aws:all-bytes-out > 35000' is stored as less-than-equals 35000, and
  'not in {22, 443}' as in-port-set. The metric decides the values: whole numbers for aws:
  counts, ports, IP addresses or CIDR blocks, and for custom metrics their type (strings may
  be quoted: {sshd, \"my agent\"}). Without NAME:, a behavior is named after its metric.
  `warden profiles show` prints each behavior back as a rule.";

const EXAMPLES: &str = "\
Examples:
  warden topics create ops
  warden profiles create OutboundBytes \\
      --rule 'alarm when aws:all-bytes-out > 35000 over 5m' \\
      --rule 'ports: alarm when aws:listening-tcp-ports not in {22, 443}' \\
      --alert-topic ops --attach all
  warden profiles show OutboundBytes
  warden profiles update OutboundBytes --add-rule 'alarm when aws:num-authorization-failures > 5 over 5m'
  warden profiles update OutboundBytes --remove-rule ports --mitigate quarantine
  warden profiles attach OutboundBytes lab
  warden profiles list --metric aws:all-bytes-out";

/// Security profiles: behaviors written as rules, alert topics, automatic mitigation, targets.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ProfilesArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ProfilesCommand,
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// Create a security profile from rules, optionally alerting, mitigating and attached.
    ///
    /// Every rule is checked before anything is created. With --output json: the
    /// CreateSecurityProfile reply, plus `securityProfileTargets` when --attach was given.
    #[command(after_long_help = RULE_SYNTAX)]
    Create {
        /// The profile name: 1 to 128 of [a-zA-Z0-9:_-].
        name: String,
        /// A behavior, as a rule (see Rules below); repeat for more.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// What the profile is for.
        #[arg(long)]
        description: Option<String>,
        /// Send an alert to this alert topic (see `warden topics`) on every violation event.
        #[arg(long, value_name = "TOPIC")]
        alert_topic: Option<String>,
        /// Run this mitigation action (see `warden actions`) on every new violation; repeat for
        /// more (at most 5).
        #[arg(long = "mitigate", value_name = "ACTION")]
        mitigate: Vec<String>,
        /// Attach the profile to all things (all) or to a thing group; repeat for more.
        #[arg(long = "attach", value_name = "all|GROUP")]
        attach: Vec<String>,
    },
    /// List security profiles, optionally those that use a metric or a dimension.
    List {
        /// Only profiles whose behaviors or retained metrics use this metric.
        #[arg(long, value_name = "METRIC", conflicts_with = "dimension")]
        metric: Option<String>,
        /// Only profiles whose behaviors or retained metrics use this dimension.
        #[arg(long, value_name = "DIMENSION")]
        dimension: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a security profile, its behaviors as rules, and its targets.
    Show {
        /// The profile name.
        name: String,
    },
    /// Change a security profile's rules, description, alert topic or mitigation actions.
    ///
    /// --add-rule and --remove-rule edit the profile's behaviors as they are now, and the update
    /// applies only if nobody changed the profile in between.
    #[command(after_long_help = RULE_SYNTAX)]
    #[command(group(
        ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args([
                "rules", "add_rules", "remove_rules", "description", "alert_topic", "no_alert_topic",
                "mitigate", "no_mitigate",
            ]),
    ))]
    Update {
        /// The profile name.
        name: String,
        /// Replace all behaviors with these rules; repeat for more.
        #[arg(long = "rule", value_name = "RULE", conflicts_with_all = ["add_rules", "remove_rules"])]
        rules: Vec<String>,
        /// Add a behavior, as a rule; repeat for more.
        #[arg(long = "add-rule", value_name = "RULE")]
        add_rules: Vec<String>,
        /// Remove the behavior of this name; repeat for more.
        #[arg(long = "remove-rule", value_name = "BEHAVIOR")]
        remove_rules: Vec<String>,
        /// A new description ("" removes it).
        #[arg(long)]
        description: Option<String>,
        /// Send alerts to this alert topic instead.
        #[arg(long, value_name = "TOPIC", conflicts_with = "no_alert_topic")]
        alert_topic: Option<String>,
        /// Send no alerts.
        #[arg(long)]
        no_alert_topic: bool,
        /// Run these mitigation actions on new violations instead; repeat for more.
        #[arg(long = "mitigate", value_name = "ACTION", conflicts_with = "no_mitigate")]
        mitigate: Vec<String>,
        /// Run no mitigation action automatically.
        #[arg(long)]
        no_mitigate: bool,
        /// Fail with VersionConflictException unless the profile is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Delete a security profile (its violations stay in the history).
    ///
    /// Deleting a profile that does not exist succeeds, as in AWS.
    Delete {
        /// The profile name.
        name: String,
        /// Fail with VersionConflictException unless the profile is at this version.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Attach a security profile to all things (all) or to thing groups.
    Attach {
        /// The profile name.
        name: String,
        /// all, a thing group name, or a target ARN.
        #[arg(value_name = "all|GROUP", required = true)]
        targets: Vec<String>,
    },
    /// Detach a security profile from all things (all) or from thing groups.
    Detach {
        /// The profile name.
        name: String,
        /// all, a thing group name, or a target ARN.
        #[arg(value_name = "all|GROUP", required = true)]
        targets: Vec<String>,
    },
}

const LIST: &[Column] = &[col("NAME", "/name"), col("ARN", "/arn")];
const CREATED: &[Column] =
    &[col("NAME", "/securityProfileName"), col("ARN", "/securityProfileArn"), col("TARGETS", "/targetsText")];
/// `show`: the description, then the behaviors as rules. `...Text` members are added to the
/// reply for the table only.
const SHOW: &[Column] = &[
    col("NAME", "/securityProfileName"),
    col("ARN", "/securityProfileArn"),
    col("DESCRIPTION", "/securityProfileDescription"),
    col("VERSION", "/version"),
    col("ALERTS", "/alertsText"),
    col("MITIGATE", "/automaticMitigationActions"),
    col("TARGETS", "/targetsText"),
    col("RETAINED", "/retainedText"),
    time("CREATED", "/creationDate"),
    time("MODIFIED", "/lastModifiedDate"),
    col("RULES", "/rulesText"),
];

pub fn run(args: ProfilesArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        ProfilesCommand::Create { name, rules, description, alert_topic, mitigate, attach } => {
            let behaviors = parse_rules(&api, &rules)?;
            let mut body = json!({});
            if !behaviors.is_empty() {
                body["behaviors"] = behaviors.iter().map(behaviors::to_json).collect();
            }
            if let Some(description) = description {
                body["securityProfileDescription"] = json!(description);
            }
            if let Some(topic) = alert_topic {
                body["alertTargets"] = alert_targets(&api, &topic)?;
            }
            if !mitigate.is_empty() {
                body["automaticMitigationActions"] = json!(mitigate);
            }
            let targets: Vec<String> =
                attach.iter().map(|t| target_arn(&api, t)).collect::<Result<_, _>>()?;
            let mut reply = api.post(profile_path(&name)).json(body).send()?;
            for (given, arn) in attach.iter().zip(&targets) {
                set_target(&api, true, &name, arn).with_context(|| {
                    format!("security profile {name} was created, but attaching it to {given} failed")
                })?;
            }
            if !targets.is_empty() {
                reply["securityProfileTargets"] = targets.iter().map(|arn| json!({ "arn": arn })).collect();
            }
            if out.format == Format::Json {
                return out.json(&reply);
            }
            reply["targetsText"] = json!(target_names(&targets));
            out.record(&reply, CREATED)
        }
        ProfilesCommand::List { metric, dimension, list } => {
            let reply = api
                .get("/security-profiles".into())
                .query_opt("metricName", metric)
                .query_opt("dimensionName", dimension)
                .paginate("securityProfileIdentifiers", Paging::Token, list.max())?;
            out.list(&reply, "securityProfileIdentifiers", LIST)
        }
        ProfilesCommand::Show { name } => {
            let reply = api.get(profile_path(&name)).send()?;
            print_profile(&api, out, reply)
        }
        ProfilesCommand::Update {
            name,
            rules,
            add_rules,
            remove_rules,
            description,
            alert_topic,
            no_alert_topic,
            mitigate,
            no_mitigate,
            mut expected_version,
        } => {
            let mut body = json!({});
            if !rules.is_empty() {
                body["behaviors"] = parse_rules(&api, &rules)?.iter().map(behaviors::to_json).collect();
            }
            if !add_rules.is_empty() || !remove_rules.is_empty() {
                let added = parse_rules(&api, &add_rules)?;
                let current = api.get(profile_path(&name)).send()?;
                // The edit is based on this read, so it must apply to exactly this version.
                expected_version = expected_version.or(current["version"].as_u64());
                body["behaviors"] = edit_behaviors(&name, &current, &remove_rules, &added)?.into();
            }
            if let Some(description) = description {
                body["securityProfileDescription"] = json!(description);
            }
            if let Some(topic) = alert_topic {
                body["alertTargets"] = alert_targets(&api, &topic)?;
            }
            if no_alert_topic {
                body["deleteAlertTargets"] = json!(true);
            }
            if !mitigate.is_empty() || no_mitigate {
                body["automaticMitigationActions"] = json!(mitigate);
            }
            let reply = api
                .patch(profile_path(&name))
                .query_opt("expectedVersion", expected_version.map(|v| v.to_string()))
                .json(body)
                .send()?;
            print_profile(&api, out, reply)
        }
        ProfilesCommand::Delete { name, expected_version } => {
            let reply = api
                .delete(profile_path(&name))
                .query_opt("expectedVersion", expected_version.map(|v| v.to_string()))
                .send()?;
            out.done(&reply, format!("Deleted security profile {name}."))
        }
        ProfilesCommand::Attach { name, targets } => attach_all(&api, out, true, &name, &targets),
        ProfilesCommand::Detach { name, targets } => attach_all(&api, out, false, &name, &targets),
    }
}

/// `/security-profiles/{securityProfileName}`.
fn profile_path(name: &str) -> String {
    format!("/security-profiles/{}", label(name))
}

/// Parses every rule, numbering them in messages as the user gave them. A bad rule is shown with
/// its bad word underlined.
fn parse_rules(api: &Api, rules: &[String]) -> anyhow::Result<Vec<aws::Behavior>> {
    let lookup = CustomMetrics { api, types: RefCell::default(), failure: RefCell::default() };
    let mut out: Vec<aws::Behavior> = Vec::with_capacity(rules.len());
    for (i, text) in rules.iter().enumerate() {
        let parsed = rule::parse(text, |name| lookup.metric_type(name));
        if let Some(e) = lookup.failure.take() {
            return Err(e.context(format!("rule {}: cannot look up its custom metric", i + 1)));
        }
        let behavior = parsed.map_err(|e| {
            let underline: Vec<String> = e.underline(text).lines().map(|l| format!("  {l}")).collect();
            anyhow::anyhow!("rule {}: {e}\n{}", i + 1, underline.join("\n"))
        })?;
        if let Some(first) = out.iter().position(|b| b.name == behavior.name) {
            anyhow::bail!(
                "rules {} and {} are both named {}; name one of them ('NAME: alarm when ...')",
                first + 1,
                i + 1,
                behavior.name
            );
        }
        out.push(behavior);
    }
    Ok(out)
}

/// The types of custom metrics, read from the API once each (`DescribeCustomMetric`). The
/// parser asks by callback, which cannot fail, so a failure other than "no such metric" is kept
/// here for the caller to report.
struct CustomMetrics<'a> {
    api: &'a Api,
    types: RefCell<HashMap<String, Option<CustomMetricType>>>,
    failure: RefCell<Option<anyhow::Error>>,
}

impl CustomMetrics<'_> {
    fn metric_type(&self, name: &str) -> Option<CustomMetricType> {
        if let Some(known) = self.types.borrow().get(name) {
            return *known;
        }
        let found = match self.api.get(format!("/custom-metric/{}", label(name))).send() {
            Ok(reply) => reply["metricType"].as_str().and_then(CustomMetricType::parse),
            // Not found, or not even a valid name: either way not a defined metric.
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|e| e.is_not_found() || e.code == "InvalidRequestException") =>
            {
                None
            }
            Err(e) => {
                self.failure.borrow_mut().get_or_insert(e);
                None
            }
        };
        self.types.borrow_mut().insert(name.to_owned(), found);
        found
    }
}

/// The profile's behaviors (as the API's JSON, untouched) without `remove` and with `add`.
fn edit_behaviors(
    profile: &str,
    current: &Value,
    remove: &[String],
    add: &[aws::Behavior],
) -> anyhow::Result<Vec<Value>> {
    let mut list: Vec<Value> = current["behaviors"].as_array().cloned().unwrap_or_default();
    let name_of = |b: &Value| b["name"].as_str().unwrap_or_default().to_owned();
    for name in remove {
        let Some(i) = list.iter().position(|b| name_of(b) == *name) else {
            anyhow::bail!("security profile {profile} has no behavior named {name}");
        };
        list.remove(i);
    }
    for b in add {
        if list.iter().any(|existing| name_of(existing) == b.name) {
            anyhow::bail!(
                "security profile {profile} already has a behavior named {name}; remove it with \
                 --remove-rule {name}, or give the new rule another name ('NAME: alarm when ...')",
                name = b.name
            );
        }
        list.push(behaviors::to_json(b));
    }
    Ok(list)
}

/// `alertTargets` for an alert topic given by name (or ARN). The topic must exist, and its ARN is
/// the one the server reports; the role AWS requires is a placeholder of the same account.
fn alert_targets(api: &Api, topic: &str) -> anyhow::Result<Value> {
    let arn = if topic.starts_with("arn:") {
        topic.to_owned()
    } else {
        let reply = api.get(format!("/warden/alert-topics/{}", label(topic))).send().map_err(|e| {
            if e.downcast_ref::<ApiError>().is_some_and(ApiError::is_not_found) {
                anyhow::anyhow!(
                    "alert topic {topic} does not exist; create it with `warden topics create {topic}`"
                )
            } else {
                e
            }
        })?;
        reply["topicArn"].as_str().context("DescribeAlertTopic returned no topicArn")?.to_owned()
    };
    // arn:aws:sns:{region}:{account}:{name}
    let account = match arn.split(':').nth(4).filter(|a| !a.is_empty()) {
        Some(account) => account.to_owned(),
        None => api.scope()?.account,
    };
    let role = format!("arn:aws:iam::{account}:role/warden");
    Ok(json!({ "SNS": { "alertTargetArn": arn, "roleArn": role } }))
}

/// A target as the API names it: `all` is all things, an ARN is taken as it is, anything else
/// is a thing group.
fn target_arn(api: &Api, target: &str) -> anyhow::Result<String> {
    if target.starts_with("arn:") {
        return Ok(target.to_owned());
    }
    let scope = api.scope()?;
    Ok(if target == "all" {
        scope.iot_arn("all/things")
    } else {
        scope.iot_arn(&format!("thinggroup/{target}"))
    })
}

/// Targets as the command line names them: `all`, group names, other ARNs' resources.
fn target_names(arns: &[String]) -> String {
    let names: Vec<&str> = arns
        .iter()
        .map(|arn| {
            let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn);
            match resource {
                "all/things" => "all",
                r => r.strip_prefix("thinggroup/").unwrap_or(r),
            }
        })
        .collect();
    if names.is_empty() { "-".to_owned() } else { names.join(", ") }
}

/// `AttachSecurityProfile` or `DetachSecurityProfile`.
fn set_target(api: &Api, attach: bool, profile: &str, target_arn: &str) -> anyhow::Result<Value> {
    let path = format!("{}/targets", profile_path(profile));
    let call = if attach { api.put(path) } else { api.delete(path) };
    call.query("securityProfileTargetArn", target_arn).send()
}

fn attach_all(
    api: &Api,
    out: Printer,
    attach: bool,
    profile: &str,
    targets: &[String],
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    let mut reply = json!({});
    for target in targets {
        let arn = target_arn(api, target)?;
        reply = set_target(api, attach, profile, &arn)?;
        let what = match target_names(std::slice::from_ref(&arn)).as_str() {
            "all" => "all things".to_owned(),
            name if arn.contains(":thinggroup/") => format!("thing group {name}"),
            _ => arn.clone(),
        };
        lines.push(if attach {
            format!("Attached security profile {profile} to {what}.")
        } else {
            format!("Detached security profile {profile} from {what}.")
        });
    }
    out.done(&reply, lines.join("\n"))
}

/// A profile as `DescribeSecurityProfile` (or `UpdateSecurityProfile`) returned it: the reply in
/// JSON, or a table with its targets and its behaviors as rules.
fn print_profile(api: &Api, out: Printer, mut reply: Value) -> anyhow::Result<()> {
    if out.format == Format::Json {
        return out.json(&reply);
    }
    let name = reply["securityProfileName"].as_str().unwrap_or_default().to_owned();
    let targets = api.get(format!("{}/targets", profile_path(&name))).paginate(
        "securityProfileTargets",
        Paging::Token,
        None,
    )?;
    let arns: Vec<String> = targets["securityProfileTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["arn"].as_str().map(str::to_owned))
        .collect();
    reply["targetsText"] = json!(target_names(&arns));
    let alerts: Vec<&str> = reply["alertTargets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, t)| t["alertTargetArn"].as_str())
        // An SNS topic ARN ends with the topic's name, which is what `--alert-topic` takes.
        .map(|arn| if arn.starts_with("arn:aws:sns:") { arn.rsplit(':').next().unwrap_or(arn) } else { arn })
        .collect();
    if !alerts.is_empty() {
        reply["alertsText"] = json!(alerts.join(", "));
    }
    let retained: Vec<&str> = reply["additionalMetricsToRetainV2"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["metric"].as_str())
        .chain(reply["additionalMetricsToRetain"].as_array().into_iter().flatten().filter_map(Value::as_str))
        .collect();
    if !retained.is_empty() {
        reply["retainedText"] = json!(retained.join(", "));
    }
    let rules: Vec<String> = reply["behaviors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| rule::format(&behaviors::from_json(b)))
        .collect();
    if rules.is_empty() {
        reply["rulesText"] = json!("-");
        return emit(&render_record(&reply, SHOW));
    }
    let mut text = render_record(&reply, SHOW);
    text.push_str("RULES\n");
    for rule in rules {
        text.push_str(&format!("  {rule}\n"));
    }
    emit(&text)
}
