#!/usr/bin/env python3
"""Generates openapi.json, the OpenAPI 3.0 document Warden serves at /openapi.json, from
botocore's service model of AWS IoT (botocore/data/iot/2015-05-28/service-2.json).

The REST API follows that model exactly (paths, members, their locations, patterns, enums,
error codes), so deriving the document from it keeps the two from drifting, with no
annotations in the Rust code. What Warden does differently is stated here, next to the list of
operations it implements: members it refuses are dropped from the inputs, members it never
returns are dropped from the outputs, and notes are appended to the descriptions.

Run with a Python that has botocore, from anywhere:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install botocore
    /tmp/venv/bin/python crates/warden-server/src/api/openapi/gen.py

When an operation is added to api/mod.rs, add it to OPERATIONS and rerun; the Rust test
`openapi::every_documented_operation_is_routed` checks that each one listed is served.
"""

import json
import os
import re
import sys

import botocore
from botocore.loaders import Loader

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "openapi.json")

# The operations Warden implements, with notes on where it differs from AWS.
OPERATIONS = {
    "CreateThing": "",
    "DescribeThing": "",
    "UpdateThing": "`removeThingType` is accepted and changes nothing: Warden has no thing types.",
    "DeleteThing": "Refused with DeleteConflictException (409) while certificates are attached.",
    "ListThings": "",
    "CreateThingGroup": "",
    "DescribeThingGroup": "",
    "UpdateThingGroup": "",
    "DeleteThingGroup": "Refused with DeleteConflictException (409) while the group has child groups. "
    "Policies attached to the group are detached.",
    "ListThingGroups": "",
    "AddThingToThingGroup": "",
    "RemoveThingFromThingGroup": "",
    "ListThingsInThingGroup": "",
    "ListThingGroupsForThing": "",
    "CreateKeysAndCertificate": "Warden extension: the optional `thingName` query parameter becomes the "
    "certificate's subject CN, which is the device's identity on MQTT. Without it the CN is "
    "`AWS-IoT-Certificate` (AWS's CN made a valid thing name), and the device's thing is the one the "
    "certificate is attached to that its client id names.",
    "RegisterCertificate": "The certificate must be signed by `caCertificatePem`, or, without it, by "
    "Warden's CA. Statuses PENDING_TRANSFER and REGISTER_INACTIVE are not supported.",
    "RegisterCertificateWithoutCA": "Statuses PENDING_TRANSFER and REGISTER_INACTIVE are not supported.",
    "DescribeCertificate": "",
    "UpdateCertificate": "Statuses PENDING_TRANSFER and REGISTER_INACTIVE are not supported; "
    "PENDING_ACTIVATION cannot be set, and a REVOKED certificate stays revoked.",
    "DeleteCertificate": "`forceDelete=true` is not supported.",
    "ListCertificates": "Always oldest first: `isAscendingOrder` is accepted and ignored.",
    "AttachThingPrincipal": "The principal is a certificate ARN. `thingPrincipalType` EXCLUSIVE_THING "
    "is not supported.",
    "DetachThingPrincipal": "The principal is a certificate ARN.",
    "ListThingPrincipals": "",
    "ListPrincipalThings": "The principal is a certificate ARN.",
    "CreatePolicy": "The document must be one Warden can enforce exactly (iot:Connect, iot:Publish, "
    "iot:Subscribe, iot:Receive; no Condition); otherwise MalformedPolicyException.",
    "GetPolicy": "",
    "DeletePolicy": "",
    "ListPolicies": "Always by name: `isAscendingOrder` is accepted and ignored.",
    "AttachPolicy": "Targets are certificate and thing group ARNs.",
    "DetachPolicy": "Targets are certificate and thing group ARNs.",
    "ListAttachedPolicies": "With `recursive`, a thing group's list includes its ancestors' policies.",
    "ListTargetsForPolicy": "",
    "ListMetricValues": "`dimensionValueOperator` NOT_IN is not supported. The range is "
    "[startTime, endTime); query timestamps may also be epoch seconds.",
    "CreateSecurityProfile": "Behaviors are compiled as detection will run them; `statisticalThreshold` "
    "and `mlDetectionConfig` are refused as not supported yet. Creating a profile again exactly as it "
    "is succeeds.",
    "DescribeSecurityProfile": "",
    "UpdateSecurityProfile": "`statisticalThreshold` and `mlDetectionConfig` are refused as not supported yet.",
    "DeleteSecurityProfile": "",
    "ListSecurityProfiles": "`metricName` and `dimensionName` also match retained metrics.",
    "ValidateSecurityProfileBehaviors": "",
    "AttachSecurityProfile": "Targets are thing group ARNs of existing groups and the `all/things`, "
    "`all/registered-things` and `all/unregistered-things` ARNs; at most 5 profiles per target.",
    "DetachSecurityProfile": "",
    "ListTargetsForSecurityProfile": "",
    "ListSecurityProfilesForTarget": "With `recursive`, a thing group's list includes the profiles of its "
    "ancestor groups.",
    "CreateCustomMetric": "`clientRequestToken` is required but not kept; repeating a creation exactly succeeds.",
    "DescribeCustomMetric": "",
    "UpdateCustomMetric": "",
    "DeleteCustomMetric": "Refused with InvalidRequestException while a security profile uses the metric.",
    "ListCustomMetrics": "",
    "CreateDimension": "`clientRequestToken` is required but not kept; repeating a creation exactly succeeds.",
    "DescribeDimension": "",
    "UpdateDimension": "",
    "DeleteDimension": "Refused with InvalidRequestException while a security profile uses the dimension.",
    "ListDimensions": "",
    "ListActiveViolations": "All Warden behaviors are STATIC. `listSuppressedAlerts=true` lists only "
    "suppressed violations, `false` only the others.",
    "ListViolationEvents": "The range is [startTime, endTime). All Warden behaviors are STATIC. "
    "`listSuppressedAlerts` as in ListActiveViolations.",
    "PutVerificationStateOnViolation": "An unknown violation id is an InvalidRequestException.",
    "CreateMitigationAction": "`roleArn` is required and kept but not used: Warden has no IAM. All six action "
    "types can be created; Detect tasks run ADD_THINGS_TO_THING_GROUP (`overrideDynamicGroups` is kept and "
    "changes nothing: Warden has no dynamic groups) and UPDATE_DEVICE_CERTIFICATE (DEACTIVATE: every ACTIVE "
    "certificate attached to the thing becomes INACTIVE, and its sessions are dropped), and answer the other "
    "types with a SKIPPED execution. `logLevel` DISABLED is refused. Creating an action again exactly as it "
    "is succeeds.",
    "DescribeMitigationAction": "",
    "UpdateMitigationAction": "Parameters of an Audit-only type are refused while a security profile runs the "
    "action automatically (automaticMitigationActions).",
    "DeleteMitigationAction": "Refused with InvalidRequestException while a security profile runs the action "
    "automatically (automaticMitigationActions). Deleting an action that does not exist succeeds.",
    "ListMitigationActions": "",
    "StartDetectMitigationActionsTask": "Every action and violation id must exist. A violation is in "
    "`violationEventOccurrenceRange` when one of its events happened in [startTime, endTime); without a range "
    "every violation qualifies. Actions run in order on each violation; after a FAILED one, the rest are "
    "SKIPPED for that violation. Starting a task again with the same id, token and parameters returns it "
    "without running it again.",
    "DescribeDetectMitigationActionsTask": "`actionsDefinition` shows the actions as they are now; an action "
    "deleted since is shown by name only. Tasks of Warden's automatic mitigation have ids `auto-{violationId}`.",
    "ListDetectMitigationActionsTasks": "Tasks started in [startTime, endTime).",
    "CancelDetectMitigationActionsTask": "The action running finishes; nothing done is undone. A task that "
    "has ended is an InvalidRequestException.",
    "ListDetectMitigationActionsExecutions": "`startTime` and `endTime` bound when executions started, "
    "[startTime, endTime). Warden's errorCode values: ResourceNotFound, InternalFailure, Timeout (FAILED), "
    "NotSupportedForDetect, PreviousActionFailed (SKIPPED).",
}

