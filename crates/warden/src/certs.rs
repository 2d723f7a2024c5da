//! `warden certs`: X.509 certificates, the identities of things on MQTT
//! (`CreateKeysAndCertificate`, `RegisterCertificate`, `DescribeCertificate`,
//! `UpdateCertificate`, `DeleteCertificate`, `ListCertificates`, `AttachThingPrincipal`,
//! `DetachThingPrincipal`), and the certificate directory an agent reads ([`CertDir`]).
//!
//! A certificate is named by its id (64 hex digits) on the command line; where the API wants its
//! ARN, the CLI asks the server for it rather than assembling one, so it never has to know the
//! server's region and account. An ARN is accepted wherever an id is.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, ApiArgs, ListArgs, Paging, label};
use crate::output::{Column, Format, Printer, col, emit, render_record, time};
use crate::things::thing_path;

const EXAMPLES: &str = "\
Examples:
  # A new certificate for an existing thing (e.g. to rotate it), written to ./dev-1/
  warden certs create --thing dev-1 --cert-dir ./dev-1
  warden certs list
  warden certs deactivate 3f9a...e1
  # Bring your own certificate, signed by your CA
  warden certs register --cert-pem dev-2.crt --ca-pem my-ca.pem --active
  warden certs attach 5b0c...77 dev-2
  warden certs delete 3f9a...e1 --force";

/// Certificates: issue, register, list, activate or revoke, attach to things, delete.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct CertsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// List certificates, or with --thing the certificates attached to a thing.
    List {
        /// Only the certificates attached to this thing (listed by ARN).
        #[arg(long, value_name = "THING")]
        thing: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a certificate (--output json includes its PEM).
    Describe {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
    },
    /// Issue an active certificate and key for a thing (CN = the thing name), attach it to the
    /// thing and to --policy.
    ///
    /// Without --cert-dir the private key is printed, and exists nowhere else.
    Create {
        /// The thing the certificate is for: its CN, and the thing it is attached to.
        #[arg(long, value_name = "THING")]
        thing: String,
        /// Write ca.pem, THING.crt and THING.key (mode 0600) here (created if needed).
        #[arg(long, value_name = "DIR")]
        cert_dir: Option<PathBuf>,
        /// The policy attached to the new certificate.
        #[arg(long, value_name = "NAME", default_value = warden_server::server::DEFAULT_THING_POLICY)]
        policy: String,
    },
    /// Register a certificate you issued (bring your own CA); its CN must be the thing name.
    Register {
        /// The certificate, in PEM.
        #[arg(long, value_name = "FILE")]
        cert_pem: PathBuf,
        /// The CA that signed it, in PEM [default: Warden's CA].
        #[arg(long, value_name = "FILE")]
        ca_pem: Option<PathBuf>,
        /// Make it ACTIVE at once (otherwise INACTIVE).
        #[arg(long)]
        active: bool,
    },
    /// Let a certificate connect again.
    Activate {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
    },
    /// Refuse the certificate at CONNECT and drop its live session; it can be activated again.
    Deactivate {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
    },
    /// Revoke a certificate for good.
    Revoke {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
    },
    /// Delete an inactive or revoked certificate that no thing or policy is attached to.
    Delete {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
        /// Deactivate it and detach its things and policies first.
        #[arg(long)]
        force: bool,
    },
    /// Attach a certificate to a thing (the thing may then connect with it).
    Attach {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
        /// The thing name.
        thing: String,
    },
    /// Detach a certificate from a thing.
    Detach {
        /// The certificate id (64 hex digits) or ARN.
        id: String,
        /// The thing name.
        thing: String,
    },
}

const LIST: &[Column] =
    &[col("ID", "/certificateId"), col("STATUS", "/status"), time("CREATED", "/creationDate")];
const DESCRIBE: &[Column] = &[
    col("ID", "/certificateDescription/certificateId"),
    col("ARN", "/certificateDescription/certificateArn"),
    col("STATUS", "/certificateDescription/status"),
    col("CA", "/certificateDescription/caCertificateId"),
    time("CREATED", "/certificateDescription/creationDate"),
    time("MODIFIED", "/certificateDescription/lastModifiedDate"),
    time("NOT BEFORE", "/certificateDescription/validity/notBefore"),
    time("NOT AFTER", "/certificateDescription/validity/notAfter"),
];
const REGISTERED: &[Column] = &[col("ID", "/certificateId"), col("ARN", "/certificateArn")];

