"""Drives Warden's Device Defender Detect API with boto3: custom metrics, dimensions, security
profiles and their targets, the violations lists, mitigation actions and detect mitigation tasks. Exits non-zero on the first failure. Run by
the Rust test tests/it/boto3.rs, which starts the server, records two violations (ids
VIOLATION_ACTIVE, still in alarm, and VIOLATION_CLEARED) and passes WARDEN_ENDPOINT,
WARDEN_ACCESS_KEY_ID and WARDEN_SECRET_ACCESS_KEY.
"""

import datetime
import time

from common import check, fails_with, iot

PROFILE, GROUP, PARENT = "boto-profile", "boto-lab", "boto-site"
QUARANTINE, ACTION, TASK = "boto-quarantine", "boto-quarantine-action", "boto-task"
ROLE = "arn:aws:iam::123456789012:role/boto-mitigation"
VIOLATION_ACTIVE = "37e18651d207bbc74236c13faf146127"
VIOLATION_CLEARED = "00000000000000000000000000000002"
BYTES_OUT = {
    "name": "OutboundBytes",
    "metric": "aws:all-bytes-out",
    "criteria": {"comparisonOperator": "less-than-equals", "value": {"count": 35000}, "durationSeconds": 300},
}
AUTH_FAILURES = {
    "name": "AuthFailures",
    "metric": "aws:num-authorization-failures",
    "metricDimension": {"dimensionName": "boto-admin", "operator": "IN"},
    "criteria": {"comparisonOperator": "less-than", "value": {"count": 10}, "durationSeconds": 300},
}
BATTERY = {
    "name": "Battery",
    "metric": "boto-battery",
    "criteria": {"comparisonOperator": "greater-than", "value": {"number": 75}, "consecutiveDatapointsToAlarm": 5},
}


