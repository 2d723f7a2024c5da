#!/usr/bin/env python3
"""Device Defender reply stand-in for the agent benchmark.

    responder.py --port P --ca ca.pem --cert responder.crt --key responder.key --log FILE

A minimal MQTT 3.1.1 client (Python ssl, no dependencies) that subscribes to
$aws/things/+/defender/metrics/+ and answers every report the way Device Defender does, on
<topic>/accepted, with {"thingName":T,"reportId":RID,"status":"ACCEPTED","timestamp":MS}
(JSON on the json topic, the same map in CBOR on the cbor topic), so the reply bytes the device
receives are counted like in production. Each reply is logged as a JSON line:
  {"t":..,"thing":..,"fmt":..,"report_len":..,"report_id":..,"reply_topic":..,"reply_len":..}
"""
import argparse
import json
import socket
import ssl
import struct
import sys
import time


# --- minimal CBOR -----------------------------------------------------------------------------

def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < (1 << (8 * struct.calcsize(fmt))):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor_encode(v):
    if v is None:
        return b"\xf6"
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor_encode(k) + cbor_encode(x) for k, x in v.items())
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor_encode(x) for x in v)
    raise TypeError(type(v))


def cbor_decode(b, i=0):
    ib = b[i]
    major, ai = ib >> 5, ib & 31
    i += 1
    if major == 7:
        if ai == 25:
            return struct.unpack(">e", b[i:i + 2])[0], i + 2
        if ai == 26:
            return struct.unpack(">f", b[i:i + 4])[0], i + 4
        if ai == 27:
            return struct.unpack(">d", b[i:i + 8])[0], i + 8
        return {20: False, 21: True, 22: None, 23: None}.get(ai), i
    if ai < 24:
        n = ai
    elif ai == 31:
        n = None
    else:
        size = 1 << (ai - 24)
        n = int.from_bytes(b[i:i + size], "big")
        i += size
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major in (2, 3):
        if n is None:
            parts = []
            while b[i] != 0xFF:
                p, i = cbor_decode(b, i)
                parts.append(p)
            return (b"" if major == 2 else "").join(parts), i + 1
        s = b[i:i + n]
        return (s if major == 2 else s.decode()), i + n
    if major == 4:
        out = []
        while (n is None and b[i] != 0xFF) or (n is not None and len(out) < n):
            x, i = cbor_decode(b, i)
            out.append(x)
        return out, (i + 1 if n is None else i)
    if major == 5:
        out = {}
        k = 0
        while (n is None and b[i] != 0xFF) or (n is not None and k < n):
            key, i = cbor_decode(b, i)
            val, i = cbor_decode(b, i)
            out[key] = val
            k += 1
        return out, (i + 1 if n is None else i)
    if major == 6:
        return cbor_decode(b, i)
    raise ValueError("bad CBOR")


def report_id(doc):
    hed = doc.get("header") or doc.get("hed") or {}
    return hed.get("report_id", hed.get("rid"))


# --- minimal MQTT 3.1.1 -------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        d, n = n % 128, n // 128
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read_packet(self):
        while True:
            if len(self.buf) >= 2:
                mult, n, i = 1, 0, 1
                while i < len(self.buf):
                    d = self.buf[i]
                    n += (d & 127) * mult
                    mult *= 128
                    i += 1
                    if not d & 128:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n and not (self.buf[i - 1] & 128):
                    first, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return first, body
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--ready", help="file created once subscribed")
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    sock = ctx.wrap_socket(socket.create_connection((a.host, a.port)), server_hostname=a.host)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = Conn(sock)
    # CONNECT: protocol MQTT level 4, clean session, keepalive 0 (no pings needed)
    sock.sendall(packet(0x10, mqtt_str("MQTT") + b"\x04\x02\x00\x00" + mqtt_str("dd-responder")))
    first, body = c.read_packet()
    if first >> 4 != 2 or body[1] != 0:
        sys.exit("responder: CONNACK refused: %r" % body)
    sock.sendall(packet(0x82, b"\x00\x01" + mqtt_str("$aws/things/+/defender/metrics/+") + b"\x00"))
    first, body = c.read_packet()
    if first >> 4 != 9 or body[2] == 0x80:
        sys.exit("responder: SUBACK refused")
    if a.ready:
        open(a.ready, "w").close()
    log = open(a.log, "a", buffering=1)
    while True:
        try:
            first, body = c.read_packet()
        except EOFError:
            return
        if first >> 4 != 3:
            continue
        qos = (first >> 1) & 3
        tlen = struct.unpack(">H", body[:2])[0]
        topic = body[2:2 + tlen].decode()
        payload = body[2 + tlen + (2 if qos else 0):]
        parts = topic.split("/")
        thing, fmt = parts[2], parts[-1]
        try:
            doc = json.loads(payload) if fmt == "json" else cbor_decode(payload)[0]
            rid = report_id(doc)
        except Exception as e:  # still answer, as DD would (it would reject)
            rid = None
            print("responder: cannot decode report on %s: %s" % (topic, e), file=sys.stderr)
        reply = {"thingName": thing, "reportId": rid, "status": "ACCEPTED", "timestamp": int(time.time() * 1000)}
        rp = (json.dumps(reply, separators=(",", ":")).encode() if fmt == "json" else cbor_encode(reply))
        rtopic = topic + "/accepted"
        sock.sendall(packet(0x30, mqtt_str(rtopic) + rp))
        log.write(json.dumps({"t": time.time(), "thing": thing, "fmt": fmt, "report_len": len(payload),
                              "report_id": rid, "reply_topic": rtopic, "reply_len": len(rp)}) + "\n")


if __name__ == "__main__":
    main()