# Members Warden refuses (inputs) or never returns (outputs), by shape name.
OMIT = {
    "CreateThingRequest": ["thingTypeName", "billingGroupName"],
    "UpdateThingRequest": ["thingTypeName"],
    "ListThingsRequest": ["thingTypeName", "usePrefixAttributeValue"],
    "CreateThingGroupRequest": ["tags"],
    "CreatePolicyRequest": ["tags"],
    "ThingAttribute": ["thingTypeName"],
    "DescribeThingResponse": ["thingTypeName", "billingGroupName"],
    "DescribeThingGroupResponse": ["indexName", "queryString", "queryVersion", "status"],
    "CertificateDescription": ["previousOwnedBy", "customerVersion", "transferData", "generationId"],
    "GetPolicyResponse": ["generationId"],
    "CreateSecurityProfileRequest": ["tags"],
    "CreateMitigationActionRequest": ["tags"],
    "CreateCustomMetricRequest": ["tags"],
    "CreateDimensionRequest": ["tags"],
    "ActiveViolation": ["violationEventAdditionalInfo"],
    "ViolationEvent": ["violationEventAdditionalInfo"],
}

# Extra input members (Warden extensions), by operation.
EXTRA_PARAMETERS = {
    "CreateKeysAndCertificate": [
        {
            "name": "thingName",
            "in": "query",
            "required": False,
            "description": "Warden extension: the subject CN of the new certificate, a thing name.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "[a-zA-Z0-9:_-]+"},
        }
    ]
}

