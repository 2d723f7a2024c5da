//! Authorization of MQTT sessions: the registry and AWS IoT policies, applied by the broker.
//!
//! The broker asks on every CONNECT, PUBLISH, SUBSCRIBE and delivery, synchronously, so the
//! answer must come from memory. The authorizer mirrors what authorization needs in a
//! `Registry`: certificates by serial (status, things, policy names), the direct groups of
//! every thing in a group, groups with their parent and policy names, and the parsed policies,
//! each document parsed once and shared. It is loaded at start-up with a few bulk reads, then
//! kept in step change by change: each [`RegistryChange`] names what changed, and the authorizer
//! re-reads just that (one certificate, one thing's groups, one target's policies, ...) and
//! applies it before the API request that made the change returns. Changes are applied one at
//! a time, store reads included, so an older read never overwrites a newer one. A change that
//! does not say what changed (`Policies`, `Memberships`), or one whose reads fail, reloads the
//! whole registry.
//!
//! Checks do not look policies up each time. A session's first check resolves it (certificate,
//! thing, effective groups, policies) into a session view, which also remembers the session's
//! last few decisions: a device's report and the delivery of its reply are then two lookups,
//! without allocating. A view lasts until a change concerns its session: a change to one
//! certificate or one thing makes only the views of its sessions stale; a change to a group's
//! policies or to a policy document, all of them.
//!
//! Rules, beyond AWS's policy evaluation (explicit Deny wins, else any Allow, else deny):
//! - the certificate must be registered and ACTIVE, and attached to the thing the session acts
//!   as: its CN, or (as in AWS IoT) the thing its client id names;
//! - the policies that apply are those attached to the certificate and to every group the thing
//!   belongs to, directly or through nesting.
//!
//! A certificate that stops being usable has its live sessions dropped at once.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use warden_broker::policy::{Action, Arns as PolicyArns, Context, Decision, Policy};
use warden_broker::{AccessControl, Broker, Identity};
use warden_store::{CertificateStatus, Store, StoreError, all_pages};

use crate::state::{AppState, Arns, RegistryChange, RegistryListener};

/// Certificates read per statement when the whole registry is loaded: each row carries a PEM
/// of about 1 kB, so chunks bound the load's transient memory.
const CERTIFICATE_CHUNK: usize = 5_000;

/// Decisions a session view remembers: enough for a device's report topic, its reply topics and
/// its subscription.
const REMEMBERED: usize = 4;

/// Longer topics are decided every time rather than remembered (AWS's topic limit is 256
/// bytes), so a device cannot make the cache hold large strings.
const MAX_REMEMBERED_TOPIC: usize = 256;

/// How deep group nesting is followed. AWS allows 7 levels; the store cannot form cycles, and
/// this bound keeps a corrupted hierarchy from looping.
const MAX_GROUP_DEPTH: usize = 64;

/// A certificate id (64 hex digits) as its 32 bytes.
type CertId = [u8; 32];

fn parse_certificate_id(id: &str) -> Option<CertId> {
    let mut bytes = [0; 32];
    hex::decode_to_slice(id, &mut bytes).ok()?;
    Some(bytes)
}

/// What authorization needs of the registry, in memory.
///
/// Shared rather than copied, because there is an entry per certificate and per thing: group
/// names are the keys of `groups`, policy names the keys of `policies` (a name no stored policy
/// has keeps its own copy), lists of those names are interned (most certificates carry the
/// same policies and most things are in the same few groups), and each policy document is
/// parsed once, however many certificates and groups it is attached to.
#[derive(Debug, Default)]
struct Registry {
    /// By serial (lowercase hex, no leading zeros: the broker's form). A serial is unique per CA
    /// only, so a few serials may name several certificates; they are kept oldest first and a
    /// session's serial names the newest.
    certificates: HashMap<Arc<str>, Vec<CertEntry>>,
    /// The serial of each certificate above, to find it again when it changes or goes.
    serials: HashMap<CertId, Arc<str>>,
    /// The direct groups of every thing that is in at least one group; each group is known in
    /// `groups`.
    thing_groups: HashMap<Box<str>, Names>,
    /// Thing groups that matter: those with members and their ancestors (a full load has them
    /// all; groups created later are read when a thing joins them).
    groups: HashMap<Arc<str>, GroupNode>,
    /// Every stored policy whose document parses.
    policies: HashMap<Arc<str>, Arc<Policy>>,
    /// The interned name lists. Lists nobody uses any more are swept when it has doubled.
    lists: HashSet<Names>,
    /// Its size after the last sweep.
    swept: usize,
}

/// A sorted list of group or policy names, interned in `Registry::lists`.
type Names = Arc<[Arc<str>]>;

#[derive(Debug)]
struct CertEntry {
    id: CertId,
    created_at_ms: i64,
    status: CertificateStatus,
    /// The things it is attached to, ordered (usually one).
    things: Box<[Box<str>]>,
    policies: Names,
}

#[derive(Debug)]
struct GroupNode {
    parent: Option<Arc<str>>,
    policies: Names,
}

/// A certificate as the store has it now, read for one change.
#[derive(Debug)]
struct StoredCertificate {
    serial: Arc<str>,
    created_at_ms: i64,
    status: CertificateStatus,
    things: Vec<String>,
    policies: Vec<String>,
}

/// A group as the store has it now, read when a thing joins a group the registry does not know.
#[derive(Debug)]
struct StoredGroup {
    name: String,
    parent: Option<String>,
    policies: Vec<String>,
}

/// What a session may do: the thing it acts as and the policies that apply to it.
#[derive(Debug)]
struct Resolved {
    thing: Box<str>,
    policies: Box<[Arc<Policy>]>,
}

impl Registry {
    /// The certificate a session's serial names.
    fn certificate(&self, serial: &str) -> Option<&CertEntry> {
        self.certificates.get(serial)?.last()
    }

    /// The thing a session acts as, and the policies that apply to it, if its certificate may
    /// be used at all.
    ///
    /// The thing is the certificate's CN when the certificate is attached to a thing of that
    /// name (Warden's certificates). Otherwise, as in AWS IoT, it is the attached thing named by
    /// the client id, or by its part before the first `/` (`{thing}/{suffix}`), so certificates
    /// made the AWS way (CN "AWS IoT Certificate" or any other) work once attached to a thing.
    /// A certificate can only be attached to a registered thing, and a thing with certificates
    /// cannot be deleted, so the thing found is registered.
    fn resolve(&self, id: &Identity) -> Result<Resolved, String> {
        let cert = self
            .certificate(&id.cert_serial)
            .ok_or_else(|| format!("certificate with serial {} is not registered", id.cert_serial))?;
        if cert.status != CertificateStatus::Active {
            return Err(format!("certificate {} is {}", hex::encode(cert.id), cert.status));
        }
        let by_client_id = id.client_id.split('/').next().unwrap_or_default();
        let thing = [id.thing.as_str(), by_client_id]
            .into_iter()
            .find(|t| cert.things.iter().any(|attached| &**attached == *t))
            .ok_or_else(|| {
                format!(
                    "certificate {} is not attached to thing {:?} (its CN) or {:?} (from the client id)",
                    hex::encode(cert.id),
                    id.thing,
                    by_client_id
                )
            })?;
        let mut policies: Vec<Arc<Policy>> = Vec::new();
        let mut add = |names: &[Arc<str>]| {
            for policy in names.iter().filter_map(|n| self.policies.get(n)) {
                if !policies.iter().any(|p| Arc::ptr_eq(p, policy)) {
                    policies.push(policy.clone());
                }
            }
        };
        add(&cert.policies);
        for group in self.effective_groups(thing) {
            if let Some(node) = self.groups.get(&group) {
                add(&node.policies);
            }
        }
        Ok(Resolved { thing: thing.into(), policies: policies.into() })
    }