/// The summary of an issued certificate (and of `things create`, which extends it).
pub const ISSUED: &[Column] = &[
    col("THING", "/thingName"),
    col("ARN", "/thingArn"),
    col("GROUP", "/thingGroupName"),
    col("CERTIFICATE", "/certificateId"),
    col("POLICY", "/policyName"),
    col("CA", "/files/ca"),
    col("CERT", "/files/certificate"),
    col("KEY", "/files/privateKey"),
];

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let api = args.api.connect()?;
    let out = Printer { format: args.api.output };
    match args.command {
        CertsCommand::List { thing: None, list } => {
            let reply =
                api.get("/certificates".into()).paginate("certificates", Paging::Marker, list.max())?;
            out.list(&reply, "certificates", LIST)
        }
        CertsCommand::List { thing: Some(thing), list } => {
            let reply = api.get(format!("{}/principals", thing_path(&thing))).paginate(
                "principals",
                Paging::Token,
                list.max(),
            )?;
            out.list(&reply, "principals", &[col("CERTIFICATE", "")])
        }
        CertsCommand::Describe { id } => out.record(&api.get(cert_path(&cert_id(&id))).send()?, DESCRIBE),
        CertsCommand::Create { thing, cert_dir, policy } => {
            let cert_dir = cert_dir.map(|dir| CertDir::prepare(dir, &thing)).transpose()?;
            // The thing must exist before a key is made for it, or the key would be orphaned.
            api.get(thing_path(&thing)).send()?;
            let ca_pem = cert_dir.as_ref().map(|_| api.ca_pem()).transpose()?;
            let files = cert_dir.as_ref().zip(ca_pem.as_deref());
            let summary = issue(&api, &thing, &policy, files)?;
            print_issued(out, &api, &summary, cert_dir.as_ref())
        }
        CertsCommand::Register { cert_pem, ca_pem, active } => {
            let read = |path: &Path| {
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let mut body = json!({ "certificatePem": read(&cert_pem)? });
            if let Some(ca) = &ca_pem {
                body["caCertificatePem"] = json!(read(ca)?);
            }
            let reply = api
                .post("/certificate/register".into())
                .query_opt("setAsActive", active.then_some("true"))
                .json(body)
                .send()?;
            out.record(&reply, REGISTERED)
        }
        CertsCommand::Activate { id } => set_status(&api, out, &id, "ACTIVE"),
        CertsCommand::Deactivate { id } => set_status(&api, out, &id, "INACTIVE"),
        CertsCommand::Revoke { id } => set_status(&api, out, &id, "REVOKED"),
        CertsCommand::Delete { id, force } => {
            if force {
                let cert = CertRef::resolve(&api, &id)?;
                retire(&api, &cert)?;
                return out.done(&json!({}), format!("Deleted certificate {}.", cert.id));
            }
            let id = cert_id(&id);
            let reply = api.delete(cert_path(&id)).send()?;
            out.done(&reply, format!("Deleted certificate {id}."))
        }
        CertsCommand::Attach { id, thing } => {
            let cert = CertRef::resolve(&api, &id)?;
            let reply = attach_thing(&api, true, &cert, &thing)?;
            out.done(&reply, format!("Attached certificate {} to thing {thing}.", cert.id))
        }
        CertsCommand::Detach { id, thing } => {
            let cert = CertRef::resolve(&api, &id)?;
            let reply = attach_thing(&api, false, &cert, &thing)?;
            out.done(&reply, format!("Detached certificate {} from thing {thing}.", cert.id))
        }
    }
}

fn set_status(api: &Api, out: Printer, id: &str, status: &str) -> anyhow::Result<()> {
    let id = cert_id(id);
    let reply = api.put(cert_path(&id)).query("newStatus", status).send()?;
    out.done(&reply, format!("Certificate {id} is now {status}."))
}

