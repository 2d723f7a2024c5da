"""Generates the SigV4 test vectors for `api::sigv4` with botocore as the oracle.

Every vector is a request exactly as it arrived on the wire: a local HTTP server records the request
target, the header lines (as UTF-8, which is how botocore encodes header values) and the body, and
the request was sent by botocore itself, either through a real `iot` client (what boto3 and the
aws CLI send) or as a hand-built `AWSRequest` signed with `SigV4Auth` for service `iot` (cases in
the style of the AWS SigV4 test suite). Time, credentials and invocation ids are fixed, so the
output is deterministic.

Next to each request the file keeps botocore's canonical request, so that a mismatch in the Rust
verifier shows the line that differs, and `expect`: `ok`, or the error the verifier must return
for the cases Warden rejects on purpose.

Run from the repository root:

    python3 -m venv /tmp/sigv4-venv && /tmp/sigv4-venv/bin/pip install botocore
    /tmp/sigv4-venv/bin/python crates/warden-server/src/api/sigv4_vectors/gen.py
"""

import datetime
import hashlib
import http.server
import itertools
import json
import pathlib
import threading
import uuid
from unittest import mock
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.httpsession
import botocore.session
from botocore.utils import normalize_url_path

ACCESS_KEY = 'AKIDEXAMPLE'
SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
REGION = 'us-east-1'
SERVICE = 'iot'
NOW = datetime.datetime(2026, 11, 27, 12, 34, 56, tzinfo=datetime.timezone.utc)
# A fixed port keeps the signed Host header, and so the file, stable across runs.
PORT = 18443
OUT = pathlib.Path(__file__).with_name('vectors.json')


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request as received and answers `200 {}`."""

    received = []

    def _record(self):
        length = int(self.headers.get('Content-Length', 0))
        body = self.rfile.read(length) if length else b''
        # `self.path` has a leading `//` collapsed by http.server; the request line is the truth.
        target = self.raw_requestline.decode('iso-8859-1').split(' ')[1]
        path, sep, query = target.partition('?')
        Recorder.received.append(
            {
                'method': self.command,
                'path': path,
                'query': query if sep else None,
                # http.server decodes header lines as ISO-8859-1; botocore sent UTF-8 bytes.
                'headers': [
                    [k, v.encode('iso-8859-1').decode('utf-8')] for k, v in self.headers.items()
                ],
                'body': body.decode('utf-8'),
            }
        )
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'{}')

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

    def log_message(self, *args):
        pass


class CapturingSigV4Auth(botocore.auth.SigV4Auth):
    """SigV4Auth that remembers the last canonical request it built."""

    last_canonical_request = None

    def canonical_request(self, request):
        cr = super().canonical_request(request)
        CapturingSigV4Auth.last_canonical_request = cr
        return cr


def expectation(record):
    """What the verifier must answer for a request as received."""
    headers = {k.lower() for k, _ in record['headers']}
    if 'x-amz-date' not in headers:
        return 'Missing'
    if 'x-amz-security-token' in headers:
        return 'Unsupported'
    if normalize_url_path(record['path']) != record['path']:
        # botocore signs the normalized path but sends the raw one; Warden refuses to let one
        # signature stand for several paths.
        return 'Malformed'
    for k, v in record['headers']:
        if k.lower() == 'x-amz-content-sha256' and v != hashlib.sha256(
            record['body'].encode()
        ).hexdigest():
            return 'Unsupported'
    return 'ok'


vectors = []


def take(name, restore_repeated=None):
    assert len(Recorder.received) == 1, (name, Recorder.received)
    record = Recorder.received.pop()
    record = {'name': name, **record}
    if restore_repeated:
        # urllib3 sends only the last value of a repeated header although botocore signs them all
        # (joined with commas), so boto3 can never send one. The lines botocore signed are put back
        # to check that the verifier joins repeated headers the same way.
        name_, values = restore_repeated
        at = next(i for i, (k, _) in enumerate(record['headers']) if k == name_)
        assert record['headers'][at][1] == values[-1]
        record['headers'][at:at + 1] = [[name_, v] for v in values]
        record['note'] = 'repeated header lines restored as botocore signed them'
    record['canonical_request'] = CapturingSigV4Auth.last_canonical_request
    record['expect'] = expectation(record)
    vectors.append(record)


def client_vectors(endpoint):
    session = botocore.session.get_session()
    client = session.create_client(
        'iot',
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(retries={'max_attempts': 1, 'mode': 'standard'}),
    )
    group_arn = f'arn:aws:iot:{REGION}:123456789012:thinggroup/g'
    cases = [
        ('client-create-thing', 'create_thing', dict(
            thingName='my-thing',
            attributePayload={'attributes': {'site': 'lyon', 'floor': '3'}},
        )),
        ('client-list-things', 'list_things', dict(maxResults=10, nextToken='abc')),
        ('client-list-things-unicode-attribute', 'list_things', dict(
            attributeName='city', attributeValue='Zürich ☕ a+b=c&d',
        )),
        ('client-describe-thing-reserved-chars', 'describe_thing', dict(
            thingName="th:ing$with!'()*@&=+,;[]% ~.name",
        )),
        ('client-describe-thing-colon', 'describe_thing', dict(thingName='model:serial_42')),
        ('client-delete-thing-expected-version', 'delete_thing', dict(
            thingName='my-thing', expectedVersion=3,
        )),
        ('client-update-thing', 'update_thing', dict(
            thingName='my-thing', attributePayload={'attributes': {'k': 'vé'}}, expectedVersion=1,
        )),
        ('client-attach-thing-principal-header', 'attach_thing_principal', dict(
            thingName='my-thing',
            principal=f'arn:aws:iot:{REGION}:123456789012:cert/  a  b  ',
        )),
        ('client-attach-thing-principal-utf8-header', 'attach_thing_principal', dict(
            thingName='my-thing', principal='cert/é',
        )),
        ('client-create-security-profile', 'create_security_profile', dict(
            securityProfileName='p',
            securityProfileDescription='Détecte les anomalies — ✓',
            behaviors=[{
                'name': 'bytes-out',
                'metric': 'aws:all-bytes-out',
                'criteria': {
                    'comparisonOperator': 'greater-than',
                    'value': {'count': 10000},
                    'durationSeconds': 300,
                    'consecutiveDatapointsToAlarm': 1,
                    'consecutiveDatapointsToClear': 1,
                },
            }],
        )),
        ('client-attach-security-profile', 'attach_security_profile', dict(
            securityProfileName='p', securityProfileTargetArn=group_arn,
        )),
        ('client-list-security-profiles-for-target', 'list_security_profiles_for_target', dict(
            securityProfileTargetArn=group_arn, recursive=True, maxResults=25,
        )),
        ('client-list-violation-events', 'list_violation_events', dict(
            startTime=datetime.datetime(2026, 11, 27, tzinfo=datetime.timezone.utc),
            endTime=datetime.datetime(2026, 11, 28, tzinfo=datetime.timezone.utc),
            thingName='my-thing',
            behaviorCriteriaType='STATIC',
            listSuppressedAlerts=False,
            nextToken='eyJvZmZzZXQiOjEwfQ+/==',
            maxResults=100,
        )),
        ('client-list-active-violations', 'list_active_violations', dict(
            securityProfileName='p', verificationState='UNKNOWN',
        )),
        ('client-list-metric-values', 'list_metric_values', dict(
            thingName='my-thing',
            metricName='aws:all-bytes-out',
            dimensionName='TopicFilterDim',
            dimensionValueOperator='NOT_IN',
            startTime=datetime.datetime(2026, 11, 27, tzinfo=datetime.timezone.utc),
            endTime=datetime.datetime(2026, 11, 27, 12, tzinfo=datetime.timezone.utc),
        )),
        ('client-describe-endpoint', 'describe_endpoint', dict(endpointType='iot:Data-ATS')),
        ('client-tag-resource', 'tag_resource', dict(
            resourceArn=f'arn:aws:iot:{REGION}:123456789012:securityprofile/p',
            tags=[{'Key': 'env', 'Value': 'prod'}],
        )),
        ('client-list-tags-for-resource', 'list_tags_for_resource', dict(
            resourceArn=f'arn:aws:iot:{REGION}:123456789012:securityprofile/p',
        )),
        ('client-get-topic-rule-destination-greedy-label', 'get_topic_rule_destination', dict(
            arn=f'arn:aws:iot:{REGION}:123456789012:ruledestination/http/a1b2-c3',
        )),
    ]
    for name, op, params in cases:
        getattr(client, op)(**params)
        take(name)


def send(name, method, url, headers=(), body=b'', token=None, prepare=None):
    """Signs a hand-built AWSRequest with SigV4Auth and sends it through botocore's HTTP session."""
    request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body)
    for k, v in headers:
        # HTTPHeaders is an email Message: assignment appends, so repeated names stay repeated.
        request.headers[k] = v
    if prepare:
        prepare(request)
    credentials = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY, token)
    CapturingSigV4Auth(credentials, SERVICE, REGION).add_auth(request)
    botocore.httpsession.URLLib3Session().send(request.prepare())
    repeated = [k for k, _ in headers if sum(1 for k2, _ in headers if k2 == k) > 1]
    take(name, (repeated[0], [v for k, v in headers if k == repeated[0]]) if repeated else None)