    /// The groups whose policies apply to `thing`: its direct groups and their ancestors.
    fn effective_groups(&self, thing: &str) -> Vec<Arc<str>> {
        let mut groups: Vec<Arc<str>> = Vec::new();
        for direct in self.thing_groups.get(thing).into_iter().flat_map(|groups| groups.iter()) {
            let mut next = Some(direct.clone());
            for _ in 0..MAX_GROUP_DEPTH {
                let Some(group) = next.take() else { break };
                if groups.contains(&group) {
                    break;
                }
                next = self.groups.get(&group).and_then(|node| node.parent.clone());
                groups.push(group);
            }
        }
        groups
    }

    /// The shared copy of a policy name.
    fn policy_name(&self, name: &str) -> Arc<str> {
        self.policies.get_key_value(name).map_or_else(|| name.into(), |(key, _)| key.clone())
    }

    /// The interned list of these policy names.
    fn policy_names(&mut self, names: &[String]) -> Names {
        let names = names.iter().map(|n| self.policy_name(n)).collect();
        self.intern(names)
    }

    /// The shared copy of a list of names, sorted and without duplicates.
    fn intern(&mut self, mut names: Vec<Arc<str>>) -> Names {
        names.sort_unstable();
        names.dedup();
        if let Some(list) = self.lists.get(names.as_slice()) {
            return list.clone();
        }
        if self.lists.len() >= 2 * self.swept + 64 {
            self.lists.retain(|list| Arc::strong_count(list) > 1);
            self.swept = self.lists.len();
        }
        let list: Names = names.into();
        self.lists.insert(list.clone());
        list
    }

    /// Policies as stored now: `None` for one that was deleted or does not parse. Returns
    /// whether any document changed.
    fn set_policies(&mut self, policies: Vec<(String, Option<Arc<Policy>>)>) -> bool {
        let mut changed = false;
        for (name, policy) in policies {
            match policy {
                Some(policy) if self.policies.get(name.as_str()) != Some(&policy) => {
                    let name = self.policy_name(&name);
                    self.policies.insert(name, policy);
                    changed = true;
                }
                Some(_) => {}
                None => changed |= self.policies.remove(name.as_str()).is_some(),
            }
        }
        changed
    }

    /// A certificate as stored now: `None` if it was deleted or cannot be used (no parseable
    /// PEM). Returns its serial before and after.
    fn set_certificate(&mut self, id: CertId, stored: Option<StoredCertificate>) -> [Option<Arc<str>>; 2] {
        let before = self.serials.remove(&id);
        if let Some(serial) = &before
            && let Some(entries) = self.certificates.get_mut(serial)
        {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                self.certificates.remove(serial);
            }
        }
        let after = stored.map(|s| {
            let mut things: Vec<Box<str>> = s.things.into_iter().map(Into::into).collect();
            things.sort_unstable();
            things.dedup();
            let entry = CertEntry {
                id,
                created_at_ms: s.created_at_ms,
                status: s.status,
                things: things.into(),
                policies: self.policy_names(&s.policies),
            };
            self.insert_certificate(s.serial.clone(), entry);
            s.serial
        });
        [before, after]
    }

    fn insert_certificate(&mut self, serial: Arc<str>, entry: CertEntry) {
        self.serials.insert(entry.id, serial.clone());
        let entries = self.certificates.entry(serial).or_default();
        let at = entries.partition_point(|e| (e.created_at_ms, e.id) < (entry.created_at_ms, entry.id));
        entries.insert(at, entry);
    }

    /// The policies attached to a certificate now. Unknown certificates are ignored: a
    /// certificate enters the registry with its policies.
    fn set_certificate_policies(&mut self, id: &CertId, policies: &[String]) {
        let Some(serial) = self.serials.get(id).cloned() else { return };
        let names = self.policy_names(policies);
        if let Some(entry) =
            self.certificates.get_mut(&serial).and_then(|es| es.iter_mut().find(|e| e.id == *id))
        {
            entry.policies = names;
        }
    }

    /// Adds groups the registry does not know yet, parents before children.
    fn insert_groups(&mut self, groups: Vec<StoredGroup>) {
        for group in groups {
            if self.groups.contains_key(group.name.as_str()) {
                continue;
            }
            let parent = group.parent.map(|p| self.group_name(&p));
            let policies = self.policy_names(&group.policies);
            self.groups.insert(group.name.into(), GroupNode { parent, policies });
        }
    }

    /// The shared copy of a group name.
    fn group_name(&self, name: &str) -> Arc<str> {
        self.groups.get_key_value(name).map_or_else(|| name.into(), |(key, _)| key.clone())
    }

    /// The policies attached to a group now. Groups the registry does not know are ignored (a
    /// group enters the registry with its policies); returns whether it knew the group.
    fn set_group_policies(&mut self, group: &str, policies: &[String]) -> bool {
        let names = self.policy_names(policies);
        let Some(node) = self.groups.get_mut(group) else { return false };
        node.policies = names;
        true
    }

    /// A thing's direct groups now; groups the registry does not know are left out (the
    /// caller inserts them first).
    fn set_thing_groups(&mut self, thing: &str, groups: &[String]) {
        let direct: Vec<Arc<str>> = groups
            .iter()
            .filter_map(|g| self.groups.get_key_value(g.as_str()).map(|(k, _)| k.clone()))
            .collect();
        if direct.is_empty() {
            self.thing_groups.remove(thing);
        } else {
            let direct = self.intern(direct);
            self.thing_groups.insert(thing.into(), direct);
        }
    }

    /// A group was deleted with its memberships. It had no child groups. Returns whether the
    /// registry knew it.
    fn remove_group(&mut self, group: &str) -> bool {
        if self.groups.remove(group).is_none() {
            return false;
        }
        let mut left: Vec<(Box<str>, Vec<Arc<str>>)> = Vec::new();
        self.thing_groups.retain(|thing, direct| {
            if !direct.iter().any(|g| &**g == group) {
                return true;
            }
            let others: Vec<Arc<str>> = direct.iter().filter(|g| &***g != group).cloned().collect();
            if !others.is_empty() {
                left.push((thing.clone(), others));
            }
            false
        });
        for (thing, others) in left {
            let others = self.intern(others);
            self.thing_groups.insert(thing, others);
        }
        true
    }

    fn remove_thing(&mut self, thing: &str) {
        self.thing_groups.remove(thing);
    }
}