/// Prints the summary of [`issue`] (or of `things create`): the JSON as it is, or a table
/// followed by what the user must act on: the agent's command line when files were written,
/// else the certificate and key, which exist nowhere else.
pub fn print_issued(out: Printer, api: &Api, summary: &Value, files: Option<&CertDir>) -> anyhow::Result<()> {
    if out.format == Format::Json {
        return out.json(summary);
    }
    let mut text = render_record(summary, ISSUED);
    if let Some(dir) = files {
        text.push_str(&format!("\nStart the agent on the device:\n  {}\n", dir.agent_command(api)));
    } else if let Some(cert_pem) = summary["certificatePem"].as_str() {
        text.push('\n');
        text.push_str(cert_pem);
        text.push_str(summary["keyPair"]["PrivateKey"].as_str().unwrap_or_default());
    }
    emit(&text)
}

/// `/certificates/{certificateId}`.
fn cert_path(id: &str) -> String {
    format!("/certificates/{}", label(id))
}

/// The id in a certificate ARN (`...:cert/{id}`), or the argument itself if it is not an ARN.
fn cert_id(id_or_arn: &str) -> String {
    id_or_arn.rsplit_once(":cert/").map_or(id_or_arn, |(_, id)| id).to_owned()
}

/// A certificate by id and by ARN, for the operations that name it by ARN.
#[derive(Debug, Clone)]
pub struct CertRef {
    pub id: String,
    pub arn: String,
}

impl CertRef {
    pub fn from_arn(arn: &str) -> anyhow::Result<CertRef> {
        match arn.rsplit_once(":cert/") {
            Some((_, id)) if arn.starts_with("arn:") => {
                Ok(CertRef { id: id.to_owned(), arn: arn.to_owned() })
            }
            _ => anyhow::bail!("{arn:?} is not a certificate ARN (arn:aws:iot:REGION:ACCOUNT:cert/ID)"),
        }
    }

    /// An ARN as given, or the ARN of the certificate with this id as the server spells it.
    pub fn resolve(api: &Api, id_or_arn: &str) -> anyhow::Result<CertRef> {
        if id_or_arn.starts_with("arn:") {
            return CertRef::from_arn(id_or_arn);
        }
        let reply = api.get(cert_path(id_or_arn)).send()?;
        let arn = reply
            .pointer("/certificateDescription/certificateArn")
            .and_then(Value::as_str)
            .context("DescribeCertificate returned no certificateArn")?;
        CertRef::from_arn(arn)
    }
}

/// `AttachThingPrincipal` or `DetachThingPrincipal`.
pub fn attach_thing(api: &Api, attach: bool, cert: &CertRef, thing: &str) -> anyhow::Result<Value> {
    let path = format!("{}/principals", thing_path(thing));
    let call = if attach { api.put(path) } else { api.delete(path) };
    call.header("x-amzn-principal", &cert.arn).send()
}

/// `ListPrincipalThings`: the things a certificate is attached to.
pub fn things_of(api: &Api, cert: &CertRef) -> anyhow::Result<Vec<String>> {
    let reply = api.get("/principals/things".into()).header("x-amzn-principal", &cert.arn).paginate(
        "things",
        Paging::Token,
        None,
    )?;
    Ok(strings(&reply["things"]))
}

/// Deletes a certificate whatever holds on to it: deactivates it if it is active (AWS deletes
/// only inactive or revoked certificates), detaches it from its things and policies, deletes it.
pub fn retire(api: &Api, cert: &CertRef) -> anyhow::Result<()> {
    let status = api.get(cert_path(&cert.id)).send()?["certificateDescription"]["status"].clone();
    if status == "ACTIVE" {
        api.put(cert_path(&cert.id)).query("newStatus", "INACTIVE").send()?;
    }
    for thing in things_of(api, cert)? {
        attach_thing(api, false, cert, &thing)?;
    }
    let policies = crate::policies::attached(api, &cert.arn, false, None)?;
    for policy in policies["policies"].as_array().into_iter().flatten() {
        let name = policy["policyName"].as_str().unwrap_or_default();
        crate::policies::attach(api, false, name, &cert.arn)?;
    }
    api.delete(cert_path(&cert.id)).send()?;
    Ok(())
}

