//! The few Warden REST API operations the simulator needs: registering a device as
//! `warden things create --cert-dir` does (`CreateThing`, `CreateKeysAndCertificate` with the
//! thing as CN, `AttachThingPrincipal`, `AttachPolicy`), the CA devices trust, and what the live
//! summary shows (`ListActiveViolations`, `ListThingsInThingGroup`).
//!
//! Blocking (ureq, as the CLI): callers run it on tokio's blocking pool. One [`Api`] keeps a
//! pool of keep-alive connections, so many registration workers can share it.

use std::time::Duration;

use serde_json::{Value, json};

/// A request that takes longer has met a server in trouble; registration goes on with the
/// next device only after it is answered, so it is bounded.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest page of the list operations.
const PAGE: usize = 250;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the Warden API at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The API answered with an AWS error: its code (`ResourceNotFoundException`) and message.
    #[error("{operation}: {code}: {message}")]
    Status { operation: String, status: u16, code: String, message: String },
    #[error("{operation}: unexpected reply: {why}")]
    BadReply { operation: String, why: String },
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A certificate and key issued for a thing.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub certificate_id: String,
    pub certificate_arn: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
}

/// A client of one Warden API: base URL and bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(endpoint: &str, token: &str) -> Api {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("warden-sim/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            base: endpoint.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// `GET /warden/ca.pem`: the CA of the MQTT endpoint's certificate (and of the things').
    pub fn ca_pem(&self) -> Result<String, ApiError> {
        let text = self.send("GetCaCertificate", "GET", "/warden/ca.pem", &[], None, false)?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad("GetCaCertificate", "not a PEM certificate"));
        }
        Ok(text)
    }

    /// `CreateThing` with attributes; a thing that already exists is fine (its attributes are
    /// left as they are).
    pub fn create_thing(&self, thing: &str, attributes: &[(&str, &str)]) -> Result<(), ApiError> {
        let attributes: serde_json::Map<String, Value> =
            attributes.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let body = json!({ "attributePayload": { "attributes": attributes } });
        match self.json("CreateThing", "POST", &format!("/things/{thing}"), &[], Some(body)) {
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            other => other.map(drop),
        }
    }

    /// `CreateKeysAndCertificate?setAsActive=true&thingName=T`: an active certificate whose CN is
    /// the thing (Warden's extension), with its new private key.
    pub fn create_keys_and_certificate(&self, thing: &str) -> Result<IssuedCertificate, ApiError> {
        const OP: &str = "CreateKeysAndCertificate";
        let path = format!("/keys-and-certificate?setAsActive=true&thingName={thing}");
        let reply = self.json(OP, "POST", &path, &[], None)?;
        let text = |pointer: &str| {
            reply
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(OP, &format!("no {pointer}")))
        };
        Ok(IssuedCertificate {
            certificate_id: text("/certificateId")?,
            certificate_arn: text("/certificateArn")?,
            certificate_pem: text("/certificatePem")?,
            private_key_pem: text("/keyPair/PrivateKey")?,
        })
    }

    /// `AttachThingPrincipal`.
    pub fn attach_thing_principal(&self, thing: &str, certificate_arn: &str) -> Result<(), ApiError> {
        let path = format!("/things/{thing}/principals");
        self.json("AttachThingPrincipal", "PUT", &path, &[("x-amzn-principal", certificate_arn)], None)
            .map(drop)
    }

    /// `AttachPolicy` to a certificate.
    pub fn attach_policy(&self, policy: &str, target_arn: &str) -> Result<(), ApiError> {
        let path = format!("/target-policies/{policy}");
        self.json("AttachPolicy", "PUT", &path, &[], Some(json!({ "target": target_arn }))).map(drop)
    }

    /// Registers `thing` with a new certificate attached to it and to `policy`: the four calls
    /// of `warden things create --cert-dir`.
    pub fn register(
        &self,
        thing: &str,
        attributes: &[(&str, &str)],
        policy: &str,
    ) -> Result<IssuedCertificate, ApiError> {
        self.create_thing(thing, attributes)?;
        let issued = self.create_keys_and_certificate(thing)?;
        self.attach_thing_principal(thing, &issued.certificate_arn)?;
        self.attach_policy(policy, &issued.certificate_arn)?;
        Ok(issued)
    }

    /// `ListActiveViolations`: the thing of every active violation, at most `max_pages` pages.
    pub fn active_violation_things(&self, max_pages: usize) -> Result<Vec<String>, ApiError> {
        self.list("ListActiveViolations", "/active-violations", "activeViolations", max_pages, |v| {
            v["thingName"].as_str().map(str::to_owned)
        })
    }

    /// `ListThingsInThingGroup`: the things in `group`; none when the group does not exist.
    pub fn things_in_group(&self, group: &str, max_pages: usize) -> Result<Vec<String>, ApiError> {
        let path = format!("/thing-groups/{group}/things");
        match self
            .list("ListThingsInThingGroup", &path, "things", max_pages, |v| v.as_str().map(str::to_owned))
        {
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(Vec::new()),
            other => other,
        }
    }

    /// Any operation of the API: `method` on `path` (query included) with an optional JSON
    /// body; the reply's JSON (`null` when empty), or the AWS error. `operation` names the call
    /// in errors. For the lab's set-up and the demo's observations, which use more of the API
    /// than registration does.
    pub fn call(
        &self,
        operation: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        self.json(operation, method, path, &[], body)
    }

    /// Follows `nextToken` through at most `max_pages` pages of a list.
    fn list(
        &self,
        operation: &str,
        path: &str,
        items: &str,
        max_pages: usize,
        item: impl Fn(&Value) -> Option<String>,
    ) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..max_pages {
            let mut target = format!("{path}?maxResults={PAGE}");
            if let Some(t) = &token {
                target.push_str("&nextToken=");
                target.push_str(&encode_query(t));
            }
            let page = self.json(operation, "GET", &target, &[], None)?;
            let list = page[items].as_array().ok_or_else(|| bad(operation, &format!("no {items} list")))?;
            out.extend(list.iter().filter_map(&item));
            token = page["nextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    fn json(
        &self,
        operation: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let text = self.send(operation, method, path, headers, body, true)?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| bad(operation, &format!("not JSON: {e}")))
    }

    fn send(
        &self,
        operation: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
        authenticate: bool,
    ) -> Result<String, ApiError> {
        let transport =
            |e: ureq::Error| ApiError::Transport { endpoint: self.base.clone(), source: Box::new(e) };
        let mut request = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if authenticate {
            request = request.header("authorization", format!("Bearer {}", self.token));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let result = match body {
            Some(body) => {
                let request = request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .map_err(|e| bad(operation, &e.to_string()))?;
                self.agent.run(request)
            }
            None => self.agent.run(request.body(()).map_err(|e| bad(operation, &e.to_string()))?),
        };
        let mut response = result.map_err(transport)?;
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(':').next().unwrap_or_default().to_owned());
        let text = response.body_mut().read_to_string().map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        Err(ApiError::Status {
            operation: operation.to_owned(),
            status,
            code: code.filter(|c| !c.is_empty()).unwrap_or_else(|| format!("HTTP {status}")),
            message,
        })
    }
}

fn bad(operation: &str, why: &str) -> ApiError {
    ApiError::BadReply { operation: operation.to_owned(), why: why.to_owned() }
}

/// Percent-encodes a query value (page tokens are opaque text).
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(encode_query("x-y_z.~"), "x-y_z.~");
    }
}