/// One session's resolution, with its latest decisions. It stays valid until a change concerns
/// the session (the change removes it) or concerns everybody (the epoch moves on).
#[derive(Debug)]
struct SessionView {
    epoch: u64,
    /// The identity it was resolved for (views are found by a hash of it).
    serial: Box<str>,
    cn: Box<str>,
    client_id: Box<str>,
    outcome: Result<Resolved, String>,
    /// A std mutex: held for a few comparisons, never across an await. Its data is a cache,
    /// so a poisoned one is used as is.
    decisions: Mutex<Decisions>,
}

impl SessionView {
    fn is_for(&self, id: &Identity, epoch: u64) -> bool {
        self.epoch == epoch
            && *self.serial == *id.cert_serial
            && *self.cn == *id.thing
            && *self.client_id == *id.client_id
    }

    fn decisions(&self) -> std::sync::MutexGuard<'_, Decisions> {
        self.decisions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A decision for a resolved session: remembered, or evaluated and remembered.
    fn decide(&self, arns: &PolicyArns, action: Action, target: &str) -> Decision {
        let Ok(resolved) = &self.outcome else { return Decision::ImplicitDeny };
        if let Some(decision) = self.decisions().get(action, target) {
            return decision;
        }
        let ctx = Context { thing_name: &resolved.thing, client_id: &self.client_id };
        let resource = arns.resource(action, target);
        let decision = Policy::evaluate(resolved.policies.iter().map(Arc::as_ref), action, &resource, &ctx);
        self.decisions().remember(action, target, decision);
        decision
    }
}

/// A session view in the map, with hashes of what a change may name (its serial, its CN and
/// the thing its client id names), so that finding the views a change concerns reads the map
/// alone instead of every view. A hash that collides only makes a view stale needlessly.
#[derive(Debug)]
struct SessionEntry {
    serial: u64,
    things: [u64; 2],
    view: Arc<SessionView>,
}

/// The latest decisions of a session, replaced round-robin.
#[derive(Debug, Default)]
struct Decisions {
    recent: [Option<(Action, Box<str>, Decision)>; REMEMBERED],
    next: usize,
}

impl Decisions {
    fn get(&self, action: Action, target: &str) -> Option<Decision> {
        self.recent.iter().flatten().find(|(a, t, _)| *a == action && **t == *target).map(|(_, _, d)| *d)
    }

    fn remember(&mut self, action: Action, target: &str, decision: Decision) {
        if target.len() <= MAX_REMEMBERED_TOPIC {
            self.recent[self.next] = Some((action, target.into(), decision));
            self.next = (self.next + 1) % REMEMBERED;
        }
    }
}

/// Which sessions a change concerns: their views are stale, and if the change took away a
/// certificate or a thing, those that can no longer be used are dropped.
#[derive(Debug)]
enum Scope {
    Nobody,
    /// Sessions with one of these certificate serials.
    Serials(Vec<Arc<str>>),
    /// Sessions that may act as this thing (by their CN or client id).
    Thing(String),
    Everybody,
}

impl Scope {
    fn concerns(&self, serial: &str, cn: &str, client_id: &str) -> bool {
        match self {
            Scope::Nobody => false,
            Scope::Serials(serials) => serials.iter().any(|s| **s == *serial),
            Scope::Thing(thing) => cn == thing || client_id.split('/').next() == Some(thing.as_str()),
            Scope::Everybody => true,
        }
    }

    /// `Everybody` if a policy document changed: any session may use it.
    fn unless(self, documents_changed: bool) -> Scope {
        if documents_changed { Scope::Everybody } else { self }
    }
}

/// The server's [`AccessControl`].
pub struct Authorizer {
    state: AppState,
    policy_arns: PolicyArns,
    /// The mirror of the registry. A std lock: read to resolve a session (its first check
    /// after a change that concerns it), written only to apply a change whose reads are done,
    /// never held across an await.
    registry: RwLock<Registry>,
    /// Counts the changes applied (under the registry's write lock). A view resolved before a
    /// change is not stored after it, so a change cannot miss a view being made meanwhile.
    changes: AtomicU64,
    /// Moves on with every change that concerns everybody; views of an older epoch are stale.
    epoch: AtomicU64,
    /// Applies registry changes one at a time, store reads included, so that a change read
    /// earlier is never applied over one read later. A tokio mutex: held across those reads.
    updates: tokio::sync::Mutex<()>,
    /// Session views by a keyed hash of (serial, CN, client id). Read on every check, written
    /// when a session is resolved or a change concerns it; views of sessions that have gone
    /// stay until the map outgrows twice the certificates, then it is cleared. A std lock,
    /// never held across an await or a policy evaluation.
    sessions: RwLock<HashMap<u64, SessionEntry>>,
    /// Keys the session hashes, so that clients cannot choose colliding identities.
    hasher: std::hash::RandomState,
    /// Set once the broker is running, so certificate deactivation can drop sessions.
    broker: RwLock<Option<Arc<Broker>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Loads the registry.
    pub async fn new(state: AppState) -> Result<Arc<Authorizer>, StoreError> {
        let policy_arns = PolicyArns::new(&state.config.region, &state.config.account_id);
        let registry = load(&*state.store, &state.arns).await?;
        Ok(Arc::new(Authorizer {
            state,
            policy_arns,
            registry: RwLock::new(registry),
            changes: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            updates: tokio::sync::Mutex::new(()),
            sessions: RwLock::new(HashMap::new()),
            hasher: std::hash::RandomState::new(),
            broker: RwLock::new(None),
        }))
    }

    pub fn set_broker(&self, broker: Arc<Broker>) {
        *self.broker.write().unwrap_or_else(PoisonError::into_inner) = Some(broker);
    }

    /// Lets go of the broker at shutdown, so it can be stopped.
    pub fn clear_broker(&self) {
        *self.broker.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry to change; dropping the guard counts the change.
    fn registry_mut(&self) -> Changing<'_> {
        Changing {
            registry: self.registry.write().unwrap_or_else(PoisonError::into_inner),
            changes: &self.changes,
        }
    }

    fn sessions(&self) -> RwLockReadGuard<'_, HashMap<u64, SessionEntry>> {
        self.sessions.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the whole registry. On a store error the old one stays (and is logged): refusing
    /// every device because of a transient read error would be worse.
    pub async fn reload(&self) {
        let _updating = self.updates.lock().await;
        self.reload_locked().await;
    }

    async fn reload_locked(&self) {
        match load(&*self.state.store, &self.state.arns).await {
            Ok(registry) => {
                *self.registry_mut() = registry;
                self.invalidate(&Scope::Everybody);
            }
            Err(e) => tracing::error!(error = %e, "cannot reload authorization data; keeping the previous"),
        }
    }

    fn key(&self, id: &Identity) -> u64 {
        self.hasher.hash_one((&id.cert_serial, &id.thing, &id.client_id))
    }

