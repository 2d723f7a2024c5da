//! `warden policies`: AWS IoT policy documents and what they are attached to (`CreatePolicy`,
//! `GetPolicy`, `ListPolicies`, `DeletePolicy`, `AttachPolicy`, `DetachPolicy`,
//! `ListTargetsForPolicy`, `ListAttachedPolicies`). Targets are certificates and thing groups,
//! named on the command line by id and name and sent to the API as the ARNs the server reports.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::certs::CertRef;
use crate::client::{Api, ApiArgs, ListArgs, Paging, label};
use crate::groups::group_path;
use crate::output::{Column, Format, Printer, col, emit, render_record, time};

const EXAMPLES: &str = "\
Examples:
  warden policies create LabPolicy --document lab-policy.json
  cat lab-policy.json | warden policies create LabPolicy --document -
  warden policies attach LabPolicy --group building-1
  warden policies attach LabPolicy --cert 3f9a...e1
  warden policies targets LabPolicy
  warden policies for-group floor-2 --recursive
  warden policies get WardenThingPolicy";

/// Policies: create, inspect, delete, and attach to certificates and thing groups.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct PoliciesArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: PoliciesCommand,
}

#[derive(Debug, Subcommand)]
enum PoliciesCommand {
    /// Create a policy from an AWS IoT policy document (JSON).
    Create {
        /// The policy name: 1 to 128 of [a-zA-Z0-9_+=,.@-].
        name: String,
        /// The document's file, or - for standard input.
        #[arg(long, value_name = "FILE")]
        document: PathBuf,
    },
    /// Show a policy and its document.
    Get {
        /// The policy name.
        name: String,
    },
    /// List policies.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete a policy that is attached to nothing.
    Delete {
        /// The policy name.
        name: String,
    },
    /// Attach a policy to a certificate or a thing group (and so to the group's things).
    Attach {
        /// The policy name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Detach a policy from a certificate or a thing group.
    Detach {
        /// The policy name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List what a policy is attached to (certificate and thing group ARNs).
    Targets {
        /// The policy name.
        name: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// List the policies attached to a certificate.
    ForCert {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// List the policies attached to a thing group (with --recursive, also to its ancestors).
    ForGroup {
        /// The group name.
        group: String,
        /// Also the policies of its ancestors, which its things inherit.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        list: ListArgs,
    },
}

/// Exactly one policy target.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A certificate, by id or ARN.
    #[arg(long, value_name = "ID")]
    cert: Option<String>,
    /// A thing group, by name or ARN.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

const LIST: &[Column] = &[col("NAME", "/policyName"), col("ARN", "/policyArn")];
const CREATED: &[Column] =
    &[col("NAME", "/policyName"), col("ARN", "/policyArn"), col("VERSION", "/policyVersionId")];
const GET: &[Column] = &[
    col("NAME", "/policyName"),
    col("ARN", "/policyArn"),
    col("VERSION", "/defaultVersionId"),
    time("CREATED", "/creationDate"),
    time("MODIFIED", "/lastModifiedDate"),
];

pub fn run(args: PoliciesArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        PoliciesCommand::Create { name, document } => {
            let text = read_document(&document)?;
            out.record(&api.post(policy_path(&name)).json(json!({ "policyDocument": text })).send()?, CREATED)
        }
        PoliciesCommand::Get { name } => {
            let reply = api.get(policy_path(&name)).send()?;
            if out.format == Format::Json {
                return out.json(&reply);
            }
            // The document as it was written: re-serialising it would reorder its keys.
            let document = reply["policyDocument"].as_str().unwrap_or_default();
            emit(&format!("{}\n{}\n", render_record(&reply, GET), document.trim_end()))
        }
        PoliciesCommand::List { list } => {
            let reply = api.get("/policies".into()).paginate("policies", Paging::Marker, list.max())?;
            out.list(&reply, "policies", LIST)
        }
        PoliciesCommand::Delete { name } => {
            let reply = api.delete(policy_path(&name)).send()?;
            out.done(&reply, format!("Deleted policy {name}."))
        }
        PoliciesCommand::Attach { name, target } => {
            let (arn, what) = target.resolve(&api)?;
            let reply = attach(&api, true, &name, &arn)?;
            out.done(&reply, format!("Attached policy {name} to {what}."))
        }
        PoliciesCommand::Detach { name, target } => {
            let (arn, what) = target.resolve(&api)?;
            let reply = attach(&api, false, &name, &arn)?;
            out.done(&reply, format!("Detached policy {name} from {what}."))
        }
        PoliciesCommand::Targets { name, list } => {
            let reply = api.post(format!("/policy-targets/{}", label(&name))).paginate(
                "targets",
                Paging::Marker,
                list.max(),
            )?;
            out.list(&reply, "targets", &[col("TARGET", "")])
        }
        PoliciesCommand::ForCert { id, list } => {
            let arn = CertRef::resolve(&api, &id)?.arn;
            out.list(&attached(&api, &arn, false, list.max())?, "policies", LIST)
        }
        PoliciesCommand::ForGroup { group, recursive, list } => {
            let arn = group_arn(&api, &group)?;
            out.list(&attached(&api, &arn, recursive, list.max())?, "policies", LIST)
        }
    }
}

impl TargetArgs {
    /// The target's ARN, and how to name it in a message.
    fn resolve(&self, api: &Api) -> anyhow::Result<(String, String)> {
        match (&self.cert, &self.group) {
            (Some(cert), _) => {
                let cert = CertRef::resolve(api, cert)?;
                Ok((cert.arn, format!("certificate {}", cert.id)))
            }
            (None, Some(group)) => Ok((group_arn(api, group)?, format!("thing group {group}"))),
            // clap's group (required, not multiple) guarantees one of the two.
            (None, None) => unreachable!("clap requires --cert or --group"),
        }
    }
}

/// `/policies/{policyName}`.
fn policy_path(name: &str) -> String {
    format!("/policies/{}", label(name))
}

/// `AttachPolicy` or `DetachPolicy`.
pub fn attach(api: &Api, attach: bool, policy: &str, target_arn: &str) -> anyhow::Result<Value> {
    let path = format!("/target-policies/{}", label(policy));
    let call = if attach { api.put(path) } else { api.post(path) };
    call.json(json!({ "target": target_arn })).send()
}

/// `ListAttachedPolicies`, every page.
pub fn attached(api: &Api, target_arn: &str, recursive: bool, max: Option<usize>) -> anyhow::Result<Value> {
    api.post(format!("/attached-policies/{}", label(target_arn)))
        .query_opt("recursive", recursive.then_some("true"))
        .paginate("policies", Paging::Marker, max)
}

/// A thing group's ARN as the server reports it (an ARN given as such is taken as it is).
fn group_arn(api: &Api, group: &str) -> anyhow::Result<String> {
    if group.starts_with("arn:") {
        return Ok(group.to_owned());
    }
    let reply = api.get(group_path(group)).send()?;
    reply["thingGroupArn"].as_str().map(str::to_owned).context("DescribeThingGroup returned no thingGroupArn")
}

fn read_document(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the policy document from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
