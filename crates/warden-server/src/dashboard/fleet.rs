//! The two summaries the dashboard reads: `GET /warden/fleet`, one row per thing (groups,
//! connected, last report, violations in alarm, quarantined), paged like `ListThings`; and
//! `GET /warden/things/{thingName}/overview`, what the device view shows about one thing
//! besides its metrics and violations.
//!
//! "Quarantined" means: a member of a group that an `ADD_THINGS_TO_THING_GROUP` mitigation
//! action moves things to (such as the workshop's `Quarantine`).

use std::collections::BTreeSet;

use axum::extract::State;
use serde_json::{Value, json};
use warden_store::{ActiveViolationFilter, IngestState, PageRequest, StoreError, ThingFilter, all_pages};

use super::Dashboard;
use crate::api::protocol::{
    ApiError, ApiResult, Name, PageStyle, Paging, Query, check_name, epoch_seconds, reply,
};
use crate::mitigation::{ActionParams, Mitigation};
use crate::state::AppState;

/// The most active violations counted per thing; the fleet shows "250+" beyond.
const MAX_COUNTED: usize = 250;

/// Groups that mitigation actions move things into.
async fn quarantine_groups(s: &AppState) -> Result<BTreeSet<String>, StoreError> {
    let actions = all_pages(|page| async move {
        s.store.list_mitigation_actions(Some("ADD_THINGS_TO_THING_GROUP"), &page).await
    })
    .await?;
    let mut groups = BTreeSet::new();
    for action in &actions {
        // Stored parameters were checked when the action was made; a hand-edited row is skipped.
        if let Ok((_, Mitigation::AddThingsToThingGroup { thing_groups })) =
            ActionParams::parse_stored(&action.params)
        {
            groups.extend(thing_groups);
        }
    }
    Ok(groups)
}

impl Dashboard {
    /// Things with a live session (by certificate CN).
    fn connected(&self) -> BTreeSet<String> {
        let Some(broker) = self.broker.upgrade() else { return BTreeSet::new() };
        broker.sessions().iter().map(|s| s.thing.clone()).collect()
    }

    /// One fleet row; `last` is the thing's ingest state (read for the whole page at once).
    async fn row(
        &self,
        thing: &str,
        last: Option<IngestState>,
        connected: &BTreeSet<String>,
        quarantine: &BTreeSet<String>,
    ) -> Result<Value, ApiError> {
        let s = &self.state;
        let groups = s.store.list_groups_for_thing(thing, &PageRequest::first(250)).await?.items;
        let filter =
            ActiveViolationFilter { thing: Some(thing.to_owned()), ..ActiveViolationFilter::default() };
        let in_alarm =
            s.store.list_active_violations(&filter, &PageRequest::first(MAX_COUNTED)).await?.items.len();
        Ok(json!({
            "thingName": thing,
            "groups": groups,
            "quarantined": groups.iter().any(|g| quarantine.contains(g)),
            "connected": connected.contains(thing),
            "lastReportTime": last.map(|l| epoch_seconds(l.accepted_at_ms)),
            "inAlarm": in_alarm,
        }))
    }
}

/// `GET /warden/fleet?maxResults=&nextToken=` (or `?thingName=` for one row).
pub(super) async fn fleet(State(d): State<Dashboard>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let one = q.take("thingName");
    q.finish()?;
    let s = &d.state;
    let quarantine = quarantine_groups(s).await?;
    let connected = d.connected();
    let (names, next_token) = match one {
        Some(thing) => {
            check_name("thingName", &thing)?;
            s.store.describe_thing(&thing).await?;
            (vec![thing], None)
        }
        None => {
            let page = s.store.list_things(&ThingFilter::default(), &paging.request).await?;
            (page.items.into_iter().map(|t| t.name).collect(), page.next_token)
        }
    };
    let states = s.store.ingest_states(&names).await?;
    let mut things = Vec::with_capacity(names.len());
    for (name, last) in names.iter().zip(states) {
        things.push(d.row(name, last, &connected, &quarantine).await?);
    }
    let mut body = json!({ "things": things, "quarantineGroups": quarantine });
    if let Some(token) = next_token {
        body["nextToken"] = json!(token);
    }
    reply(body)
}

/// `GET /warden/things/{thingName}/overview`.
pub(super) async fn overview(State(d): State<Dashboard>, Name(thing): Name) -> ApiResult {
    check_name("thingName", &thing)?;
    let s = &d.state;
    let described = s.store.describe_thing(&thing).await?;
    let quarantine = quarantine_groups(s).await?;
    let last = s.store.ingest_state(&thing).await?;
    let row = d.row(&thing, last, &d.connected(), &quarantine).await?;
    let effective = s.store.effective_groups_for_thing(&thing).await?;
    let mut targets: Vec<String> =
        ["all/things", "all/registered-things"].iter().map(|t| format!("{}{t}", s.arns.prefix())).collect();
    targets.extend(effective.iter().map(|g| s.arns.thing_group(g)));
    let profiles = s.store.security_profiles_for_targets(&targets).await?;
    let certificate_ids = all_pages(|page| {
        let thing = thing.clone();
        async move { s.store.list_thing_principals(&thing, &page).await }
    })
    .await?;
    let mut certificates = Vec::new();
    for id in certificate_ids {
        let c = s.store.describe_certificate(&id).await?;
        certificates.push(json!({ "certificateId": c.certificate_id, "status": c.status.as_str() }));
    }
    let sessions: Vec<Value> = match d.broker.upgrade() {
        Some(broker) => broker
            .sessions()
            .iter()
            .filter(|id| id.thing == thing)
            .map(|id| json!({ "clientId": id.client_id, "remoteAddr": id.remote_addr.to_string() }))
            .collect(),
        None => Vec::new(),
    };
    let mut body = row;
    body["attributes"] = json!(described.attributes);
    body["effectiveGroups"] = json!(effective);
    body["quarantineGroups"] = json!(quarantine);
    body["securityProfiles"] = json!(profiles);
    body["certificates"] = json!(certificates);
    body["sessions"] = json!(sessions);
    reply(body)
}