    /// The session's view, resolving it if there is none or it is stale.
    fn view(&self, id: &Identity) -> Arc<SessionView> {
        let key = self.key(id);
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(entry) = self.sessions().get(&key)
            && entry.view.is_for(id, epoch)
        {
            return entry.view.clone();
        }
        let (view, changes, certificates) = {
            let registry = self.registry();
            // Read under the registry lock, so they match what is resolved.
            let changes = self.changes.load(Ordering::Acquire);
            let view = SessionView {
                epoch: self.epoch.load(Ordering::Acquire),
                serial: id.cert_serial.as_str().into(),
                cn: id.thing.as_str().into(),
                client_id: id.client_id.as_str().into(),
                outcome: registry.resolve(id),
                decisions: Mutex::default(),
            };
            (Arc::new(view), changes, registry.serials.len())
        };
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        // A change applied since the resolution may concern this session and has already
        // looked for its view: this answer is for the check in hand only.
        if self.changes.load(Ordering::Acquire) == changes {
            if sessions.len() >= 2 * certificates + 1024 {
                sessions.clear();
            }
            let by_client_id = id.client_id.split('/').next().unwrap_or_default();
            let entry = SessionEntry {
                serial: self.hasher.hash_one(id.cert_serial.as_str()),
                things: [self.hasher.hash_one(id.thing.as_str()), self.hasher.hash_one(by_client_id)],
                view: view.clone(),
            };
            sessions.insert(key, entry);
        }
        view
    }

    /// Makes the views a change concerns stale.
    fn invalidate(&self, scope: &Scope) {
        let (serials, thing): (Vec<u64>, Option<u64>) = match scope {
            Scope::Nobody => return,
            Scope::Everybody => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                return;
            }
            Scope::Serials(serials) => (serials.iter().map(|s| self.hasher.hash_one(&**s)).collect(), None),
            Scope::Thing(thing) => (Vec::new(), Some(self.hasher.hash_one(thing.as_str()))),
        };
        let concerned =
            |e: &SessionEntry| serials.contains(&e.serial) || thing.is_some_and(|t| e.things.contains(&t));
        // Found under the read lock, so checks go on meanwhile; views stored after the change
        // was applied are current (see `view`).
        let stale: Vec<u64> =
            self.sessions().iter().filter(|(_, e)| concerned(e)).map(|(key, _)| *key).collect();
        if !stale.is_empty() {
            let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
            for key in stale {
                sessions.remove(&key);
            }
        }
    }

    /// The thing a live session acts as (for cloud-side metrics); the CN if unknown.
    /// Borrowed from `id` unless the client id names another (attached) thing: this runs for
    /// every message.
    pub fn thing_of<'a>(&self, id: &'a Identity) -> Cow<'a, str> {
        match &self.view(id).outcome {
            Ok(resolved) if *resolved.thing != *id.thing => Cow::Owned(resolved.thing.to_string()),
            _ => Cow::Borrowed(&id.thing),
        }
    }

    fn decide(&self, id: &Identity, action: Action, target: &str) -> Decision {
        // The common case, a decision the session's view remembers, without touching the
        // view's reference count.
        if let Some(entry) = self.sessions().get(&self.key(id))
            && entry.view.is_for(id, self.epoch.load(Ordering::Acquire))
        {
            match &entry.view.outcome {
                Err(_) => return Decision::ImplicitDeny,
                Ok(_) => {
                    if let Some(decision) = entry.view.decisions().get(action, target) {
                        return decision;
                    }
                }
            }
        }
        self.view(id).decide(&self.policy_arns, action, target)
    }

    /// Applies one change: reads what it names from the store, then updates the registry.
    /// Returns the sessions it concerns.
    async fn update(&self, change: &RegistryChange) -> Result<Scope, StoreError> {
        let store = &*self.state.store;
        let arns = &self.state.arns;
        match change {
            RegistryChange::Certificate { certificate_id } => {
                let Some(id) = parse_certificate_id(certificate_id) else { return Ok(Scope::Nobody) };
                let stored = read_certificate(store, arns, certificate_id).await?;
                let policies = match &stored {
                    Some(s) => self.read_missing_policies(&s.policies).await?,
                    None => Vec::new(),
                };
                let mut registry = self.registry_mut();
                let changed = registry.set_policies(policies);
                let serials = registry.set_certificate(id, stored);
                Ok(Scope::Serials(serials.into_iter().flatten().collect()).unless(changed))
            }
            RegistryChange::ThingDeleted { thing } => {
                self.registry_mut().remove_thing(thing);
                Ok(Scope::Thing(thing.clone()))
            }
            RegistryChange::ThingGroups { thing } => {
                let direct =
                    match all_pages(|page| async move { store.list_groups_for_thing(thing, &page).await })
                        .await
                    {
                        Ok(direct) => direct,
                        Err(StoreError::NotFound { .. }) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                let groups = self.read_unknown_groups(&direct).await?;
                let names: Vec<String> = groups.iter().flat_map(|g| g.policies.iter().cloned()).collect();
                let policies = self.read_missing_policies(&names).await?;
                let mut registry = self.registry_mut();
                let changed = registry.set_policies(policies);
                registry.insert_groups(groups);
                registry.set_thing_groups(thing, &direct);
                Ok(Scope::Thing(thing.clone()).unless(changed))
            }
            RegistryChange::ThingGroupDeleted { group } => {
                let known = self.registry_mut().remove_group(group);
                Ok(if known { Scope::Everybody } else { Scope::Nobody })
            }
            RegistryChange::Policy { policy } => {
                let compiled = read_policy(store, policy).await?;
                let changed = self.registry_mut().set_policies(vec![(policy.clone(), compiled)]);
                Ok(Scope::Nobody.unless(changed))
            }
            RegistryChange::PolicyTarget { policy, target } => {
                let compiled = read_policy(store, policy).await?;
                let attached = match Target::parse(arns, target) {
                    Target::Certificate(_) | Target::Group(_) => {
                        all_pages(|page| async move { store.list_attached_policies(target, &page).await })
                            .await?
                    }
                    Target::Other => Vec::new(),
                };
                let mut policies = self.read_missing_policies(&attached).await?;
                policies.push((policy.clone(), compiled));
                let mut registry = self.registry_mut();
                let changed = registry.set_policies(policies);
                let scope = match Target::parse(arns, target) {
                    Target::Certificate(id) => {
                        registry.set_certificate_policies(&id, &attached);
                        Scope::Serials(registry.serials.get(&id).cloned().into_iter().collect())
                    }
                    Target::Group(group) if registry.set_group_policies(group, &attached) => Scope::Everybody,
                    Target::Group(_) | Target::Other => Scope::Nobody,
                };
                Ok(scope.unless(changed))
            }
            RegistryChange::Policies | RegistryChange::Memberships => {
                let registry = load(store, arns).await?;
                *self.registry_mut() = registry;
                Ok(Scope::Everybody)
            }
            RegistryChange::SecurityProfiles => Ok(Scope::Nobody),
        }
    }

    /// The documents of those of `names` the registry does not have (`None` for a policy that
    /// is gone or does not parse).
    async fn read_missing_policies(
        &self,
        names: &[String],
    ) -> Result<Vec<(String, Option<Arc<Policy>>)>, StoreError> {
        let missing: Vec<&String> = {
            let registry = self.registry();
            names.iter().filter(|n| !registry.policies.contains_key(n.as_str())).collect()
        };
        let mut read = Vec::with_capacity(missing.len());
        for name in missing {
            read.push((name.clone(), read_policy(&*self.state.store, name).await?));
        }
        Ok(read)
    }

    /// Those of `groups` the registry does not know, with their unknown ancestors, parents
    /// first. A group deleted meanwhile is left out (its deletion is announced).
    async fn read_unknown_groups(&self, groups: &[String]) -> Result<Vec<StoredGroup>, StoreError> {
        let unknown: Vec<&String> = {
            let registry = self.registry();
            groups.iter().filter(|g| !registry.groups.contains_key(g.as_str())).collect()
        };
        let store = &*self.state.store;
        let mut read: Vec<StoredGroup> = Vec::new();
        for name in unknown {
            let group = match store.describe_thing_group(name).await {
                Ok(group) => group,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut chain = group.root_to_parent;
            chain.push(group.name);
            for (i, name) in chain.iter().enumerate() {
                let known = self.registry().groups.contains_key(name.as_str());
                if known || read.iter().any(|g| g.name == *name) {
                    continue;
                }
                let target = self.state.arns.thing_group(name);
                let policies = all_pages(|page| {
                    let target = &target;
                    async move { store.list_attached_policies(target, &page).await }
                })
                .await?;
                let parent = i.checked_sub(1).map(|p| chain[p].clone());
                read.push(StoredGroup { name: name.clone(), parent, policies });
            }
        }
        Ok(read)
    }
}

/// The registry's write guard; dropping it counts one more change.
struct Changing<'a> {
    registry: RwLockWriteGuard<'a, Registry>,
    changes: &'a AtomicU64,
}

