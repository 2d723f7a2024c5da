//! `warden actions`: mitigation actions (`CreateMitigationAction`, `ListMitigationActions`,
//! `DescribeMitigationAction`, `DeleteMitigationAction`) and the detect mitigation tasks that
//! apply them to violations (`StartDetectMitigationActionsTask`,
//! `ListDetectMitigationActionsTasks`, `DescribeDetectMitigationActionsTask`,
//! `ListDetectMitigationActionsExecutions`).
//!
//! The two kinds of action that act on a violation's thing are the ones offered:
//! `--add-to-group` (`ADD_THINGS_TO_THING_GROUP`, e.g. a quarantine group whose policy allows
//! little) and `--deactivate-certificate` (`UPDATE_DEVICE_CERTIFICATE`). AWS requires a role with
//! each; Warden ignores it, and the CLI sends a placeholder of the server's account.

use std::hash::{BuildHasher as _, Hasher as _};

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::client::{ApiArgs, ListArgs, Paging, label};
use crate::output::{Column, Format, Printer, col, emit, render_record, time};
use crate::times::{RangeArgs, When, parse_when};

const EXAMPLES: &str = "\
Examples:
  warden groups create quarantine
  warden actions create quarantine --add-to-group quarantine
  warden actions run --violation 37e18651d207bbc74236c13faf146127 --action quarantine
  warden actions run --profile OutboundBytes --behavior all-bytes-out --action quarantine --active-only
  warden actions tasks --since 7d
  warden actions task warden-5f3a9c0d1e2b4a67";

/// Mitigation actions, and tasks that run them on violations.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ActionsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ActionsCommand,
}

#[derive(Debug, Subcommand)]
enum ActionsCommand {
    /// Create a mitigation action: add the thing to thing groups, or deactivate its certificates.
    Create {
        /// The action name: 1 to 128 of [a-zA-Z0-9_-].
        name: String,
        #[command(flatten)]
        kind: ActionKind,
    },
    /// List mitigation actions.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a mitigation action.
    Show {
        /// The action name.
        name: String,
    },
    /// Delete a mitigation action (refused while a profile runs it automatically).
    Delete {
        /// The action name.
        name: String,
    },
    /// Start a task that applies mitigation actions to violations, and print its id.
    ///
    /// The target is either violations by id, or every violation of a security profile
    /// (optionally of one of its behaviors). The task runs in the server; follow it with
    /// `warden actions task ID`.
    #[command(group(ArgGroup::new("target").required(true).args(["violations", "profile"])))]
    Run {
        /// The task id: 1 to 128 of [a-zA-Z0-9_-] [default: a new one].
        task_id: Option<String>,
        /// A violation id; repeat for more (at most 25).
        #[arg(long = "violation", value_name = "ID", conflicts_with = "profile")]
        violations: Vec<String>,
        /// Every violation of this security profile.
        #[arg(long, value_name = "PROFILE")]
        profile: Option<String>,
        /// With --profile: only the violations of this behavior.
        // Also a conflict with --violation: clap leaves `requires` unchecked when the target
        // group is satisfied by --violation.
        #[arg(long, value_name = "BEHAVIOR", requires = "profile", conflicts_with = "violations")]
        behavior: Option<String>,
        /// A mitigation action to apply, in order; repeat for more (at most 5).
        #[arg(long = "action", value_name = "NAME", required = true)]
        actions: Vec<String>,
        /// Only violations that are still active.
        #[arg(long)]
        active_only: bool,
        /// Also violations of behaviors that suppress alerts.
        #[arg(long)]
        include_suppressed: bool,
        /// Only violations that occurred since then: an age (1h, 7d), a date or a time.
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        since: Option<When>,
        /// With --since: only violations that occurred before then [default: now].
        #[arg(long, value_name = "WHEN", value_parser = parse_when, requires = "since")]
        until: Option<When>,
    },
    /// List detect mitigation tasks started in a time range.
    Tasks {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a detect mitigation task and what each of its actions did.
    ///
    /// With --output json: DescribeDetectMitigationActionsTask's reply, plus the task's
    /// `actionsExecutions` (ListDetectMitigationActionsExecutions).
    Task {
        /// The task id.
        id: String,
    },
}

/// Exactly one kind of action.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ActionKind {
    /// Add the violation's thing to this thing group (e.g. a quarantine group); repeat for more
    /// (at most 10).
    #[arg(long = "add-to-group", value_name = "GROUP")]
    add_to_group: Vec<String>,
    /// Set the violation's thing's active certificates INACTIVE.
    #[arg(long)]
    deactivate_certificate: bool,
}

