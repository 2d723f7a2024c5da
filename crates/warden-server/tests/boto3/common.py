"""What both boto3 scripts share: the client, pointed at the Warden server the Rust test started
(WARDEN_ENDPOINT, WARDEN_ACCESS_KEY_ID, WARDEN_SECRET_ACCESS_KEY), and the two assertions."""

import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

iot = boto3.client(
    "iot",
    endpoint_url=os.environ["WARDEN_ENDPOINT"],
    # Any region: Warden accepts the one the caller's profile names.
    region_name="eu-central-1",
    aws_access_key_id=os.environ["WARDEN_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["WARDEN_SECRET_ACCESS_KEY"],
    config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def fails_with(code, status, call, **kwargs):
    """Calls `call` and checks it fails with AWS error `code` and HTTP `status`; returns the message."""
    try:
        call(**kwargs)
    except ClientError as e:
        got = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
        check(got == (code, status), f"{call.__name__} fails with {code} ({status}), got {got}: {e}")
        return e.response["Error"]["Message"]
    sys.exit(f"FAILED: {call.__name__} succeeded, expected {code}")