impl std::ops::Deref for Changing<'_> {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl std::ops::DerefMut for Changing<'_> {
    fn deref_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

impl AccessControl for Authorizer {
    fn connect(&self, id: &Identity) -> Result<(), String> {
        let view = self.view(id);
        if let Err(reason) = &view.outcome {
            return Err(reason.clone());
        }
        match view.decide(&self.policy_arns, Action::Connect, &id.client_id) {
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
        let updating = self.updates.lock().await;
        let scope = match self.update(change).await {
            Ok(scope) => scope,
            Err(e) => {
                tracing::error!(error = %e, ?change, "cannot read a registry change; reloading the whole registry");
                self.reload_locked().await;
                Scope::Everybody
            }
        };
        self.invalidate(&scope);
        drop(updating);
        // Sessions whose certificate or thing can no longer be used are dropped now rather than
        // at their next operation, as AWS IoT does for a deactivated certificate.
        if !matches!(change, RegistryChange::Certificate { .. } | RegistryChange::ThingDeleted { .. }) {
            return;
        }
        let broker = self.broker.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(broker) = broker {
            let dropped = broker
                .disconnect_where(|id| {
                    scope.concerns(&id.cert_serial, &id.thing, &id.client_id)
                        && self.view(id).outcome.is_err()
                })
                .await;
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

/// A policy target as this server writes it.
enum Target<'a> {
    Certificate(CertId),
    Group(&'a str),
    /// Not an ARN this server attaches policies to; it grants nothing.
    Other,
}

impl<'a> Target<'a> {
    fn parse(arns: &Arns, target: &'a str) -> Target<'a> {
        let Some(resource) = target.strip_prefix(arns.prefix()) else { return Target::Other };
        if let Some(id) = resource.strip_prefix("cert/") {
            parse_certificate_id(id).map_or(Target::Other, Target::Certificate)
        } else if let Some(group) = resource.strip_prefix("thinggroup/") {
            Target::Group(group)
        } else {
            Target::Other
        }
    }
}

/// A stored policy document, parsed; `None` if there is no such policy or it does not parse.
async fn read_policy(store: &dyn Store, name: &str) -> Result<Option<Arc<Policy>>, StoreError> {
    match store.get_policy(name).await {
        Ok(p) => Ok(compile(&p)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn compile(p: &warden_store::Policy) -> Option<Arc<Policy>> {
    match Policy::parse(&p.document) {
        Ok(policy) => Some(Arc::new(policy)),
        // The API refuses such documents; one in the store grants nothing.
        Err(e) => {
            tracing::warn!(policy = %p.name, error = %e, "stored policy does not parse; ignored");
            None
        }
    }
}

/// A certificate with its things and policies, as stored now; `None` if it is gone or its PEM
/// does not parse (then it cannot be used).
async fn read_certificate(
    store: &dyn Store,
    arns: &Arns,
    certificate_id: &str,
) -> Result<Option<StoredCertificate>, StoreError> {
    let cert = match store.describe_certificate(certificate_id).await {
        Ok(cert) => cert,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(serial) = serial_of_pem(&cert.pem) else {
        tracing::warn!(certificate = %certificate_id, "stored certificate does not parse; ignored");
        return Ok(None);
    };
    let things =
        match all_pages(|page| async move { store.list_principal_things(certificate_id, &page).await }).await
        {
            Ok(things) => things,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
    let target = arns.certificate(certificate_id);
    let policies = all_pages(|page| {
        let target = &target;
        async move { store.list_attached_policies(target, &page).await }
    })
    .await?;
    Ok(Some(StoredCertificate {
        serial: serial.into(),
        created_at_ms: cert.created_at_ms,
        status: cert.status,
        things,
        policies,
    }))
}

/// Reads the whole registry with a few bulk statements (certificates in chunks).
async fn load(store: &dyn Store, arns: &Arns) -> Result<Registry, StoreError> {
    let mut registry = Registry::default();
    for p in all_pages(|page| async move { store.list_policies(&page).await }).await? {
        if let Some(policy) = compile(&p) {
            registry.policies.insert(p.name.into(), policy);
        }
    }

    let parents = store.all_thing_group_parents().await?;
    let none = registry.intern(Vec::new());
    for (group, _) in &parents {
        registry.groups.insert(group.as_str().into(), GroupNode { parent: None, policies: none.clone() });
    }
    for (group, parent) in parents {
        let parent = parent.map(|p| registry.group_name(&p));
        if let Some(node) = registry.groups.get_mut(group.as_str()) {
            node.parent = parent;
        }
    }

    let mut thing_groups: HashMap<Box<str>, Vec<Arc<str>>> = HashMap::new();
    for (thing, group) in store.all_thing_group_members().await? {
        if let Some((group, _)) = registry.groups.get_key_value(group.as_str()) {
            thing_groups.entry(thing.into()).or_default().push(group.clone());
        }
    }
    registry.thing_groups.reserve(thing_groups.len());
    for (thing, groups) in thing_groups {
        let groups = registry.intern(groups);
        registry.thing_groups.insert(thing, groups);
    }

    let mut certificate_policies: HashMap<CertId, Vec<Arc<str>>> = HashMap::new();
    let mut group_policies: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
    for (policy, target) in store.all_policy_targets().await? {
        let policy = registry.policy_name(&policy);
        match Target::parse(arns, &target) {
            Target::Certificate(id) => certificate_policies.entry(id).or_default().push(policy),
            Target::Group(group) => {
                if let Some((group, _)) = registry.groups.get_key_value(group) {
                    group_policies.entry(group.clone()).or_default().push(policy);
                }
            }
            Target::Other => {}
        }
    }
    for (group, policies) in group_policies {
        let policies = registry.intern(policies);
        if let Some(node) = registry.groups.get_mut(&group) {
            node.policies = policies;
        }
    }

    let mut certificate_things: HashMap<CertId, Vec<Box<str>>> = HashMap::new();
    for (certificate_id, thing) in store.all_thing_principals().await? {
        if let Some(id) = parse_certificate_id(&certificate_id) {
            certificate_things.entry(id).or_default().push(thing.into());
        }
    }
    let mut after = String::new();
    loop {
        let chunk = store.certificates_after(&after, CERTIFICATE_CHUNK).await?;
        let Some(last) = chunk.last() else { break };
        after = last.certificate_id.clone();
        for cert in chunk {
            let (Some(id), Some(serial)) =
                (parse_certificate_id(&cert.certificate_id), serial_of_pem(&cert.pem))
            else {
                tracing::warn!(certificate = %cert.certificate_id, "stored certificate does not parse; ignored");
                continue;
            };
            let mut things = certificate_things.remove(&id).unwrap_or_default();
            things.sort_unstable();
            things.dedup();
            let policies = certificate_policies.remove(&id).unwrap_or_default();
            let entry = CertEntry {
                id,
                created_at_ms: cert.created_at_ms,
                status: cert.status,
                things: things.into(),
                policies: registry.intern(policies),
            };
            registry.insert_certificate(serial.into(), entry);
        }
    }
    Ok(registry)
}

/// The serial of the first certificate in `pem`, formatted as the broker reports it.
pub fn serial_of_pem(pem: &str) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.tbs_certificate.serial.to_str_radix(16))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use warden_store::{NewCertificate, NewThingGroup, SqliteStore};

    use super::*;
    use crate::config::ServerConfig;
    use crate::pki::{IssuedCert, Pki};
    use crate::state::ManualClock;

    /// What a registry means for authorization, comparable between registries that were built
    /// differently (loaded whole, or kept up change by change): every certificate with the
    /// policies each of its things gets, every thing's effective groups, every policy.
    #[derive(Debug, PartialEq)]
    struct Meaning {
        /// By id: serial, status, and the policies of each attached thing.
        certificates: BTreeMap<String, (String, CertificateStatus, PoliciesOfThings)>,
        /// By thing in a group: its effective groups and their policies.
        groups_of_things: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
        policies: BTreeMap<String, Policy>,
    }

    type PoliciesOfThings = BTreeMap<String, BTreeSet<String>>;

    impl Registry {
        fn meaning(&self) -> Meaning {
            let mut certificates = BTreeMap::new();
            for (serial, entries) in &self.certificates {
                for cert in entries {
                    let things = cert
                        .things
                        .iter()
                        .map(|thing| {
                            let mut names: Vec<&Arc<str>> = cert.policies.iter().collect();
                            for group in self.effective_groups(thing) {
                                names.extend(self.groups[&group].policies.iter());
                            }
                            let names = names
                                .into_iter()
                                .filter(|n| self.policies.contains_key(&***n))
                                .map(|n| n.to_string())
                                .collect();
                            (thing.to_string(), names)
                        })
                        .collect();
                    certificates.insert(hex::encode(cert.id), (serial.to_string(), cert.status, things));
                }
            }
            assert_eq!(self.serials.len(), certificates.len(), "one serial per certificate");
            let groups_of_things = self
                .thing_groups
                .keys()
                .map(|thing| {
                    let groups = self.effective_groups(thing);
                    let policies = groups
                        .iter()
                        .flat_map(|g| self.groups[g].policies.iter())
                        .filter(|n| self.policies.contains_key(&***n))
                        .map(|n| n.to_string())
                        .collect();
                    (thing.to_string(), (groups.iter().map(|g| g.to_string()).collect(), policies))
                })
                .collect();
            let policies = self.policies.iter().map(|(n, p)| (n.to_string(), Policy::clone(p))).collect();
            Meaning { certificates, groups_of_things, policies }
        }
    }

    /// The certificates of the whole test run: only their serials matter here.
    fn certificates() -> &'static [IssuedCert] {
        static CERTS: OnceLock<Vec<IssuedCert>> = OnceLock::new();
        CERTS.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let pki = Pki::load_or_create(dir.path()).unwrap();
            (0..2).map(|i| pki.issue_thing_cert(&format!("t{i}")).unwrap()).collect()
        })
    }

    struct Fixture {
        state: AppState,
        authz: Arc<Authorizer>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig { data_dir: dir.path().to_owned(), ..ServerConfig::default() };
        let store = SqliteStore::open(dir.path().join("warden.db")).unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let state = AppState::new(
            Arc::new(config),
            Arc::new(store),
            Arc::new(pki),
            Arc::new(ManualClock::new(1_000)),
            [0; 32],
        );
        let authz = Authorizer::new(state.clone()).await.unwrap();
        Fixture { state, authz, _dir: dir }
    }

    const DOCUMENTS: [&str; 2] = [
        r#"{"Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": [
            "arn:aws:iot:*:*:topic/t/${iot:Connection.Thing.ThingName}",
            "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"]}]}"#,
        r#"{"Statement": [{"Effect": "Deny", "Action": "iot:Publish", "Resource": "*"}]}"#,
    ];

    /// A policy target in the tests' small world.
    #[derive(Debug, Clone, Copy)]
    enum On {
        Certificate(usize),
        Group(usize),
    }

    /// One registry write, announced as the API announces it.
    #[derive(Debug, Clone)]
    enum Op {
        CreateThing(usize),
        DeleteThing(usize),
        CreateGroup(usize, Option<usize>),
        DeleteGroup(usize),
        Join(usize, usize),
        Leave(usize, usize),
        CreateCertificate(usize, bool),
        SetStatus(usize, usize),
        DeleteCertificate(usize),
        AttachThing(usize, usize),
        DetachThing(usize, usize),
        CreatePolicy(usize, usize),
        DeletePolicy(usize),
        Attach(usize, On),
        Detach(usize, On),
        /// A change that does not say what changed (`Policies` or `Memberships`).
        Coarse(bool),
    }

    /// Ops over a small world (2 things, 2 certificates, 2 policies, 3 groups), creations and
    /// attachments weighted up so that sequences reach states where changes interact.
    fn op() -> impl Strategy<Value = Op> {
        let n = || 0..2usize;
        let g = || 0..3usize;
        let on = prop_oneof![n().prop_map(On::Certificate), g().prop_map(On::Group)];
        prop_oneof![
            3 => n().prop_map(Op::CreateThing),
            1 => n().prop_map(Op::DeleteThing),
            3 => (g(), proptest::option::of(g())).prop_map(|(g, p)| Op::CreateGroup(g, p)),
            1 => g().prop_map(Op::DeleteGroup),
            4 => (g(), n()).prop_map(|(g, t)| Op::Join(g, t)),
            2 => (g(), n()).prop_map(|(g, t)| Op::Leave(g, t)),
            2 => (n(), any::<bool>()).prop_map(|(c, a)| Op::CreateCertificate(c, a)),
            2 => (n(), 0..3usize).prop_map(|(c, s)| Op::SetStatus(c, s)),
            1 => n().prop_map(Op::DeleteCertificate),
            3 => (n(), n()).prop_map(|(c, t)| Op::AttachThing(c, t)),
            1 => (n(), n()).prop_map(|(c, t)| Op::DetachThing(c, t)),
            3 => (n(), 0..2usize).prop_map(|(p, d)| Op::CreatePolicy(p, d)),
            1 => n().prop_map(Op::DeletePolicy),
            5 => (n(), on.clone()).prop_map(|(p, o)| Op::Attach(p, o)),
            2 => (n(), on).prop_map(|(p, o)| Op::Detach(p, o)),
            1 => any::<bool>().prop_map(Op::Coarse),
        ]
    }

    /// Applies `op` to the store and, if the store took it, announces it as the API does.
    async fn apply(f: &Fixture, op: &Op) {
        let (store, arns) = (&f.state.store, &f.state.arns);
        let thing = |i: usize| format!("t{i}");
        let group = |i: usize| format!("g{i}");
        let policy = |i: usize| format!("p{i}");
        let cert = |i: usize| certificates()[i].certificate_id.clone();
        let target = |on: On| match on {
            On::Certificate(c) => arns.certificate(&cert(c)),
            On::Group(g) => arns.thing_group(&group(g)),
        };
        let certificate = |i: usize| RegistryChange::Certificate { certificate_id: cert(i) };
        let mut changes = Vec::new();
        match op {
            Op::CreateThing(t) => {
                let _ = store.create_thing(&thing(*t), BTreeMap::new(), 1).await;
            }
            Op::DeleteThing(t) => {
                if store.delete_thing(&thing(*t), None).await.is_ok() {
                    changes.push(RegistryChange::ThingDeleted { thing: thing(*t) });
                }
            }
            Op::CreateGroup(g, parent) => {
                let new = NewThingGroup {
                    name: group(*g),
                    parent: parent.map(group),
                    description: None,
                    attributes: BTreeMap::new(),
                };
                let _ = store.create_thing_group(new, 1).await;
            }
            Op::DeleteGroup(g) => {
                if store.delete_thing_group(&group(*g), None).await.is_ok() {
                    changes.push(RegistryChange::ThingGroupDeleted { group: group(*g) });
                    let arn = arns.thing_group(&group(*g));
                    let attached = store
                        .list_attached_policies(&arn, &warden_store::PageRequest::default())
                        .await
                        .unwrap();
                    for p in attached.items {
                        store.detach_policy(&p, &arn).await.unwrap();
                        changes.push(RegistryChange::PolicyTarget { policy: p, target: arn.clone() });
                    }
                }
            }
            Op::Join(g, t) | Op::Leave(g, t) => {
                let done = match op {
                    Op::Join(..) => store.add_thing_to_group(&group(*g), &thing(*t)).await,
                    _ => store.remove_thing_from_group(&group(*g), &thing(*t)).await,
                };
                if done.is_ok() {
                    changes.push(RegistryChange::ThingGroups { thing: thing(*t) });
                }
            }
            Op::CreateCertificate(c, active) => {
                let issued = &certificates()[*c];
                let new = NewCertificate {
                    certificate_id: issued.certificate_id.clone(),
                    pem: issued.cert_pem.clone(),
                    status: if *active { CertificateStatus::Active } else { CertificateStatus::Inactive },
                    ca_certificate_id: None,
                    subject_cn: None,
                    created_at_ms: 1,
                };
                if store.create_certificate(new).await.is_ok() {
                    changes.push(certificate(*c));
                }
            }
            Op::SetStatus(c, s) => {
                let status =
                    [CertificateStatus::Active, CertificateStatus::Inactive, CertificateStatus::Revoked][*s];
                if store.update_certificate_status(&cert(*c), status, 2).await.is_ok() {
                    changes.push(certificate(*c));
                }
            }
            Op::DeleteCertificate(c) => {
                if store.delete_certificate(&cert(*c), &arns.certificate(&cert(*c))).await.is_ok() {
                    changes.push(certificate(*c));
                }
            }
            Op::AttachThing(c, t) => {
                if store.attach_thing_principal(&thing(*t), &cert(*c)).await.is_ok() {
                    changes.push(certificate(*c));
                }
            }
            Op::DetachThing(c, t) => {
                if store.detach_thing_principal(&thing(*t), &cert(*c)).await.is_ok() {
                    changes.push(certificate(*c));
                }
            }
            Op::CreatePolicy(p, d) => {
                if store.create_policy(&policy(*p), DOCUMENTS[*d], 1).await.is_ok() {
                    changes.push(RegistryChange::Policy { policy: policy(*p) });
                }
            }
            Op::DeletePolicy(p) => {
                if store.delete_policy(&policy(*p)).await.is_ok() {
                    changes.push(RegistryChange::Policy { policy: policy(*p) });
                }
            }
            Op::Attach(p, on) | Op::Detach(p, on) => {
                let exists = match on {
                    On::Certificate(c) => store.describe_certificate(&cert(*c)).await.is_ok(),
                    On::Group(g) => store.describe_thing_group(&group(*g)).await.is_ok(),
                };
                let done = match op {
                    Op::Attach(..) if exists => store.attach_policy(&policy(*p), &target(*on)).await,
                    Op::Attach(..) => return,
                    _ => store.detach_policy(&policy(*p), &target(*on)).await,
                };
                if done.is_ok() {
                    changes.push(RegistryChange::PolicyTarget { policy: policy(*p), target: target(*on) });
                }
            }
            Op::Coarse(policies) => {
                changes.push(if *policies { RegistryChange::Policies } else { RegistryChange::Memberships });
            }
        }
        for change in changes {
            f.authz.registry_changed(&change).await;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// After any sequence of changes, the registry kept up change by change means what a
        /// registry loaded afresh means, and every session, checked after each change (so that
        /// its view and decisions are remembered across the next), is answered as the fresh
        /// registry would answer it.
        #[test]
        fn incremental_updates_agree_with_a_fresh_load(ops in proptest::collection::vec(op(), 1..60)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let f = fixture().await;
                let sessions: Vec<Identity> = certificates()
                    .iter()
                    .flat_map(|c| {
                        let serial = serial_of_pem(&c.cert_pem).unwrap();
                        ["t0", "t1"].map(|thing| identity(&serial, thing, thing))
                    })
                    .collect();
                for (i, op) in ops.iter().enumerate() {
                    apply(&f, op).await;
                    let fresh = load(&*f.state.store, &f.state.arns).await.unwrap();
                    let kept = f.authz.registry().meaning();
                    assert_eq!(kept, fresh.meaning(), "after {:?}", &ops[..=i]);
                    for id in &sessions {
                        let topic = format!("t/{}", id.thing);
                        let expected = fresh.resolve(id).map(|r| {
                            let ctx = Context { thing_name: &r.thing, client_id: &id.client_id };
                            let publish = f.authz.policy_arns.resource(Action::Publish, &topic);
                            let connect = f.authz.policy_arns.client(&id.client_id);
                            let policies = || r.policies.iter().map(Arc::as_ref);
                            (
                                Policy::evaluate(policies(), Action::Connect, &connect, &ctx).is_allowed(),
                                Policy::evaluate(policies(), Action::Publish, &publish, &ctx).is_allowed(),
                            )
                        });
                        let answered = f.authz.connect(id).map(|()| true).or_else(|reason| {
                            if reason.starts_with("iot:Connect") { Ok(false) } else { Err(reason) }
                        });
                        let answered = answered.map(|connect| (connect, f.authz.publish(id, &topic)));
                        assert_eq!(answered, expected, "{id:?} after {:?}", &ops[..=i]);
                    }
                }
            });
        }
    }

