"""Drives Warden's registry API with boto3, exactly as a user with an endpoint_url would, and
exits non-zero on the first failure. Run by the Rust test tests/it/boto3.rs, which starts the
server and passes WARDEN_ENDPOINT, WARDEN_ACCESS_KEY_ID and WARDEN_SECRET_ACCESS_KEY.
"""

import datetime
import json

from common import check, fails_with, iot

THING, GROUP, POLICY = "boto-thing", "boto-group", "boto-policy"
DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/$aws/things/${iot:Connection.Thing.ThingName}/*"},
    ],
}


def main():
    created = iot.create_thing(thingName=THING, attributePayload={"attributes": {"model": "x1"}})
    check(created["thingName"] == THING and created["thingArn"].endswith(f":thing/{THING}"), "create_thing")
    group = iot.create_thing_group(
        thingGroupName=GROUP, thingGroupProperties={"thingGroupDescription": "made by boto3"}
    )
    check(group["thingGroupArn"].endswith(f":thinggroup/{GROUP}"), "create_thing_group")
    iot.add_thing_to_thing_group(thingGroupName=GROUP, thingName=THING)
    check(iot.list_things_in_thing_group(thingGroupName=GROUP)["things"] == [THING], "list_things_in_thing_group")
    groups = iot.list_thing_groups_for_thing(thingName=THING)["thingGroups"]
    check([g["groupName"] for g in groups] == [GROUP], "list_thing_groups_for_thing")

    thing = iot.describe_thing(thingName=THING)
    check(thing["attributes"] == {"model": "x1"} and thing["version"] == 1, "describe_thing")
    iot.update_thing(thingName=THING, attributePayload={"attributes": {"fw": "1.2"}, "merge": True}, expectedVersion=1)
    thing = iot.describe_thing(thingName=THING)
    check(thing["attributes"] == {"model": "x1", "fw": "1.2"} and thing["version"] == 2, "update_thing merges")
    fails_with("VersionConflictException", 409, iot.update_thing, thingName=THING, expectedVersion=1)
    described = iot.describe_thing_group(thingGroupName=GROUP)
    check(
        described["thingGroupProperties"]["thingGroupDescription"] == "made by boto3"
        and isinstance(described["thingGroupMetadata"]["creationDate"], datetime.datetime),
        "describe_thing_group",
    )
    fails_with("ResourceNotFoundException", 404, iot.describe_thing, thingName="no-such-thing")
    fails_with("InvalidRequestException", 400, iot.list_things, maxResults=1, nextToken="not-a-token")

    policy = iot.create_policy(policyName=POLICY, policyDocument=json.dumps(DOCUMENT))
    check(policy["policyVersionId"] == "1", "create_policy")
    fails_with("MalformedPolicyException", 400, iot.create_policy, policyName="bad", policyDocument="{}")
    check(json.loads(iot.get_policy(policyName=POLICY)["policyDocument"]) == DOCUMENT, "get_policy")

    cert = iot.create_keys_and_certificate(setAsActive=True)
    check(cert["certificatePem"].startswith("-----BEGIN CERTIFICATE-----"), "create_keys_and_certificate")
    check("PRIVATE KEY" in cert["keyPair"]["PrivateKey"], "create_keys_and_certificate returns the key")
    arn, cert_id = cert["certificateArn"], cert["certificateId"]
    description = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    check(
        description["status"] == "ACTIVE" and isinstance(description["creationDate"], datetime.datetime),
        "describe_certificate",
    )

    iot.attach_policy(policyName=POLICY, target=arn)
    iot.attach_policy(policyName=POLICY, target=group["thingGroupArn"])
    iot.attach_thing_principal(thingName=THING, principal=arn)
    check(iot.list_thing_principals(thingName=THING)["principals"] == [arn], "list_thing_principals")
    check(iot.list_principal_things(principal=arn)["things"] == [THING], "list_principal_things")
    attached = iot.list_attached_policies(target=arn)["policies"]
    check([p["policyName"] for p in attached] == [POLICY], "list_attached_policies")
    targets = iot.list_targets_for_policy(policyName=POLICY)["targets"]
    check(sorted(targets) == sorted([arn, group["thingGroupArn"]]), "list_targets_for_policy")
    fails_with("DeleteConflictException", 409, iot.delete_policy, policyName=POLICY)

    # boto3's own paginators follow Warden's tokens and markers.
    iot.create_thing(thingName="boto-thing-2")
    pages = list(iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 1}))
    names = [t["thingName"] for page in pages for t in page["things"]]
    check(names == [THING, "boto-thing-2"] and len(pages) == 2, "list_things paginates")
    policies = iot.get_paginator("list_policies").paginate().build_full_result()["policies"]
    check([p["policyName"] for p in policies] == [POLICY], "list_policies paginates")
    certificates = iot.get_paginator("list_certificates").paginate().build_full_result()["certificates"]
    check([c["certificateId"] for c in certificates] == [cert_id], "list_certificates paginates")

    now = datetime.datetime.now(datetime.timezone.utc)
    values = iot.list_metric_values(
        thingName=THING,
        metricName="aws:all-bytes-out",
        startTime=now - datetime.timedelta(hours=1),
        endTime=now,
    )
    check(values["metricDatumList"] == [], "list_metric_values takes botocore's timestamps")

    iot.detach_thing_principal(thingName=THING, principal=arn)
    iot.detach_policy(policyName=POLICY, target=arn)
    iot.detach_policy(policyName=POLICY, target=group["thingGroupArn"])
    iot.remove_thing_from_thing_group(thingGroupName=GROUP, thingName=THING)
    check(iot.list_things_in_thing_group(thingGroupName=GROUP)["things"] == [], "remove_thing_from_thing_group")
    fails_with("CertificateStateException", 406, iot.delete_certificate, certificateId=cert_id)
    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    iot.delete_certificate(certificateId=cert_id)
    iot.delete_policy(policyName=POLICY)
    iot.delete_thing_group(thingGroupName=GROUP)
    iot.delete_thing(thingName=THING)
    iot.delete_thing(thingName="boto-thing-2")
    check(iot.list_things()["things"] == [], "everything is deleted: things")
    check(iot.list_thing_groups()["thingGroups"] == [], "everything is deleted: groups")
    check(iot.list_policies()["policies"] == [], "everything is deleted: policies")
    check(iot.list_certificates()["certificates"] == [], "everything is deleted: certificates")


if __name__ == "__main__":
    main()
