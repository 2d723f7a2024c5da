//! Integration tests of the Warden server, through the boundaries its users see: the REST API
//! over TCP (with `boto3` where a Python with it is available).

mod auth;
mod boto3;
mod certificates;
mod devices;
mod groups;
mod metrics;
mod openapi;
mod policies;
mod profiles;
mod protocol;
mod support;
mod things;
mod violations;