const LIST: &[Column] =
    &[col("NAME", "/actionName"), col("ARN", "/actionArn"), time("CREATED", "/creationDate")];
const CREATED: &[Column] = &[col("NAME", "/actionName"), col("ID", "/actionId"), col("ARN", "/actionArn")];
const SHOW: &[Column] = &[
    col("NAME", "/actionName"),
    col("TYPE", "/actionType"),
    col("DOES", "/paramsText"),
    col("ID", "/actionId"),
    col("ARN", "/actionArn"),
    col("ROLE", "/roleArn"),
    time("CREATED", "/creationDate"),
    time("MODIFIED", "/lastModifiedDate"),
];
const TASKS: &[Column] = &[
    col("TASK", "/taskId"),
    col("STATUS", "/taskStatus"),
    time("STARTED", "/taskStartTime"),
    time("ENDED", "/taskEndTime"),
    col("TARGET", "/targetText"),
    col("ACTIONS", "/actionsText"),
    col("EXECUTED", "/taskStatistics/actionsExecuted"),
    col("SKIPPED", "/taskStatistics/actionsSkipped"),
    col("FAILED", "/taskStatistics/actionsFailed"),
];
const TASK: &[Column] = &[
    col("TASK", "/taskId"),
    col("STATUS", "/taskStatus"),
    time("STARTED", "/taskStartTime"),
    time("ENDED", "/taskEndTime"),
    col("TARGET", "/targetText"),
    col("ACTIONS", "/actionsText"),
    col("ACTIVE ONLY", "/onlyActiveViolationsIncluded"),
    col("SUPPRESSED", "/suppressedAlertsIncluded"),
    col("EXECUTED", "/taskStatistics/actionsExecuted"),
    col("SKIPPED", "/taskStatistics/actionsSkipped"),
    col("FAILED", "/taskStatistics/actionsFailed"),
];
const EXECUTIONS: &[Column] = &[
    col("VIOLATION", "/violationId"),
    col("THING", "/thingName"),
    col("ACTION", "/actionName"),
    col("STATUS", "/status"),
    time("STARTED", "/executionStartDate"),
    col("ERROR", "/errorCode"),
    col("MESSAGE", "/message"),
];

