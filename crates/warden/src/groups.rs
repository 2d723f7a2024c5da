//! `warden groups`: static thing groups and their members (`CreateThingGroup`,
//! `ListThingGroups`, `DescribeThingGroup`, `DeleteThingGroup`, `AddThingToThingGroup`,
//! `RemoveThingFromThingGroup`, `ListThingsInThingGroup`, `ListThingGroupsForThing`). A thing
//! inherits the policies of its groups and of their ancestors.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, ApiArgs, ListArgs, Paging, label};
use crate::output::{Column, Printer, col, time};
use crate::things::{attributes_json, parse_attribute, thing_path};

const EXAMPLES: &str = "\
Examples:
  warden groups create building-1 --description \"Main site\"
  warden groups create floor-2 --parent building-1
  warden groups add-thing floor-2 dev-1
  warden groups things building-1 --recursive
  warden groups list --parent building-1
  warden policies attach LabPolicy --group building-1";

/// Thing groups: create, list, describe, delete, and manage their members.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct GroupsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// Create a thing group, optionally under a parent group.
    Create {
        /// The group name: 1 to 128 of [a-zA-Z0-9:_-].
        name: String,
        #[arg(long, value_name = "GROUP")]
        parent: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// An attribute, as NAME=VALUE; repeat for more.
        #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
    },
    /// List thing groups: all, or the children of --parent (all descendants with --recursive).
    List {
        #[arg(long, value_name = "GROUP")]
        parent: Option<String>,
        /// With --parent: also the children's children, and so on.
        #[arg(long)]
        recursive: bool,
        /// Only groups whose name starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a thing group.
    Describe {
        /// The group name.
        name: String,
    },
    /// Delete a thing group (it must have no child groups); its policies are detached.
    Delete {
        /// The group name.
        name: String,
    },
    /// Add a thing to a group.
    AddThing {
        /// The group name.
        group: String,
        /// The thing name.
        thing: String,
    },
    /// Remove a thing from a group.
    RemoveThing {
        /// The group name.
        group: String,
        /// The thing name.
        thing: String,
    },
    /// List the things in a group (with --recursive, also those in its descendants).
    Things {
        /// The group name.
        group: String,
        /// Also the things in its descendant groups.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        list: ListArgs,
    },
    /// List the groups a thing is a direct member of.
    ForThing {
        /// The thing name.
        thing: String,
        #[command(flatten)]
        list: ListArgs,
    },
}

const LIST: &[Column] = &[col("NAME", "/groupName"), col("ARN", "/groupArn")];
const DESCRIBE: &[Column] = &[
    col("NAME", "/thingGroupName"),
    col("ID", "/thingGroupId"),
    col("ARN", "/thingGroupArn"),
    col("VERSION", "/version"),
    col("PARENT", "/thingGroupMetadata/parentGroupName"),
    col("DESCRIPTION", "/thingGroupProperties/thingGroupDescription"),
    col("ATTRIBUTES", "/thingGroupProperties/attributePayload/attributes"),
    time("CREATED", "/thingGroupMetadata/creationDate"),
];
const CREATED: &[Column] =
    &[col("NAME", "/thingGroupName"), col("ID", "/thingGroupId"), col("ARN", "/thingGroupArn")];

pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        GroupsCommand::Create { name, parent, description, attributes } => {
            let mut properties = json!({});
            if let Some(description) = description {
                properties["thingGroupDescription"] = json!(description);
            }
            if !attributes.is_empty() {
                properties["attributePayload"] = json!({ "attributes": attributes_json(attributes) });
            }
            let mut body = json!({ "thingGroupProperties": properties });
            if let Some(parent) = parent {
                body["parentGroupName"] = json!(parent);
            }
            out.record(&api.post(group_path(&name)).json(body).send()?, CREATED)
        }
        GroupsCommand::List { parent, recursive, prefix, list } => {
            let reply = api
                .get("/thing-groups".into())
                .query_opt("parentGroup", parent)
                .query_opt("namePrefixFilter", prefix)
                .query_opt("recursive", recursive.then_some("true"))
                .paginate("thingGroups", Paging::Token, list.max())?;
            out.list(&reply, "thingGroups", LIST)
        }
        GroupsCommand::Describe { name } => out.record(&api.get(group_path(&name)).send()?, DESCRIBE),
        GroupsCommand::Delete { name } => {
            let reply = api.delete(group_path(&name)).send()?;
            out.done(&reply, format!("Deleted thing group {name}."))
        }
        GroupsCommand::AddThing { group, thing } => {
            let reply = membership(&api, true, &group, &thing)?;
            out.done(&reply, format!("Added thing {thing} to group {group}."))
        }
        GroupsCommand::RemoveThing { group, thing } => {
            let reply = membership(&api, false, &group, &thing)?;
            out.done(&reply, format!("Removed thing {thing} from group {group}."))
        }
        GroupsCommand::Things { group, recursive, list } => {
            let reply = api
                .get(format!("{}/things", group_path(&group)))
                .query_opt("recursive", recursive.then_some("true"))
                .paginate("things", Paging::Token, list.max())?;
            out.list(&reply, "things", &[col("THING", "")])
        }
        GroupsCommand::ForThing { thing, list } => {
            let reply = api.get(format!("{}/thing-groups", thing_path(&thing))).paginate(
                "thingGroups",
                Paging::Token,
                list.max(),
            )?;
            out.list(&reply, "thingGroups", LIST)
        }
    }
}

/// `/thing-groups/{thingGroupName}`.
pub fn group_path(name: &str) -> String {
    format!("/thing-groups/{}", label(name))
}

/// `AddThingToThingGroup` or `RemoveThingFromThingGroup`.
pub fn membership(api: &Api, add: bool, group: &str, thing: &str) -> anyhow::Result<Value> {
    let operation = if add { "addThingToThingGroup" } else { "removeThingFromThingGroup" };
    api.put(format!("/thing-groups/{operation}"))
        .json(json!({ "thingGroupName": group, "thingName": thing }))
        .send()
}