# Extra body members (Warden extensions), by shape name: request shapes and the structures
# responses use.
AUTOMATIC_MITIGATION_ACTIONS = {
    "type": "array",
    "maxItems": 5,
    "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "[a-zA-Z0-9_-]+"},
    "description": "Warden extension: the names of mitigation actions (ADD_THINGS_TO_THING_GROUP or "
    "UPDATE_DEVICE_CERTIFICATE) run on every in-alarm violation of the profile, recorded as the detect "
    "mitigation task auto-{violationId}. In an update, [] removes them.",
}
EXTRA_MEMBERS = {
    "CreateSecurityProfileRequest": {"automaticMitigationActions": AUTOMATIC_MITIGATION_ACTIONS},
    "UpdateSecurityProfileRequest": {"automaticMitigationActions": AUTOMATIC_MITIGATION_ACTIONS},
    "DescribeSecurityProfileResponse": {"automaticMitigationActions": AUTOMATIC_MITIGATION_ACTIONS},
    "UpdateSecurityProfileResponse": {"automaticMitigationActions": AUTOMATIC_MITIGATION_ACTIONS},
}

# The error codes Warden produces, and the operations that produce more than AWS models.
PRODUCED_ERRORS = {
    "InvalidRequestException",
    "ResourceNotFoundException",
    "ResourceAlreadyExistsException",
    "VersionConflictException",
    "DeleteConflictException",
    "CertificateStateException",
    "CertificateValidationException",
    "MalformedPolicyException",
    "InternalFailureException",
    "LimitExceededException",
    "TaskAlreadyExistsException",
}
EXTRA_ERRORS = {
    "DeleteThing": ["DeleteConflictException"],
    "DeleteThingGroup": ["DeleteConflictException"],
    "UpdateThingGroup": ["ResourceNotFoundException"],
    "DetachPolicy": ["ResourceNotFoundException"],
}
AUTH_ERRORS = {
    "401": "MissingAuthenticationTokenException: no credentials.",
    "403": "UnrecognizedClientException (unknown API token or access key) or InvalidSignatureException.",
}


