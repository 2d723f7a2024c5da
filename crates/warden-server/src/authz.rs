//! Authorization of MQTT sessions: the registry and AWS IoT policies, applied by the broker.
//!
//! The broker asks on every CONNECT, PUBLISH, SUBSCRIBE and delivery, synchronously, so the
//! answer must come from memory. The authorizer keeps a [`Snapshot`] of what authorization
//! needs (certificates by serial with their status, things and policies; groups' policies;
//! things' effective groups) and rebuilds it from the store after every registry change, before
//! the API request that made the change returns. A certificate that stops being ACTIVE also has
//! its live sessions dropped at once.
//!
//! Rules, beyond AWS's policy evaluation (explicit Deny wins, else any Allow, else deny):
//! - the certificate must be registered and ACTIVE, and attached to the thing the session acts
//!   as: its CN, or (as in AWS IoT) the thing its client id names;
//! - the policies that apply are those attached to the certificate and to every group the thing
//!   belongs to, directly or through nesting.
//!
//! Rebuilding reads the whole registry: simple and obviously consistent, and fine for the fleets
//! embedded mode targets; an incremental update is the known next step for very large fleets.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use warden_broker::policy::{Action, Arns as PolicyArns, Context, Decision, Policy};
use warden_broker::{AccessControl, Broker, Identity};
use warden_store::{CertificateStatus, Page, PageRequest, StoreError, ThingFilter, ThingGroupFilter};

use crate::state::{AppState, RegistryChange, RegistryListener};

/// What authorization needs, read from the store in one go.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By certificate serial (lowercase hex, no leading zeros: the broker's form).
    certificates: HashMap<String, CertEntry>,
    /// Policies attached to each thing group.
    group_policies: HashMap<String, Vec<Arc<Policy>>>,
    /// Every registered thing's effective groups (direct and inherited).
    thing_groups: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
struct CertEntry {
    certificate_id: String,
    status: CertificateStatus,
    things: HashSet<String>,
    policies: Vec<Arc<Policy>>,
}

/// The server's [`AccessControl`].
pub struct Authorizer {
    state: AppState,
    policy_arns: PolicyArns,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Set once the broker is running, so certificate deactivation can drop sessions.
    broker: RwLock<Option<Arc<Broker>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Loads the first snapshot.
    pub async fn new(state: AppState) -> Result<Arc<Authorizer>, StoreError> {
        let policy_arns = PolicyArns::new(&state.config.region, &state.config.account_id);
        let snapshot = load(&state).await?;
        Ok(Arc::new(Authorizer {
            state,
            policy_arns,
            snapshot: RwLock::new(Arc::new(snapshot)),
            broker: RwLock::new(None),
        }))
    }

    pub fn set_broker(&self, broker: Arc<Broker>) {
        *self.broker.write().expect("broker lock") = Some(broker);
    }

    /// Lets go of the broker at shutdown, so it can be stopped.
    pub fn clear_broker(&self) {
        *self.broker.write().expect("broker lock") = None;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("snapshot lock").clone()
    }

    /// Re-reads the registry. On a store error the old snapshot stays (and is logged): refusing
    /// every device because of a transient read error would be worse.
    pub async fn reload(&self) {
        match load(&self.state).await {
            Ok(s) => *self.snapshot.write().expect("snapshot lock") = Arc::new(s),
            Err(e) => tracing::error!(error = %e, "cannot reload authorization data; keeping the previous"),
        }
    }

    /// The thing a session acts as, and the policies that apply to it, if its certificate may
    /// be used at all.
    ///
    /// The thing is the certificate's CN when the certificate is attached to a thing of that
    /// name (Warden's certificates). Otherwise, as in AWS IoT, it is the attached thing named by
    /// the client id, or by its part before the first `/` (`{thing}/{suffix}`), so certificates
    /// made the AWS way (CN "AWS IoT Certificate" or any other) work once attached to a thing.
    fn session(&self, snap: &Snapshot, id: &Identity) -> Result<(String, Vec<Arc<Policy>>), String> {
        let cert = snap
            .certificates
            .get(&id.cert_serial)
            .ok_or_else(|| format!("certificate with serial {} is not registered", id.cert_serial))?;
        if cert.status != CertificateStatus::Active {
            return Err(format!("certificate {} is {}", cert.certificate_id, cert.status));
        }
        let by_client_id = id.client_id.split('/').next().unwrap_or_default();
        let thing = [id.thing.as_str(), by_client_id]
            .into_iter()
            .find(|t| cert.things.contains(*t))
            .ok_or_else(|| {
                format!(
                    "certificate {} is not attached to thing {:?} (its CN) or {:?} (from the client id)",
                    cert.certificate_id, id.thing, by_client_id
                )
            })?;
        let groups =
            snap.thing_groups.get(thing).ok_or_else(|| format!("thing {thing} is not registered"))?;
        let mut policies = cert.policies.clone();
        for g in groups {
            policies.extend(snap.group_policies.get(g).into_iter().flatten().cloned());
        }
        Ok((thing.to_owned(), policies))
    }

    /// The thing a live session acts as (for cloud-side metrics); the CN if unknown.
    pub fn thing_of(&self, id: &Identity) -> String {
        self.session(&self.snapshot(), id).map_or_else(|_| id.thing.clone(), |(thing, _)| thing)
    }