    fn identity(serial: &str, thing: &str, client_id: &str) -> Identity {
        Identity {
            thing: thing.into(),
            client_id: client_id.into(),
            cert_serial: serial.into(),
            remote_addr: ([127, 0, 0, 1], 1).into(),
            mqtt5: false,
        }
    }

    /// A fixture with thing `t0` on certificate 0, which `p0` (DOCUMENTS[0]) lets connect and
    /// use `t/t0`, and a group `g0` with `p1`, which denies every publish.
    async fn one_device() -> (Fixture, Identity) {
        let f = fixture().await;
        for op in [
            Op::CreateThing(0),
            Op::CreateCertificate(0, true),
            Op::AttachThing(0, 0),
            Op::CreatePolicy(0, 0),
            Op::CreatePolicy(1, 1),
            Op::Attach(0, On::Certificate(0)),
            Op::CreateGroup(0, None),
            Op::Attach(1, On::Group(0)),
        ] {
            apply(&f, &op).await;
        }
        let serial = serial_of_pem(&certificates()[0].cert_pem).unwrap();
        (f, identity(&serial, "t0", "t0"))
    }

    #[tokio::test]
    async fn decisions_are_remembered_until_the_registry_changes() {
        let (f, id) = one_device().await;
        assert!(f.authz.publish(&id, "t/t0"));
        let view = f.authz.view(&id);
        assert_eq!(view.decisions().get(Action::Publish, "t/t0"), Some(Decision::Allow));
        assert!(Arc::ptr_eq(&view, &f.authz.view(&id)), "the same view serves the next check");
        assert!(!f.authz.publish(&id, "t/t1"));
        assert_eq!(view.decisions().get(Action::Publish, "t/t1"), Some(Decision::ImplicitDeny));

        apply(&f, &Op::Join(0, 0)).await;
        assert!(!Arc::ptr_eq(&view, &f.authz.view(&id)), "a change makes a new view");
        assert!(!f.authz.publish(&id, "t/t0"), "the group's Deny applies at the next check");
        assert!(f.authz.connect(&id).is_ok(), "p1 denies publishing only");

        let long = format!("t/{}", "x".repeat(MAX_REMEMBERED_TOPIC));
        assert!(!f.authz.publish(&id, &long));
        assert_eq!(
            f.authz.view(&id).decisions().get(Action::Publish, &long),
            None,
            "long topics are not kept"
        );
    }