# Warden's alert topics API (not in botocore's model): written here by hand.
ALERT_TOPIC_SCHEMAS = {
    "WardenAlertTopic": {
        "type": "object",
        "properties": {
            "topicName": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "[a-zA-Z0-9_-]+"},
            "topicArn": {"type": "string", "description": "arn:aws:sns:{region}:{account}:{topicName}"},
            "creationDate": {"type": "number", "description": "Seconds since the Unix epoch (may be fractional)."},
        },
        "required": ["topicName", "topicArn", "creationDate"],
    },
    "WardenAlertTopicWithSubscriptions": {
        "allOf": [
            {"$ref": "#/components/schemas/WardenAlertTopic"},
            {
                "type": "object",
                "properties": {
                    "subscriptions": {"type": "array", "items": {"$ref": "#/components/schemas/WardenAlertSubscription"}}
                },
                "required": ["subscriptions"],
            },
        ]
    },
    "WardenAlertSubscription": {
        "type": "object",
        "properties": {
            "subscriptionId": {"type": "string"},
            "topicName": {"type": "string"},
            "protocol": {"type": "string", "enum": ["http", "https", "mqtt"]},
            "endpoint": {"type": "string", "maxLength": 2048},
            "creationDate": {"type": "number", "description": "Seconds since the Unix epoch (may be fractional)."},
            "delivered": {"type": "integer", "format": "int64", "description": "Alerts delivered."},
            "failed": {"type": "integer", "format": "int64", "description": "Delivery attempts that failed."},
            "lastError": {"type": "string", "nullable": True, "description": "The error of the last attempt, if it failed."},
            "lastAttemptDate": {"type": "number", "nullable": True},
        },
        "required": ["subscriptionId", "topicName", "protocol", "endpoint", "creationDate", "delivered", "failed"],
    },
    "WardenSubscribeRequest": {
        "type": "object",
        "properties": {
            "protocol": {"type": "string", "enum": ["http", "https", "mqtt"]},
            "endpoint": {
                "type": "string",
                "maxLength": 2048,
                "description": "An absolute URL of the protocol's scheme, or an MQTT topic name without "
                "wildcards (not starting with $).",
            },
        },
        "required": ["protocol", "endpoint"],
    },
}


def alert_topic_paths(error_responses):
    """The paths of the alert topics API, as the generated operations, with AWS's error shapes."""

    def ref(name):
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

    def errors(*codes):
        return error_responses("", {"errors": [{"shape": c} for c in codes]})

    topic_name = {
        "name": "topicName",
        "in": "path",
        "required": True,
        "description": "The topic's name, the last segment of the alertTargetArn that names it.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "[a-zA-Z0-9_-]+"},
    }
    paging = [
        {"name": "maxResults", "in": "query", "required": False, "description": "Page size.",
         "schema": {"type": "integer", "minimum": 1, "maximum": 250}},
        {"name": "nextToken", "in": "query", "required": False, "description": "The token of the next page.",
         "schema": {"type": "string"}},
    ]
    page = lambda key, item: {  # noqa: E731
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    key: {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                    "nextToken": {"type": "string"},
                },
            }
        }
    }
    note = "Warden extension (SNS is not emulated): "
    return {
        "/warden/alert-topics": {
            "get": {
                "operationId": "WardenListAlertTopics",
                "summary": "WardenListAlertTopics",
                "description": note + "the alert topics, by name.",
                "parameters": paging,
                "responses": {"200": {"description": "Success.", "content": page("topics", "WardenAlertTopic")},
                              **errors("InvalidRequestException")},
            }
        },
        "/warden/alert-topics/{topicName}": {
            "post": {
                "operationId": "WardenCreateAlertTopic",
                "summary": "WardenCreateAlertTopic",
                "description": note + "creates a topic that profiles' alertTargets.SNS.alertTargetArn can name "
                "(by the ARN's last segment; region and account are not checked).",
                "parameters": [topic_name],
                "responses": {"200": {"description": "Success.", "content": ref("WardenAlertTopic")},
                              **errors("InvalidRequestException", "ResourceAlreadyExistsException")},
            },
            "get": {
                "operationId": "WardenDescribeAlertTopic",
                "summary": "WardenDescribeAlertTopic",
                "description": note + "the topic and all its subscriptions with their delivery counters.",
                "parameters": [topic_name],
                "responses": {"200": {"description": "Success.", "content": ref("WardenAlertTopicWithSubscriptions")},
                              **errors("InvalidRequestException", "ResourceNotFoundException")},
            },
            "delete": {
                "operationId": "WardenDeleteAlertTopic",
                "summary": "WardenDeleteAlertTopic",
                "description": note + "deletes the topic and its subscriptions. Alerts of profiles that name "
                "it are dropped until a topic of that name exists again.",
                "parameters": [topic_name],
                "responses": {"200": {"description": "Success."},
                              **errors("InvalidRequestException", "ResourceNotFoundException")},
            },
        },
        "/warden/alert-topics/{topicName}/subscriptions": {
            "post": {
                "operationId": "WardenSubscribe",
                "summary": "WardenSubscribe",
                "description": note + "subscribes an HTTP(S) webhook or an MQTT topic of Warden's broker to the "
                "topic. Subscribing the same protocol and endpoint again returns the existing subscription.",
                "parameters": [topic_name],
                "requestBody": {"required": True, "content": ref("WardenSubscribeRequest")},
                "responses": {"200": {"description": "Success.", "content": ref("WardenAlertSubscription")},
                              **errors("InvalidRequestException", "ResourceNotFoundException")},
            },
            "get": {
                "operationId": "WardenListSubscriptions",
                "summary": "WardenListSubscriptions",
                "description": note + "the topic's subscriptions in the order they were made, with their "
                "delivery counters: where failing deliveries show.",
                "parameters": [topic_name] + paging,
                "responses": {"200": {"description": "Success.", "content": page("subscriptions", "WardenAlertSubscription")},
                              **errors("InvalidRequestException", "ResourceNotFoundException")},
            },
        },
        "/warden/info": {
            "get": {
                "operationId": "WardenDescribeServer",
                "summary": "WardenDescribeServer",
                "description": "Warden extension: the region and account the server's ARNs use, and its version, "
                               "for clients that build ARNs no operation hands out (all/things targets, roles).",
                "responses": {"200": {"description": "Success.", "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"region": {"type": "string"}, "accountId": {"type": "string"},
                                   "version": {"type": "string"}},
                }}}}},
            }
        },
        "/warden/alert-subscriptions/{subscriptionId}": {
            "delete": {
                "operationId": "WardenUnsubscribe",
                "summary": "WardenUnsubscribe",
                "description": note + "deletes a subscription.",
                "parameters": [{"name": "subscriptionId", "in": "path", "required": True,
                                "description": "The subscription's id.", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "Success."},
                              **errors("InvalidRequestException", "ResourceNotFoundException")},
            }
        },
    }


