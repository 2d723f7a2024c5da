//! `warden violations`: the things in alarm now (`ListActiveViolations`), the history of alarms
//! raised and cleared (`ListViolationEvents`), and what a person concluded about one
//! (`PutVerificationStateOnViolation`).
//!
//! AWS lists filter by thing and profile; `--behavior` filters the pages here, as the API has no
//! such parameter. Values print as rules write them (`54`, `{22, 8080}`).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::behaviors::value_text;
use crate::client::{ApiArgs, Call, ListArgs, Paging, label};
use crate::output::{Column, Format, Printer, col, time};
use crate::times::RangeArgs;

const EXAMPLES: &str = "\
Examples:
  warden violations list
  warden violations list --profile OutboundBytes --behavior all-bytes-out
  warden violations history --since 7d --thing dev-1
  warden violations history --since 2026-11-27 --until 2026-11-28T12:00:00Z
  warden violations verify 37e18651d207bbc74236c13faf146127 benign-positive --description 'backup job'";

/// Violations: active ones, their history, and their verification state.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ViolationsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ViolationsCommand,
}

#[derive(Debug, Subcommand)]
enum ViolationsCommand {
    /// List the violations in alarm now.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Only violations in this verification state.
        #[arg(long, value_enum)]
        state: Option<State>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// List violation events (in-alarm, alarm-cleared, alarm-invalidated) in a time range.
    History {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        filter: Filter,
        /// Only events of violations in this verification state.
        #[arg(long, value_enum)]
        state: Option<State>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Record what a violation turned out to be (its verification state).
    Verify {
        /// The violation id.
        id: String,
        #[arg(value_enum)]
        state: State,
        /// Why, for whoever looks next.
        #[arg(long)]
        description: Option<String>,
    },
}

/// The filters both lists share.
#[derive(Debug, Args)]
struct Filter {
    /// Only violations of this thing.
    #[arg(long, value_name = "THING")]
    thing: Option<String>,
    /// Only violations of this security profile.
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,
    /// Only violations of behaviors of this name.
    #[arg(long, value_name = "BEHAVIOR")]
    behavior: Option<String>,
}

/// AWS `VerificationState`, written as the CLI's other values are (AWS's spelling works too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum State {
    #[value(alias = "FALSE_POSITIVE")]
    FalsePositive,
    #[value(alias = "BENIGN_POSITIVE")]
    BenignPositive,
    #[value(alias = "TRUE_POSITIVE")]
    TruePositive,
    #[value(alias = "UNKNOWN")]
    Unknown,
}

impl State {
    fn as_aws(self) -> &'static str {
        match self {
            State::FalsePositive => "FALSE_POSITIVE",
            State::BenignPositive => "BENIGN_POSITIVE",
            State::TruePositive => "TRUE_POSITIVE",
            State::Unknown => "UNKNOWN",
        }
    }
}

const ACTIVE: &[Column] = &[
    col("VIOLATION", "/violationId"),
    col("THING", "/thingName"),
    col("PROFILE", "/securityProfileName"),
    col("BEHAVIOR", "/behavior/name"),
    col("VALUE", "/valueText"),
    time("SINCE", "/violationStartTime"),
    col("STATE", "/verificationState"),
];
const EVENTS: &[Column] = &[
    time("TIME", "/violationEventTime"),
    col("EVENT", "/violationEventType"),
    col("VIOLATION", "/violationId"),
    col("THING", "/thingName"),
    col("PROFILE", "/securityProfileName"),
    col("BEHAVIOR", "/behavior/name"),
    col("VALUE", "/valueText"),
    col("STATE", "/verificationState"),
];

pub fn run(args: ViolationsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        ViolationsCommand::List { filter, state, list } => {
            let call = api.get("/active-violations".into());
            let reply = filter.fetch(call, state, "activeViolations", list.max())?;
            print(out, reply, "activeViolations", "lastViolationValue", ACTIVE)
        }
        ViolationsCommand::History { range, filter, state, list } => {
            let (start, end) = range.resolve(OffsetDateTime::now_utc())?;
            let call = api
                .get("/violation-events".into())
                .query("startTime", start.to_string())
                .query("endTime", end.to_string());
            let reply = filter.fetch(call, state, "violationEvents", list.max())?;
            print(out, reply, "violationEvents", "metricValue", EVENTS)
        }
        ViolationsCommand::Verify { id, state, description } => {
            let mut body = json!({ "verificationState": state.as_aws() });
            if let Some(description) = description {
                body["verificationStateDescription"] = json!(description);
            }
            let reply =
                api.post(format!("/violations/verification-state/{}", label(&id))).json(body).send()?;
            out.done(&reply, format!("Violation {id} is now {}.", state.as_aws()))
        }
    }
}

impl Filter {
    /// Every page of a list with these filters; `--behavior` is applied to the items, and
    /// `max` after it.
    fn fetch(
        &self,
        call: Call<'_>,
        state: Option<State>,
        key: &str,
        max: Option<usize>,
    ) -> anyhow::Result<Value> {
        let call = call
            .query_opt("thingName", self.thing.clone())
            .query_opt("securityProfileName", self.profile.clone())
            .query_opt("verificationState", state.map(State::as_aws));
        let Some(behavior) = &self.behavior else {
            return call.paginate(key, Paging::Token, max);
        };
        let mut reply = call.paginate(key, Paging::Token, None)?;
        if let Some(items) = reply[key].as_array_mut() {
            items.retain(|v| v["behavior"]["name"].as_str() == Some(behavior));
            items.truncate(max.unwrap_or(usize::MAX));
        }
        Ok(reply)
    }
}

/// A list with each item's value (under `value_key`) written as rules write it.
fn print(
    out: Printer,
    mut reply: Value,
    key: &str,
    value_key: &str,
    columns: &[Column],
) -> anyhow::Result<()> {
    if out.format == Format::Table {
        for item in reply[key].as_array_mut().into_iter().flatten() {
            item["valueText"] = json!(value_text(item.get(value_key)));
        }
    }
    out.list(&reply, key, columns)
}