def suite_vectors(base):
    """Cases in the style of the AWS SigV4 test suite, signed for `iot` instead of `service`."""
    unreserved = '-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
    send('get-vanilla', 'GET', f'{base}/')
    send('get-vanilla-empty-query', 'GET', f'{base}/?')
    send('get-vanilla-query', 'GET', f'{base}/?Param1=value1')
    send('get-vanilla-query-order-key-case', 'GET', f'{base}/?Param2=value2&Param1=value1')
    send('get-vanilla-query-order-key', 'GET', f'{base}/?b=1&a=2&B=3&A=4&_=5')
    send('get-vanilla-query-order-value', 'GET', f'{base}/?Param1=value2&Param1=Value1')
    send('get-vanilla-query-unreserved', 'GET', f'{base}/?{unreserved}={unreserved}')
    send('get-vanilla-utf8-query', 'GET', f'{base}/?%E1%88%B4=bar')
    send('get-vanilla-empty-query-key', 'GET', f'{base}/?Param1')
    send('get-query-repeated-and-empty', 'GET', f'{base}/things?b=&a=2&a=1&c&a=10&=x&a=')
    send('get-query-unicode-value', 'GET', f'{base}/things?attributeValue=%C3%A9t%C3%A9%20%E2%98%83')
    send('get-unreserved', 'GET', f'{base}/{unreserved}')
    send('get-utf8', 'GET', f'{base}/%E1%88%B4')
    send('get-space', 'GET', f'{base}/example%20space/')
    send('get-reserved-path', 'GET', f"{base}/things/a%24b%3Ac%21%27%28%29%2A%40%26%3D%2B%2C%3B/x")
    send('get-trailing-slash', 'GET', f'{base}/things/')
    send('get-header-key-duplicate', 'GET', f'{base}/',
         headers=[('My-Header1', 'value2'), ('My-Header1', 'value2'), ('My-Header1', 'value1')])
    send('get-header-value-order', 'GET', f'{base}/',
         headers=[('My-Header1', 'value4'), ('My-Header1', 'value1'), ('My-Header1', 'value3'),
                  ('My-Header1', 'value2')])
    send('get-header-value-trim', 'GET', f'{base}/',
         headers=[('My-Header1', ' value1'), ('My-Header2', ' "a   b   c"'), ('My-Header3', 'x \t y')])
    send('get-header-empty-value', 'GET', f'{base}/', headers=[('My-Header1', '')])
    send('post-vanilla', 'POST', f'{base}/')
    send('post-vanilla-query', 'POST', f'{base}/?Param1=value1')
    send('post-header-key-case', 'POST', f'{base}/', headers=[('my-header1', 'value1')])
    send('post-header-key-sort', 'POST', f'{base}/', headers=[('My-Header1', 'value1')])
    send('post-header-value-case', 'POST', f'{base}/', headers=[('My-Header1', 'VALUE1')])
    send('post-x-www-form-urlencoded', 'POST', f'{base}/',
         headers=[('Content-Type', 'application/x-www-form-urlencoded')], body=b'Param1=value1')
    send('post-json-body', 'POST', f'{base}/things/t',
         headers=[('Content-Type', 'application/json')],
         body='{"attributePayload":{"attributes":{"k":"été"}}}'.encode())
    send('post-content-sha256-header', 'POST', f'{base}/things/t',
         headers=[('X-Amz-Content-SHA256', hashlib.sha256(b'{}').hexdigest())], body=b'{}')
    send('put-uppercase-host', 'PUT', f'http://LOCALHOST:{PORT}/things/t', body=b'{}')
    send('delete-no-body', 'DELETE', f'{base}/things/t?expectedVersion=2')
    # Cases Warden rejects on purpose; `expect` says how.
    send('get-slash-dot-slash', 'GET', f'{base}/./')
    send('get-relative', 'GET', f'{base}/example/..')
    send('get-slashes', 'GET', f'{base}//example//')
    send('post-unsigned-payload', 'POST', f'{base}/things/t',
         headers=[('X-Amz-Content-SHA256', 'UNSIGNED-PAYLOAD')], body=b'{}')
    send('get-session-token', 'GET', f'{base}/things', token='FQoGZXIvYXdzEXAMPLE')
    send('get-date-header', 'GET', f'{base}/things',
         headers=[('Date', 'Fri, 27 Nov 2026 12:34:56 GMT')])


def main():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', PORT), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ids = (uuid.UUID(int=i) for i in itertools.count(1))
    with mock.patch.object(botocore.auth, 'get_current_datetime', lambda: NOW.replace(tzinfo=None)), \
         mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, {'v4': CapturingSigV4Auth}), \
         mock.patch.object(uuid, 'uuid4', lambda: next(ids)):
        client_vectors(f'http://localhost:{PORT}')
        suite_vectors(f'http://localhost:{PORT}')
    server.shutdown()
    out = {
        'generator': f'botocore {botocore.__version__}, gen.py',
        'access_key_id': ACCESS_KEY,
        'secret_access_key': SECRET_KEY,
        'region': REGION,
        'now_unix_secs': int(NOW.timestamp()),
        'vectors': vectors,
    }
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + '\n')
    print(f'{len(vectors)} vectors written to {OUT}')


if __name__ == '__main__':
    main()
