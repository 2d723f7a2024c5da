//! `/openapi.json` is generated from botocore's model by `src/api/openapi/gen.py`; these tests
//! keep it true to the router.

use serde_json::Value;

use crate::support::TestServer;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let server = TestServer::start().await;
    let document = server.ok("GET", "/openapi.json", None).await;
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            operations.push(operation["operationId"].as_str().unwrap().to_owned());
            // Every label filled with a valid but unknown name: the operation runs and answers
            // something other than "no such operation".
            let target = fill_labels(path);
            let resp = server.call(&method.to_uppercase(), &target, None).await;
            assert!(
                !matches!(
                    resp.error_type.as_deref(),
                    Some("UnknownOperationException" | "MethodNotAllowedException")
                ),
                "{method} {path} is documented but not routed: {}",
                resp.text()
            );
        }
    }
    assert_eq!(operations.len(), 77, "{operations:?}");
    assert!(operations.contains(&"ListMetricValues".to_owned()));
}

#[tokio::test]
async fn the_document_refers_only_to_schemas_it_has() {
    let server = TestServer::start().await;
    let document = server.ok("GET", "/openapi.json", None).await;
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "{r} is not defined");
    }
}

fn fill_labels(path: &str) -> String {
    let filled: Vec<String> = path
        .split('/')
        .map(|segment| match segment {
            "{certificateId}" => "0".repeat(64),
            s if s.starts_with('{') => "x".to_owned(),
            s => s.to_owned(),
        })
        .collect();
    filled.join("/")
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