def main():
    metric = iot.create_custom_metric(metricName="boto-battery", metricType="number", clientRequestToken="t1")
    check(metric["metricArn"].endswith(":custommetric/boto-battery"), "create_custom_metric")
    dimension = iot.create_dimension(
        name="boto-admin", type="TOPIC_FILTER", stringValues=["admin/#"], clientRequestToken="t2"
    )
    check(dimension["arn"].endswith(":dimension/boto-admin"), "create_dimension")
    check(iot.describe_dimension(name="boto-admin")["stringValues"] == ["admin/#"], "describe_dimension")
    iot.create_thing_group(thingGroupName=PARENT)
    group = iot.create_thing_group(thingGroupName=GROUP, parentGroupName=PARENT)

    created = iot.create_security_profile(
        securityProfileName=PROFILE,
        securityProfileDescription="made by boto3",
        behaviors=[BYTES_OUT, AUTH_FAILURES, BATTERY],
        additionalMetricsToRetainV2=[{"metric": "aws:num-established-tcp-connections"}],
    )
    arn = created["securityProfileArn"]
    check(arn.endswith(f":securityprofile/{PROFILE}"), "create_security_profile")
    prefix = arn.split("securityprofile/")[0]
    described = iot.describe_security_profile(securityProfileName=PROFILE)
    check(
        described["version"] == 1
        and described["behaviors"] == [BYTES_OUT, AUTH_FAILURES, BATTERY]
        and isinstance(described["creationDate"], datetime.datetime),
        "describe_security_profile",
    )
    updated = iot.update_security_profile(
        securityProfileName=PROFILE, behaviors=[BYTES_OUT], deleteAdditionalMetricsToRetain=True, expectedVersion=1
    )
    check(
        updated["version"] == 2 and updated["behaviors"] == [BYTES_OUT] and "additionalMetricsToRetainV2" not in updated,
        "update_security_profile",
    )
    fails_with(
        "VersionConflictException", 409, iot.update_security_profile,
        securityProfileName=PROFILE, behaviors=[BYTES_OUT], expectedVersion=1,
    )
    ml = {"name": "MsgSentML", "metric": "aws:num-messages-sent", "criteria": {"mlDetectionConfig": {"confidenceLevel": "HIGH"}}}
    message = fails_with(
        "InvalidRequestException", 400, iot.create_security_profile, securityProfileName="boto-ml", behaviors=[ml]
    )
    check("not supported yet" in message, "ML Detect is refused as not supported yet")
    statistical = dict(BYTES_OUT, criteria={"comparisonOperator": "less-than-equals", "statisticalThreshold": {"statistic": "p90"}})
    validated = iot.validate_security_profile_behaviors(behaviors=[statistical])
    check(
        validated["valid"] is False
        and "statisticalThreshold" in validated["validationErrors"][0]["errorMessage"],
        "validate_security_profile_behaviors",
    )
    check(iot.validate_security_profile_behaviors(behaviors=[BYTES_OUT])["valid"], "valid behaviors validate")

    iot.attach_security_profile(securityProfileName=PROFILE, securityProfileTargetArn=group["thingGroupArn"])
    iot.attach_security_profile(securityProfileName=PROFILE, securityProfileTargetArn=f"{prefix}all/things")
    fails_with(
        "ResourceNotFoundException", 404, iot.attach_security_profile,
        securityProfileName=PROFILE, securityProfileTargetArn=f"{prefix}thinggroup/boto-missing",
    )
    targets = iot.list_targets_for_security_profile(securityProfileName=PROFILE)["securityProfileTargets"]
    check(sorted(t["arn"] for t in targets) == [f"{prefix}all/things", group["thingGroupArn"]], "list_targets_for_security_profile")
    mappings = iot.list_security_profiles_for_target(securityProfileTargetArn=group["thingGroupArn"], recursive=True)
    check(
        [m["securityProfileIdentifier"]["name"] for m in mappings["securityProfileTargetMappings"]] == [PROFILE],
        "list_security_profiles_for_target",
    )
    names = [p["name"] for p in iot.list_security_profiles(metricName="aws:all-bytes-out")["securityProfileIdentifiers"]]
    check(names == [PROFILE], "list_security_profiles filtered by metric")

    active = iot.list_active_violations(securityProfileName="MySecProfile")["activeViolations"]
    check(
        [v["violationId"] for v in active] == [VIOLATION_ACTIVE]
        and active[0]["lastViolationValue"] == {"count": 54}
        and isinstance(active[0]["violationStartTime"], datetime.datetime),
        "list_active_violations",
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    events = iot.list_violation_events(startTime=now - hour, endTime=now + hour)["violationEvents"]
    check(
        [(e["violationId"], e["violationEventType"]) for e in events]
        == [(VIOLATION_ACTIVE, "in-alarm"), (VIOLATION_CLEARED, "in-alarm"), (VIOLATION_CLEARED, "alarm-cleared")],
        "list_violation_events",
    )
    iot.put_verification_state_on_violation(
        violationId=VIOLATION_ACTIVE, verificationState="TRUE_POSITIVE", verificationStateDescription="confirmed"
    )
    active = iot.list_active_violations(verificationState="TRUE_POSITIVE")["activeViolations"]
    check(
        [(v["violationId"], v["verificationStateDescription"]) for v in active] == [(VIOLATION_ACTIVE, "confirmed")],
        "put_verification_state_on_violation",
    )

    mitigate(now, hour)

    iot.detach_security_profile(securityProfileName=PROFILE, securityProfileTargetArn=group["thingGroupArn"])
    iot.detach_security_profile(securityProfileName=PROFILE, securityProfileTargetArn=f"{prefix}all/things")
    iot.delete_security_profile(securityProfileName=PROFILE, expectedVersion=2)
    iot.delete_custom_metric(metricName="boto-battery")
    iot.delete_dimension(name="boto-admin")
    iot.delete_thing_group(thingGroupName=GROUP)
    iot.delete_thing_group(thingGroupName=PARENT)
    check(iot.list_security_profiles()["securityProfileIdentifiers"] == [], "everything is deleted: profiles")
    check(iot.list_custom_metrics()["metricNames"] == [], "everything is deleted: custom metrics")
    check(iot.list_dimensions()["dimensionNames"] == [], "everything is deleted: dimensions")


def mitigate(now, hour):
    """Quarantines the thing of VIOLATION_ACTIVE with a detect mitigation task."""
    iot.create_thing(thingName="dev-1")
    iot.create_thing_group(thingGroupName=QUARANTINE)
    params = {"addThingsToThingGroupParams": {"thingGroupNames": [QUARANTINE]}}
    created = iot.create_mitigation_action(actionName=ACTION, roleArn=ROLE, actionParams=params)
    check(created["actionArn"].endswith(f":mitigationaction/{ACTION}") and created["actionId"], "create_mitigation_action")
    described = iot.describe_mitigation_action(actionName=ACTION)
    check(
        described["actionType"] == "ADD_THINGS_TO_THING_GROUP"
        and described["actionParams"] == params
        and described["roleArn"] == ROLE
        and isinstance(described["creationDate"], datetime.datetime),
        "describe_mitigation_action",
    )
    params = {"addThingsToThingGroupParams": {"thingGroupNames": [QUARANTINE], "overrideDynamicGroups": True}}
    updated = iot.update_mitigation_action(actionName=ACTION, actionParams=params)
    check(updated["actionId"] == created["actionId"], "update_mitigation_action")
    listed = iot.list_mitigation_actions(actionType="ADD_THINGS_TO_THING_GROUP")["actionIdentifiers"]
    check([a["actionName"] for a in listed] == [ACTION], "list_mitigation_actions")
    fails_with(
        "InvalidRequestException", 400, iot.create_mitigation_action,
        actionName="boto-bad", roleArn=ROLE, actionParams={"updateDeviceCertificateParams": {"action": "DEACTIVATE"}, **params},
    )

    start = dict(
        taskId=TASK,
        target={"violationIds": [VIOLATION_ACTIVE]},
        actions=[ACTION],
        violationEventOccurrenceRange={"startTime": now - hour, "endTime": now + hour},
        includeOnlyActiveViolations=True,
        clientRequestToken="boto-token-1",
    )
    check(iot.start_detect_mitigation_actions_task(**start)["taskId"] == TASK, "start_detect_mitigation_actions_task")
    check(iot.start_detect_mitigation_actions_task(**start)["taskId"] == TASK, "starting the same task again is idempotent")
    fails_with(
        "TaskAlreadyExistsException", 400, iot.start_detect_mitigation_actions_task,
        **dict(start, clientRequestToken="boto-token-2"),
    )
    deadline = time.monotonic() + 15
    while True:
        summary = iot.describe_detect_mitigation_actions_task(taskId=TASK)["taskSummary"]
        if summary["taskStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(
        summary["taskStatus"] == "SUCCESSFUL"
        and summary["taskStatistics"] == {"actionsExecuted": 1, "actionsSkipped": 0, "actionsFailed": 0}
        and summary["target"] == {"violationIds": [VIOLATION_ACTIVE]}
        and summary["onlyActiveViolationsIncluded"] is True
        and summary["violationEventOccurrenceRange"]["startTime"] < now
        and [a["name"] for a in summary["actionsDefinition"]] == [ACTION]
        and isinstance(summary["taskEndTime"], datetime.datetime),
        "describe_detect_mitigation_actions_task",
    )
    tasks = iot.list_detect_mitigation_actions_tasks(startTime=now - hour, endTime=now + hour)["tasks"]
    check([t["taskId"] for t in tasks] == [TASK], "list_detect_mitigation_actions_tasks")
    executions = iot.list_detect_mitigation_actions_executions(taskId=TASK)["actionsExecutions"]
    check(
        [(e["violationId"], e["thingName"], e["actionName"], e["status"]) for e in executions]
        == [(VIOLATION_ACTIVE, "dev-1", ACTION, "SUCCESSFUL")]
        and isinstance(executions[0]["executionStartDate"], datetime.datetime),
        "list_detect_mitigation_actions_executions",
    )
    by_thing = iot.list_detect_mitigation_actions_executions(thingName="dev-1", startTime=now - hour, endTime=now + hour)
    check(len(by_thing["actionsExecutions"]) == 1, "list_detect_mitigation_actions_executions by thing and time")
    groups = iot.list_thing_groups_for_thing(thingName="dev-1")["thingGroups"]
    check([g["groupName"] for g in groups] == [QUARANTINE], "the task moved the thing into the quarantine group")
    message = fails_with("InvalidRequestException", 400, iot.cancel_detect_mitigation_actions_task, taskId=TASK)
    check("already ended" in message, "cancel_detect_mitigation_actions_task refuses a finished task")
    fails_with("ResourceNotFoundException", 404, iot.cancel_detect_mitigation_actions_task, taskId="boto-missing")

    iot.delete_mitigation_action(actionName=ACTION)
    check(iot.list_mitigation_actions()["actionIdentifiers"] == [], "delete_mitigation_action")
    iot.delete_thing_group(thingGroupName=QUARANTINE)
    iot.delete_thing(thingName="dev-1")


if __name__ == "__main__":
    main()