    #[tokio::test]
    async fn sessions_that_cannot_be_resolved_are_refused_with_the_reason() {
        let (f, id) = one_device().await;
        let other = identity("1234", "t0", "t0");
        assert_eq!(f.authz.connect(&other), Err("certificate with serial 1234 is not registered".into()));
        let wrong_thing = identity(&id.cert_serial, "t1", "t1");
        let message = f.authz.connect(&wrong_thing).unwrap_err();
        assert!(message.contains("is not attached to thing \"t1\""), "{message}");
        // The client id names the thing when the CN does not.
        let by_client_id = identity(&id.cert_serial, "AWS-IoT-Certificate", "t0/agent");
        assert_eq!(f.authz.thing_of(&by_client_id), "t0");
        assert!(f.authz.publish(&by_client_id, "t/t0"));
        apply(&f, &Op::SetStatus(0, 1)).await;
        let message = f.authz.connect(&id).unwrap_err();
        assert!(message.ends_with("is INACTIVE"), "{message}");
        assert!(!f.authz.publish(&id, "t/t0"));
        assert_eq!(f.authz.thing_of(&id), "t0", "the CN stands in for an unusable session's thing");
    }

    #[tokio::test]
    async fn session_views_are_bounded() {
        let (f, id) = one_device().await;
        for i in 0..3000 {
            f.authz.publish(&identity(&id.cert_serial, "t0", &format!("t0/{i}")), "t/t0");
        }
        let views = f.authz.sessions.read().unwrap().len();
        assert!(views <= 2 + 1024, "{views} views for one certificate");
    }

