//! Integration tests of the Warden server, through the boundaries its users see: the REST API
//! over TCP (with `boto3` where a Python with it is available).

mod auth;
mod authz;
mod boto3;
mod certificates;
mod dashboard;
mod detect;
mod devices;
mod groups;
mod metrics;
mod mitigation;
mod openapi;
mod policies;
mod profiles;
mod protocol;
mod shutdown;
mod support;
mod things;
mod topics;
mod violations;
