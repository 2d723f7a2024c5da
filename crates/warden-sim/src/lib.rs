//! A virtual fleet for Warden: simulated devices that register through the REST API and run as
//! real MQTT/TLS clients with their own certificates, sending Device Defender reports of
//! believable traffic, and misbehaving on demand.
//!
//! The pure core models devices, without I/O or clock: [`class`] (what meters, cameras,
//! gateways and kiosks normally do), [`traffic`] (a device's traits and benign traffic per
//! report: daily cycle, noise, bursts), [`misbehaviour`] (what scanning, flooding, backdoors,
//! beacons, exfiltration, large payloads, authorization errors and reconnect storms change),
//! and [`model`] (one device's reports and telemetry), all drawn from keyed streams of [`rng`],
//! so that a seed gives the same fleet, report for report.
//!
//! The edges: [`api`] (the REST calls that register a device, and the violations and
//! quarantine the summary shows), [`identity`] (certificates in the state directory, reused
//! across runs), [`fleet`] (the devices' MQTT 5 connections and schedules), [`control`] (the
//! running simulator's HTTP endpoint and its client), [`summary`] (the live summary line),
//! [`cli`] (`warden sim`) and [`lab`] (the AWS workshop's set-up through the API, and a webhook
//! that receives its alerts, for `warden demo`).
//!
//! In-process, as `warden demo` uses it:
//!
//! ```no_run
//! # async fn demo(api: warden_sim::api::Api, mqtt_port: u16, state: &std::path::Path) -> anyhow::Result<()> {
//! use warden_sim::fleet::{DeviceEvent, Fleet, FleetConfig, SimDevice};
//! use warden_sim::identity::{ProvisionProgress, StateDir, Wanted, provision};
//! use warden_sim::misbehaviour::Misbehaviour;
//!
//! let ca = api.ca_pem()?; // blocking calls: run them on the blocking pool in real code
//! let identities = StateDir::new(state).identities(&ca)?;
//! let mut config = FleetConfig::new("127.0.0.1", mqtt_port, &ca);
//! let wanted: Vec<Wanted> = (0..20)
//!     .map(|i| Wanted {
//!         thing: warden_sim::cli::thing_name("sim-", i),
//!         class: warden_sim::traffic::DeviceTraits::draw(config.seed, i, &config.mix).class,
//!     })
//!     .collect();
//! let ids = provision(&api, &identities, &wanted, "WardenThingPolicy", 4, &ProvisionProgress::default())?;
//! config.timing.period = std::time::Duration::from_secs(5);
//! config.timing.speedup = 60.0; // each 5-second report is 5 simulated minutes
//! let devices = ids.into_iter().zip(0..).map(|(identity, index)| SimDevice { index, identity }).collect();
//! let fleet = Fleet::start(config, devices).await?;
//! let mut events = fleet.events();
//! fleet.misbehave("sim-00003", Misbehaviour::LargePayload, None).await?;
//! while let Ok(event) = events.recv().await {
//!     if let DeviceEvent::PublishDenied { thing, .. } = event {
//!         println!("{thing} is quarantined: {:?}", fleet.device(&thing)?);
//!         break;
//!     }
//! }
//! fleet.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod class;
pub mod cli;
pub mod control;
pub mod fleet;
pub mod identity;
pub mod lab;
pub mod misbehaviour;
pub mod model;
pub mod rng;
pub mod summary;
pub mod traffic;