    fn stored(created_at_ms: i64, status: CertificateStatus) -> StoredCertificate {
        StoredCertificate {
            serial: "0a".into(),
            created_at_ms,
            status,
            things: vec!["t".into()],
            policies: Vec::new(),
        }
    }

    #[test]
    fn name_lists_are_shared_and_unused_ones_swept() {
        let mut registry = Registry::default();
        let with = |serial: &str, policies: &[&str]| StoredCertificate {
            serial: serial.into(),
            created_at_ms: 1,
            status: CertificateStatus::Active,
            things: vec!["t".into()],
            policies: policies.iter().map(|p| (*p).to_owned()).collect(),
        };
        registry.set_certificate([1; 32], Some(with("01", &["b", "a"])));
        registry.set_certificate([2; 32], Some(with("02", &["a", "b", "a"])));
        let lists: Vec<&Names> = registry.certificates.values().map(|e| &e[0].policies).collect();
        assert!(Arc::ptr_eq(lists[0], lists[1]), "one list for both");
        assert_eq!(lists[0].iter().map(|n| &**n).collect::<Vec<_>>(), ["a", "b"]);

        for i in 0..1000u32 {
            registry.set_certificate([3; 32], Some(with("03", &[&i.to_string()])));
        }
        assert!(registry.lists.len() < 200, "{} lists kept", registry.lists.len());
    }

    /// A serial is unique per CA only: of the certificates sharing one, the newest decides, and
    /// when it goes the next newest does.
    #[test]
    fn the_newest_certificate_with_a_serial_decides() {
        let mut registry = Registry::default();
        let id = identity("0a", "t", "t");
        registry.set_certificate([2; 32], Some(stored(20, CertificateStatus::Revoked)));
        registry.set_certificate([1; 32], Some(stored(10, CertificateStatus::Active)));
        assert!(registry.resolve(&id).unwrap_err().ends_with("is REVOKED"));
        assert_eq!(registry.set_certificate([2; 32], None), [Some("0a".into()), None]);
        assert_eq!(&*registry.resolve(&id).unwrap().thing, "t");
        registry.set_certificate([1; 32], None);
        assert!(registry.certificates.is_empty() && registry.serials.is_empty());
    }
}