    fn decide(&self, id: &Identity, action: Action, target: &str) -> Decision {
        let snap = self.snapshot();
        let Ok((thing, policies)) = self.session(&snap, id) else {
            return Decision::ImplicitDeny;
        };
        let ctx = Context { thing_name: &thing, client_id: &id.client_id };
        let resource = self.policy_arns.resource(action, target);
        Policy::evaluate(policies.iter().map(Arc::as_ref), action, &resource, &ctx)
    }
}

impl AccessControl for Authorizer {
    fn connect(&self, id: &Identity) -> Result<(), String> {
        let snap = self.snapshot();
        let (thing, policies) = self.session(&snap, id)?;
        let ctx = Context { thing_name: &thing, client_id: &id.client_id };
        let resource = self.policy_arns.client(&id.client_id);
        match Policy::evaluate(policies.iter().map(Arc::as_ref), Action::Connect, &resource, &ctx) {
            Decision::Allow => Ok(()),
            d => Err(format!("iot:Connect as client id {:?} {d}", id.client_id)),
        }
    }

    fn publish(&self, id: &Identity, topic: &str) -> bool {
        self.decide(id, Action::Publish, topic).is_allowed()
    }

    fn subscribe(&self, id: &Identity, filter: &str) -> bool {
        self.decide(id, Action::Subscribe, filter).is_allowed()
    }

    fn receive(&self, id: &Identity, topic: &str) -> bool {
        self.decide(id, Action::Receive, topic).is_allowed()
    }
}

#[async_trait::async_trait]
impl RegistryListener for Authorizer {
    async fn registry_changed(&self, change: &RegistryChange) {
        if *change == RegistryChange::SecurityProfiles {
            return;
        }
        self.reload().await;
        // Sessions whose certificate or thing can no longer be used are dropped now rather than
        // at their next operation, as AWS IoT does for a deactivated certificate.
        if matches!(change, RegistryChange::Certificate { .. } | RegistryChange::ThingDeleted { .. }) {
            let broker = self.broker.read().expect("broker lock").clone();
            if let Some(broker) = broker {
                let snap = self.snapshot();
                let dropped = broker.disconnect_where(|id| self.session(&snap, id).is_err()).await;
                if dropped > 0 {
                    tracing::info!(
                        sessions = dropped,
                        ?change,
                        "dropped sessions that lost their certificate or thing"
                    );
                }
            }
        }
    }
}

/// Every item of a paginated listing.
async fn all<T, F, Fut>(mut list: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut items = Vec::new();
    let mut request = PageRequest::first(warden_store::MAX_PAGE_SIZE);
    loop {
        let page = list(request.clone()).await?;
        let next = request.after(&page);
        items.extend(page.items);
        match next {
            Some(n) => request = n,
            None => return Ok(items),
        }
    }
}

async fn load(state: &AppState) -> Result<Snapshot, StoreError> {
    let store = &state.store;
    let arns = &state.arns;
    let mut compiled: HashMap<String, Arc<Policy>> = HashMap::new();
    for p in all(|page| async move { store.list_policies(&page).await }).await? {
        match Policy::parse(&p.document) {
            Ok(policy) => {
                compiled.insert(p.name, Arc::new(policy));
            }
            // The API refuses such documents; one in the store grants nothing.
            Err(e) => tracing::warn!(policy = %p.name, error = %e, "stored policy does not parse; ignored"),
        }
    }
    let attached = |target: String| {
        let compiled = &compiled;
        async move {
            let names = all(|page| {
                let target = target.clone();
                async move { store.list_attached_policies(&target, &page).await }
            })
            .await?;
            Ok::<_, StoreError>(names.iter().filter_map(|n| compiled.get(n).cloned()).collect::<Vec<_>>())
        }
    };

    let mut snapshot = Snapshot::default();
    for cert in all(|page| async move { store.list_certificates(&page).await }).await? {
        let Some(serial) = serial_of_pem(&cert.pem) else {
            tracing::warn!(certificate = %cert.certificate_id, "stored certificate does not parse; ignored");
            continue;
        };
        let id = cert.certificate_id.clone();
        let things = all(|page| {
            let id = id.clone();
            async move { store.list_principal_things(&id, &page).await }
        })
        .await?;
        let policies = attached(arns.certificate(&id)).await?;
        snapshot.certificates.insert(
            serial,
            CertEntry {
                certificate_id: id,
                status: cert.status,
                things: things.into_iter().collect(),
                policies,
            },
        );
    }
    let groups = all(|page| async move {
        store.list_thing_groups(&ThingGroupFilter { recursive: true, ..Default::default() }, &page).await
    })
    .await?;
    for g in groups {
        let policies = attached(arns.thing_group(&g.name)).await?;
        if !policies.is_empty() {
            snapshot.group_policies.insert(g.name, policies);
        }
    }
    for thing in all(|page| async move { store.list_things(&ThingFilter::default(), &page).await }).await? {
        let groups = store.effective_groups_for_thing(&thing.name).await?;
        snapshot.thing_groups.insert(thing.name, groups);
    }
    Ok(snapshot)
}

/// The serial of the first certificate in `pem`, formatted as the broker reports it.
pub fn serial_of_pem(pem: &str) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.tbs_certificate.serial.to_str_radix(16))
}
