//! `warden topics`: Warden's alert topics, its stand-in for SNS. A security profile's alerts go
//! to one topic (`warden profiles create --alert-topic`), and the topic delivers each to its
//! subscriptions: webhooks (`http://`, `https://`) and MQTT topics of Warden's broker. `show`
//! prints each subscription's delivery counters and last error, where failing deliveries show.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{ApiArgs, ListArgs, Paging, label};
use crate::output::{Column, Format, Printer, col, emit, render_record, time};

const EXAMPLES: &str = "\
Examples:
  warden topics create ops
  warden topics subscribe ops https://hooks.example.com/warden
  warden topics subscribe ops mqtt:warden/alerts
  warden topics show ops
  warden profiles create OutboundBytes --rule 'alarm when aws:all-bytes-out > 35000 over 5m' --alert-topic ops
  warden topics unsubscribe 6c1f2e7a-...";

/// Alert topics and their subscriptions (webhooks and MQTT topics).
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct TopicsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create an alert topic.
    Create {
        /// The topic name: 1 to 256 of [a-zA-Z0-9_-].
        name: String,
    },
    /// List alert topics.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show an alert topic and its subscriptions, with their delivery counters.
    Show {
        /// The topic name.
        name: String,
    },
    /// Delete an alert topic and its subscriptions.
    Delete {
        /// The topic name.
        name: String,
    },
    /// Deliver a topic's alerts to a webhook (an http:// or https:// URL) or an MQTT topic.
    ///
    /// A webhook receives each alert as an HTTP POST of the SNS message; mqtt:TOPIC publishes
    /// it on TOPIC of Warden's own broker. Subscribing the same endpoint again changes nothing.
    Subscribe {
        /// The topic name.
        name: String,
        /// http://..., https://... or mqtt:TOPIC.
        // Not named `endpoint`, the id of the global --endpoint option.
        #[arg(value_name = "ENDPOINT", value_parser = parse_endpoint)]
        to: Endpoint,
    },
    /// Remove a subscription.
    Unsubscribe {
        /// The subscription id (see `warden topics show`).
        id: String,
    },
}

/// A subscription endpoint as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    protocol: &'static str,
    endpoint: String,
}

/// `http(s)://...` is a webhook, `mqtt:TOPIC` an MQTT topic; the server checks the rest.
fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let endpoint = |protocol, endpoint: &str| Ok(Endpoint { protocol, endpoint: endpoint.to_owned() });
    if let Some(topic) = s.strip_prefix("mqtt:") {
        return endpoint("mqtt", topic);
    }
    for scheme in ["http", "https"] {
        if s.starts_with(&format!("{scheme}://")) {
            return endpoint(scheme, s);
        }
    }
    Err(format!("expected an http:// or https:// URL, or mqtt:TOPIC; got {s:?}"))
}

const LIST: &[Column] =
    &[col("NAME", "/topicName"), col("ARN", "/topicArn"), time("CREATED", "/creationDate")];
const SHOW: &[Column] =
    &[col("NAME", "/topicName"), col("ARN", "/topicArn"), time("CREATED", "/creationDate")];
const SUBSCRIPTIONS: &[Column] = &[
    col("SUBSCRIPTION", "/subscriptionId"),
    col("PROTOCOL", "/protocol"),
    col("ENDPOINT", "/endpoint"),
    col("DELIVERED", "/delivered"),
    col("FAILED", "/failed"),
    time("LAST ATTEMPT", "/lastAttemptDate"),
    col("LAST ERROR", "/lastError"),
];

pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        TopicsCommand::Create { name } => {
            out.record(&api.post(topic_path(&name)).json(json!({})).send()?, SHOW)
        }
        TopicsCommand::List { list } => {
            let reply =
                api.get("/warden/alert-topics".into()).paginate("topics", Paging::Token, list.max())?;
            out.list(&reply, "topics", LIST)
        }
        TopicsCommand::Show { name } => {
            let reply = api.get(topic_path(&name)).send()?;
            if out.format == Format::Json {
                return out.json(&reply);
            }
            emit(&format!("{}\n", render_record(&reply, SHOW)))?;
            if reply["subscriptions"].as_array().is_none_or(Vec::is_empty) {
                return emit(&format!(
                    "No subscriptions: subscribe with `warden topics subscribe {name} URL`.\n"
                ));
            }
            out.list(&reply, "subscriptions", SUBSCRIPTIONS)
        }
        TopicsCommand::Delete { name } => {
            let reply = api.delete(topic_path(&name)).send()?;
            out.done(&reply, format!("Deleted alert topic {name}."))
        }
        TopicsCommand::Subscribe { name, to: endpoint } => {
            let reply = api
                .post(format!("{}/subscriptions", topic_path(&name)))
                .json(json!({ "protocol": endpoint.protocol, "endpoint": endpoint.endpoint }))
                .send()?;
            let id = reply["subscriptionId"].as_str().unwrap_or("-");
            out.done(
                &reply,
                format!("Subscribed {} to alert topic {name} (subscription {id}).", describe(&reply)),
            )
        }
        TopicsCommand::Unsubscribe { id } => {
            let reply = api.delete(format!("/warden/alert-subscriptions/{}", label(&id))).send()?;
            out.done(&reply, format!("Removed subscription {id}."))
        }
    }
}

/// `/warden/alert-topics/{topicName}`.
fn topic_path(name: &str) -> String {
    format!("/warden/alert-topics/{}", label(name))
}

/// A subscription's endpoint as the command line wrote it.
fn describe(subscription: &Value) -> String {
    let endpoint = subscription["endpoint"].as_str().unwrap_or("-");
    match subscription["protocol"].as_str() {
        Some("mqtt") => format!("mqtt:{endpoint}"),
        _ => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_choose_their_protocol() {
        let parsed = |s| parse_endpoint(s).map(|e| (e.protocol, e.endpoint));
        assert_eq!(parsed("mqtt:warden/alerts"), Ok(("mqtt", "warden/alerts".into())));
        assert_eq!(parsed("http://127.0.0.1:9/x"), Ok(("http", "http://127.0.0.1:9/x".into())));
        assert_eq!(parsed("https://hooks.example.com"), Ok(("https", "https://hooks.example.com".into())));
        assert!(parsed("ftp://x").unwrap_err().starts_with("expected an http:// or https:// URL"));
        assert!(parsed("warden/alerts").is_err());
    }
}