def main():
    model = Loader().load_service_model("iot", "service-2")
    shapes = model["shapes"]
    schemas = {}

    def doc(text):
        text = re.sub(r"<[^>]+>", "", text or "")
        return re.sub(r"\s+", " ", text).strip()

    def schema(name):
        """The schema of shape `name`: structures become components, the rest inline."""
        s = shapes[name]
        t = s["type"]
        if t == "structure":
            if name not in schemas:
                schemas[name] = None  # recursion guard
                schemas[name] = structure(name, s["members"], s.get("required", []))
            return {"$ref": f"#/components/schemas/{name}"}
        out = {}
        if t == "string":
            out["type"] = "string"
            for key, oas in (("min", "minLength"), ("max", "maxLength"), ("pattern", "pattern"), ("enum", "enum")):
                if key in s:
                    out[oas] = s[key]
        elif t in ("integer", "long"):
            out["type"] = "integer"
            out["format"] = "int32" if t == "integer" else "int64"
            for key, oas in (("min", "minimum"), ("max", "maximum")):
                if key in s:
                    out[oas] = s[key]
        elif t in ("double", "float"):
            out["type"] = "number"
        elif t == "boolean":
            out["type"] = "boolean"
        elif t == "timestamp":
            out = {"type": "number", "description": "Seconds since the Unix epoch (may be fractional)."}
        elif t == "list":
            out = {"type": "array", "items": schema(s["member"]["shape"])}
            for key, oas in (("min", "minItems"), ("max", "maxItems")):
                if key in s:
                    out[oas] = s[key]
        elif t == "map":
            out = {"type": "object", "additionalProperties": schema(s["value"]["shape"])}
        else:
            raise SystemExit(f"unhandled shape type {t} ({name})")
        return out

    def structure(name, members, required):
        omit = set(OMIT.get(name, []))
        props = {}
        for member, m in members.items():
            if member in omit or m.get("location"):
                continue
            props[member] = schema(m["shape"])
        props.update(EXTRA_MEMBERS.get(name, {}))
        out = {"type": "object", "properties": props}
        req = [r for r in required if r in props]
        if req:
            out["required"] = req
        return out

    def parameter(member, m, required):
        s = shapes[m["shape"]]
        if s["type"] == "timestamp":
            sch = {"type": "string", "format": "date-time", "description": "ISO 8601, e.g. 2026-11-27T10:00:00Z."}
        else:
            sch = schema(m["shape"])
        where = {"uri": "path", "querystring": "query", "header": "header"}[m["location"]]
        return {
            "name": m.get("locationName", member),
            "in": where,
            "required": where == "path" or member in required,
            "description": doc(m.get("documentation"))[:300],
            "schema": sch,
        }

    def error_responses(op_name, op):
        codes = [e["shape"] for e in op.get("errors", [])] + EXTRA_ERRORS.get(op_name, [])
        by_status = {}
        for code in codes:
            if code in PRODUCED_ERRORS:
                status = str(shapes[code]["error"]["httpStatusCode"])
                by_status.setdefault(status, [])
                if code not in by_status[status]:
                    by_status[status].append(code)
        out = {
            status: {
                "description": ", ".join(codes) + " (code in the x-amzn-ErrorType header).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for status, codes in sorted(by_status.items())
        }
        for status, text in AUTH_ERRORS.items():
            out[status] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        return out

    paths = {
        "/health": {
            "get": {
                "operationId": "Health",
                "summary": "Liveness; needs no credentials.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The server is up.",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}}
                            }
                        },
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi",
                "summary": "This document; needs no credentials.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {}}}},
            }
        },
    }
    for op_name, note in OPERATIONS.items():
        op = model["operations"][op_name]
        method = op["http"]["method"].lower()
        path = op["http"]["requestUri"]
        inp = shapes[op["input"]["shape"]] if "input" in op else {"members": {}}
        required = inp.get("required", [])
        omit = set(OMIT.get(op.get("input", {}).get("shape"), []))
        params, body = [], {}
        for member, m in inp["members"].items():
            if member in omit:
                continue
            if m.get("location"):
                params.append(parameter(member, m, required))
            else:
                body[member] = m
        params += EXTRA_PARAMETERS.get(op_name, [])
        description = doc(op.get("documentation"))
        if note:
            description += "\n\nWarden: " + note
        entry = {"operationId": op_name, "summary": op_name, "description": description}
        if params:
            entry["parameters"] = params
        extra = EXTRA_MEMBERS.get(op.get("input", {}).get("shape"), {})
        if body or extra:
            props = {k: schema(m["shape"]) for k, m in body.items()}
            props.update(extra)
            body_schema = {"type": "object", "properties": props}
            req = [r for r in required if r in props]
            if req:
                body_schema["required"] = req
            entry["requestBody"] = {"required": bool(req), "content": {"application/json": {"schema": body_schema}}}
        ok = {"description": "Success."}
        if "output" in op:
            out_schema = schema(op["output"]["shape"])
            ok["content"] = {"application/json": {"schema": out_schema}}
        entry["responses"] = {"200": ok, **error_responses(op_name, op)}
        paths.setdefault(path, {})[method] = entry

    paths.update(alert_topic_paths(error_responses))
    schemas.update(ALERT_TOPIC_SCHEMAS)
    schemas["Error"] = {
        "type": "object",
        "description": "Every error: the code is in the x-amzn-ErrorType header. "
        "ResourceAlreadyExistsException also carries resourceId and resourceArn.",
        "properties": {
            "message": {"type": "string"},
            "resourceId": {"type": "string"},
            "resourceArn": {"type": "string"},
        },
        "required": ["message"],
    }
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "Warden REST API",
            "version": "1",
            "description": "The AWS IoT registry and Device Defender Detect operations Warden implements, "
            "with AWS's paths, shapes and error codes (protocol rest-json, signing name iot), so "
            "boto3 and the aws CLI work with an endpoint_url. Generated by "
            "crates/warden-server/src/api/openapi/gen.py from botocore's service model.",
            "x-botocore-version": botocore.__version__,
        },
        "security": [{"apiToken": []}, {"sigv4": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer", "description": "The API token created at first start."},
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (AWS4-HMAC-SHA256, service iot, any region) "
                    "with an access key from the server's configuration.",
                },
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }
    with open(OUT, "w") as f:
        json.dump(document, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(OPERATIONS)} AWS operations, {len(schemas)} schemas", file=sys.stderr)


if __name__ == "__main__":
    main()