pub fn run(args: ActionsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        ActionsCommand::Create { name, kind } => {
            let params = if kind.deactivate_certificate {
                json!({ "updateDeviceCertificateParams": { "action": "DEACTIVATE" } })
            } else {
                json!({ "addThingsToThingGroupParams": { "thingGroupNames": kind.add_to_group } })
            };
            let body = json!({ "roleArn": api.scope()?.role_arn(), "actionParams": params });
            let mut reply = api.post(action_path(&name)).json(body).send()?;
            if out.format == Format::Table {
                reply["actionName"] = json!(name);
            }
            out.record(&reply, CREATED)
        }
        ActionsCommand::List { list } => {
            let reply = api.get("/mitigationactions/actions".into()).paginate(
                "actionIdentifiers",
                Paging::Token,
                list.max(),
            )?;
            out.list(&reply, "actionIdentifiers", LIST)
        }
        ActionsCommand::Show { name } => {
            let mut reply = api.get(action_path(&name)).send()?;
            if out.format == Format::Table {
                reply["paramsText"] = json!(params_text(&reply["actionParams"]));
            }
            out.record(&reply, SHOW)
        }
        ActionsCommand::Delete { name } => {
            let reply = api.delete(action_path(&name)).send()?;
            out.done(&reply, format!("Deleted mitigation action {name}."))
        }
        ActionsCommand::Run {
            task_id,
            violations,
            profile,
            behavior,
            actions,
            active_only,
            include_suppressed,
            since,
            until,
        } => {
            let task_id = task_id.unwrap_or_else(|| format!("warden-{}", random_hex()));
            let target = match profile {
                Some(profile) => {
                    let mut target = json!({ "securityProfileName": profile });
                    if let Some(behavior) = behavior {
                        target["behaviorName"] = json!(behavior);
                    }
                    target
                }
                None => json!({ "violationIds": violations }),
            };
            let mut body = json!({
                "target": target,
                "actions": actions,
                "includeOnlyActiveViolations": active_only,
                "includeSuppressedAlerts": include_suppressed,
                // A fresh token: running the command again starts another task rather than
                // repeating this one.
                "clientRequestToken": random_hex(),
            });
            if let Some(since) = since {
                let now = OffsetDateTime::now_utc();
                body["violationEventOccurrenceRange"] = json!({
                    "startTime": since.epoch_seconds(now),
                    "endTime": until.unwrap_or(When::Now).epoch_seconds(now),
                });
            }
            let reply = api.put(task_path(&task_id)).json(body).send()?;
            out.done(
                &reply,
                format!("Started mitigation task {task_id}.\nFollow it with: warden actions task {task_id}"),
            )
        }
        ActionsCommand::Tasks { range, list } => {
            let (start, end) = range.resolve(OffsetDateTime::now_utc())?;
            let mut reply = api
                .get("/detect/mitigationactions/tasks".into())
                .query("startTime", start.to_string())
                .query("endTime", end.to_string())
                .paginate("tasks", Paging::Token, list.max())?;
            if out.format == Format::Table {
                for task in reply["tasks"].as_array_mut().into_iter().flatten() {
                    describe_task(task);
                }
            }
            out.list(&reply, "tasks", TASKS)
        }
        ActionsCommand::Task { id } => {
            let mut reply = api.get(task_path(&id)).send()?;
            let mut executions = api
                .get("/detect/mitigationactions/executions".into())
                .query("taskId", id.clone())
                .paginate("actionsExecutions", Paging::Token, None)?;
            reply["actionsExecutions"] = executions["actionsExecutions"].take();
            if out.format == Format::Json {
                return out.json(&reply);
            }
            let summary = &mut reply["taskSummary"];
            describe_task(summary);
            let mut text = render_record(summary, TASK);
            text.push('\n');
            emit(&text)?;
            Printer { format: Format::Table }.list(&reply, "actionsExecutions", EXECUTIONS)
        }
    }
}

/// `/mitigationactions/actions/{actionName}`.
fn action_path(name: &str) -> String {
    format!("/mitigationactions/actions/{}", label(name))
}

/// `/detect/mitigationactions/tasks/{taskId}`.
fn task_path(id: &str) -> String {
    format!("/detect/mitigationactions/tasks/{}", label(id))
}

/// What an action's parameters do, in words.
fn params_text(params: &Value) -> String {
    if let Some(p) = params.get("addThingsToThingGroupParams") {
        let groups: Vec<&str> =
            p["thingGroupNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        return format!("add the thing to {}", groups.join(", "));
    }
    if let Some(p) = params.get("updateDeviceCertificateParams") {
        let action = p["action"].as_str().unwrap_or("?");
        return format!("{} the thing's certificates", action.to_lowercase());
    }
    match params.as_object().and_then(|p| p.keys().next()) {
        Some(kind) => kind.clone(),
        None => "-".to_owned(),
    }
}

/// Adds a task summary's target and action names as text, for tables.
fn describe_task(task: &mut Value) {
    let target = &task["target"];
    let target_text = match (target["securityProfileName"].as_str(), target["violationIds"].as_array()) {
        (Some(profile), _) => match target["behaviorName"].as_str() {
            Some(behavior) => format!("profile {profile}, behavior {behavior}"),
            None => format!("profile {profile}"),
        },
        (None, Some(ids)) => {
            let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
            format!("violations {}", ids.join(", "))
        }
        (None, None) => "-".to_owned(),
    };
    let actions: Vec<&str> = task["actionsDefinition"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    let actions_text = actions.join(", ");
    task["targetText"] = json!(target_text);
    task["actionsText"] = json!(actions_text);
}

/// 16 random hex digits, for task ids and request tokens. The standard library's hasher keys
/// are drawn from the operating system's random source for each `RandomState`, which is
/// randomness enough for names that only need to differ, without a dependency.
fn random_hex() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", hasher.finish())
}
