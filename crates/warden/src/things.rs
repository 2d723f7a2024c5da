//! `warden things`: the registry's things (`CreateThing`, `ListThings`, `DescribeThing`,
//! `UpdateThing`, `DeleteThing`), plus the one-step onboarding of a device:
//! `things create NAME --cert-dir DIR` also issues its certificate, attaches it and a policy,
//! and writes the files the agent needs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::certs::{self, CertDir};
use crate::client::{Api, ApiArgs, ListArgs, Paging, label};
use crate::output::{Column, Printer, col};

const EXAMPLES: &str = "\
Examples:
  # Register a device and write everything its agent needs to ./dev-1/
  warden things create dev-1 --attr site=lab --cert-dir ./dev-1
  warden things list --attr site=lab
  warden things describe dev-1 --output json
  warden things update dev-1 --attr firmware=1.2.0 --attr site=
  warden things delete dev-1 --with-certs";

/// Things: create (and onboard), list, describe, update, delete.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ThingsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ThingsCommand,
}

#[derive(Debug, Subcommand)]
enum ThingsCommand {
    /// Register a thing; with --cert-dir, also issue its certificate and write the agent's files.
    ///
    /// With --cert-dir the thing gets an active certificate whose CN is its name, attached to it
    /// and to --policy, and DIR receives ca.pem (the CA the MQTT endpoint's certificate chains
    /// to), NAME.crt and NAME.key (mode 0600). The private key exists nowhere else.
    Create {
        /// The thing name: 1 to 128 of [a-zA-Z0-9:_-]; also its MQTT client id.
        name: String,
        /// An attribute, as NAME=VALUE; repeat for more.
        #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
        /// Issue a certificate and write ca.pem, NAME.crt and NAME.key here (created if needed).
        #[arg(long, value_name = "DIR")]
        cert_dir: Option<PathBuf>,
        /// The policy attached to the new certificate.
        #[arg(long, value_name = "NAME", default_value = warden_server::server::DEFAULT_THING_POLICY, requires = "cert_dir")]
        policy: String,
        /// Add the thing to this thing group.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
    },
    /// List things, optionally those with an attribute (NAME) or an attribute value (NAME=VALUE).
    List {
        #[arg(long = "attr", value_name = "NAME[=VALUE]")]
        attribute: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a thing.
    Describe {
        /// The thing name.
        name: String,
    },
    /// Set attributes (merged into the existing ones; NAME= removes one).
    Update {
        /// The thing name.
        name: String,
        /// An attribute, as NAME=VALUE (NAME= removes it); repeat for more.
        #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_attribute, required = true)]
        attributes: Vec<(String, String)>,
        /// Replace all attributes with the given ones instead of merging.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a thing.
    ///
    /// Deleting a thing that does not exist succeeds, as in AWS.
    Delete {
        /// The thing name.
        name: String,
        /// First detach its certificates, then deactivate and delete those no other thing uses.
        #[arg(long)]
        with_certs: bool,
    },
}

/// The columns of `things list` and `things describe`.
const LIST: &[Column] =
    &[col("NAME", "/thingName"), col("VERSION", "/version"), col("ATTRIBUTES", "/attributes")];
const DESCRIBE: &[Column] = &[
    col("NAME", "/thingName"),
    col("ID", "/thingId"),
    col("ARN", "/thingArn"),
    col("VERSION", "/version"),
    col("ATTRIBUTES", "/attributes"),
];

pub fn run(args: ThingsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        ThingsCommand::Create { name, attributes, cert_dir, policy, group } => {
            create(&api, out, &name, attributes, cert_dir, &policy, group.as_deref())
        }
        ThingsCommand::List { attribute, list } => {
            let (attribute_name, attribute_value) =
                match attribute.as_deref().map(|a| a.split_once('=').unwrap_or((a, ""))) {
                    None => (None, None),
                    Some((name, "")) => (Some(name.to_owned()), None),
                    Some((name, value)) => (Some(name.to_owned()), Some(value.to_owned())),
                };
            let reply = api
                .get("/things".into())
                .query_opt("attributeName", attribute_name)
                .query_opt("attributeValue", attribute_value)
                .paginate("things", Paging::Token, list.max())?;
            out.list(&reply, "things", LIST)
        }
        ThingsCommand::Describe { name } => out.record(&api.get(thing_path(&name)).send()?, DESCRIBE),
        ThingsCommand::Update { name, attributes, replace } => {
            let reply = api
                .patch(thing_path(&name))
                .json(json!({ "attributePayload": { "attributes": attributes_json(attributes), "merge": !replace } }))
                .send()?;
            out.done(&reply, format!("Updated thing {name}."))
        }
        ThingsCommand::Delete { name, with_certs } => {
            let mut message = String::new();
            if with_certs {
                for line in delete_certificates(&api, &name)? {
                    message.push_str(&line);
                    message.push('\n');
                }
            }
            let reply = api.delete(thing_path(&name)).send()?;
            message.push_str(&format!("Deleted thing {name}."));
            out.done(&reply, message)
        }
    }
}

/// `/things/{thingName}`.
pub fn thing_path(name: &str) -> String {
    format!("/things/{}", label(name))
}

/// Parses `NAME=VALUE` (the value may be empty).
pub fn parse_attribute(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Attributes as AWS's `attributePayload.attributes` map.
pub fn attributes_json(attributes: Vec<(String, String)>) -> Value {
    Value::Object(attributes.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// `things create`: each step is one API call, in an order that leaves nothing half-made that
/// the user cannot see: files are checked before anything is created, and the CA is fetched
/// first so that an endpoint without `/warden/ca.pem` fails before the thing exists.
fn create(
    api: &Api,
    out: Printer,
    name: &str,
    attributes: Vec<(String, String)>,
    cert_dir: Option<PathBuf>,
    policy: &str,
    group: Option<&str>,
) -> anyhow::Result<()> {
    let cert_dir = cert_dir.map(|dir| CertDir::prepare(dir, name)).transpose()?;
    let ca_pem = cert_dir.as_ref().map(|_| api.ca_pem()).transpose()?;
    let mut summary = api
        .post(thing_path(name))
        .json(json!({ "attributePayload": { "attributes": attributes_json(attributes) } }))
        .send()?;
    if let Some(group) = group {
        crate::groups::membership(api, true, group, name)
            .with_context(|| format!("thing {name} was created, but adding it to group {group} failed"))?;
        summary["thingGroupName"] = json!(group);
    }
    if let (Some(dir), Some(ca_pem)) = (&cert_dir, ca_pem) {
        let issued = certs::issue(api, name, policy, Some((dir, &ca_pem)))
            .with_context(|| format!("thing {name} was created, but issuing its certificate failed"))?;
        for key in ["certificateId", "certificateArn", "policyName", "files"] {
            summary[key] = issued[key].clone();
        }
    }
    certs::print_issued(out, api, &summary, cert_dir.as_ref())
}

/// `things delete --with-certs`: detaches each certificate from the thing, and retires it
/// (deactivate, detach policies, delete) unless another thing still uses it. Returns one line per
/// certificate for the table output.
fn delete_certificates(api: &Api, thing: &str) -> anyhow::Result<Vec<String>> {
    let principals = match api.get(format!("{}/principals", thing_path(thing))).paginate(
        "principals",
        Paging::Token,
        None,
    ) {
        Ok(reply) => reply,
        // Nothing to clean up; the delete that follows succeeds, as deleting a missing thing does.
        Err(e) if e.downcast_ref::<crate::client::ApiError>().is_some_and(|e| e.is_not_found()) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut lines = Vec::new();
    for arn in principals["principals"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let cert = certs::CertRef::from_arn(arn)?;
        certs::attach_thing(api, false, &cert, thing)?;
        let others = certs::things_of(api, &cert)?;
        if others.is_empty() {
            certs::retire(api, &cert)?;
            lines.push(format!("Deleted certificate {}.", cert.id));
        } else {
            lines.push(format!("Detached certificate {}; kept it for {}.", cert.id, others.join(", ")));
        }
    }
    Ok(lines)
}