/// Issues an active certificate and key whose CN is `thing` (Warden's `thingName` extension of
/// `CreateKeysAndCertificate`), writes them to `files` if given (before anything else can fail,
/// since the key exists only in this reply), then attaches the certificate to the thing and to
/// `policy`. Returns the summary printed by `certs create` and `things create`; without files it
/// holds the PEMs, which would otherwise be lost.
pub fn issue(api: &Api, thing: &str, policy: &str, files: Option<(&CertDir, &str)>) -> anyhow::Result<Value> {
    let reply = api
        .post("/keys-and-certificate".into())
        .query("setAsActive", "true")
        .query("thingName", thing)
        .send()?;
    let text = |pointer: &str| {
        reply
            .pointer(pointer)
            .and_then(Value::as_str)
            .with_context(|| format!("CreateKeysAndCertificate: no {pointer}"))
    };
    let cert = CertRef { id: text("/certificateId")?.to_owned(), arn: text("/certificateArn")?.to_owned() };
    let mut summary = json!({
        "thingName": thing,
        "certificateId": cert.id,
        "certificateArn": cert.arn,
        "policyName": policy,
    });
    match files {
        Some((dir, ca_pem)) => {
            dir.write(ca_pem, text("/certificatePem")?, text("/keyPair/PrivateKey")?)?;
            summary["files"] = dir.files_json();
        }
        None => {
            summary["certificatePem"] = reply["certificatePem"].clone();
            summary["keyPair"] = reply["keyPair"].clone();
        }
    }
    let context = |step: &str| format!("certificate {} was issued, but {step} failed", cert.id);
    attach_thing(api, true, &cert, thing)
        .with_context(|| context(&format!("attaching it to thing {thing}")))?;
    crate::policies::attach(api, true, policy, &cert.arn)
        .with_context(|| context(&format!("attaching policy {policy} to it")))?;
    Ok(summary)
}

/// The files of one thing's agent: `DIR/ca.pem`, `DIR/THING.crt`, `DIR/THING.key`.
#[derive(Debug)]
pub struct CertDir {
    thing: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl CertDir {
    /// Creates the directory if needed and refuses to go on if the thing's certificate or key is
    /// already there: overwriting a key could lock out the device that uses it, and failing here
    /// comes before anything is created on the server. `ca.pem` is shared by the things of one
    /// server, so it is simply rewritten.
    pub fn prepare(dir: PathBuf, thing: &str) -> anyhow::Result<CertDir> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let files = CertDir {
            thing: thing.to_owned(),
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{thing}.crt")),
            key: dir.join(format!("{thing}.key")),
        };
        for path in [&files.cert, &files.key] {
            if path.exists() {
                anyhow::bail!("{} already exists; move it away or choose another --cert-dir", path.display());
            }
        }
        Ok(files)
    }

    fn write(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        std::fs::write(&self.ca, ca_pem).with_context(|| format!("cannot write {}", self.ca.display()))?;
        std::fs::write(&self.cert, cert_pem)
            .with_context(|| format!("cannot write {}", self.cert.display()))?;
        // Created with its final mode, so the key is never readable by others, even briefly.
        let mut key = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.key)
            .with_context(|| format!("cannot create {}", self.key.display()))?;
        key.write_all(key_pem.as_bytes()).with_context(|| format!("cannot write {}", self.key.display()))?;
        Ok(())
    }

    fn files_json(&self) -> Value {
        json!({
            "ca": self.ca.display().to_string(),
            "certificate": self.cert.display().to_string(),
            "privateKey": self.key.display().to_string(),
        })
    }

    /// The `warden-agent` command line for these files. The MQTT host is the API's host, and
    /// the port the server's default: the API does not say which MQTT port the server listens
    /// on.
    pub fn agent_command(&self, api: &Api) -> String {
        format!(
            "warden-agent --thing {} --endpoint {} --port 8883 --ca {} --cert {} --key {}",
            self.thing,
            endpoint_host(api.endpoint()),
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }
}

/// The host of a URL: `https://iot.example.com:8443/x` gives `iot.example.com`.
fn endpoint_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

/// The strings of a JSON list (names, ARNs).
pub fn strings(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}
