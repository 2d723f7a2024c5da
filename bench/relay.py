#!/usr/bin/env python3
"""Byte-counting TCP relay for the agent benchmark.

    relay.py --listen PORT --upstream HOST:PORT --log FILE [--cut-after SECONDS]

Forwards every accepted connection to the upstream (the MQTT/TLS broker) and records, per
connection and direction, the TCP payload bytes. The stream is also split into TLS records (the
5-byte record headers are plaintext), and every record is logged with the time its header
arrived, so traffic can be attributed to protocol events afterwards (bench/analyze.py).

Log: one JSON object per line:
  {"ev":"open","conn":N,"t":T}
  {"ev":"upstream","conn":N,"t":T,"port":P}   # relay's source port towards the broker
  {"ev":"rec","conn":N,"dir":"up"|"down","t":T,"type":CT,"len":L}   # L includes the 5-byte header
  {"ev":"raw","conn":N,"dir":...,"t":T,"len":L}                    # bytes that are not TLS records
  {"ev":"close","conn":N,"t":T,"up":BYTES_CLIENT_TO_SERVER,"down":BYTES_SERVER_TO_CLIENT,"by":WHO}
"up" = device to broker, "down" = broker to device. Times are time.time() (epoch seconds).

--cut-after S: S seconds after the FIRST connection was accepted, close that connection (both
sides) once, to make the device reconnect. SIGUSR1 cuts every open connection at any time.
"""
import argparse
import asyncio
import json
import signal
import sys
import time


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, **kw):
        self.f.write(json.dumps(kw, separators=(",", ":")) + "\n")


class RecordSplitter:
    """Splits one direction of a TLS byte stream into records."""

    def __init__(self, log, conn, direction):
        self.log, self.conn, self.dir = log, conn, direction
        self.need = 0  # bytes still missing from the current record
        self.hdr = b""  # partial record header
        self.raw = False  # stream does not look like TLS: count bytes only

    def feed(self, data, t):
        i = 0
        n = len(data)
        while i < n:
            if self.raw:
                self.log.write(ev="raw", conn=self.conn, dir=self.dir, t=t, len=n - i)
                return
            if self.need:
                take = min(self.need, n - i)
                self.need -= take
                i += take
                continue
            take = min(5 - len(self.hdr), n - i)
            self.hdr += data[i:i + take]
            i += take
            if len(self.hdr) == 5:
                ct, length = self.hdr[0], int.from_bytes(self.hdr[3:5], "big")
                if ct not in (20, 21, 22, 23, 24) or self.hdr[1] != 3:
                    self.raw = True
                    self.log.write(ev="raw", conn=self.conn, dir=self.dir, t=t, len=5)
                else:
                    self.log.write(ev="rec", conn=self.conn, dir=self.dir, t=t, type=ct, len=5 + length)
                    self.need = length
                self.hdr = b""


class Relay:
    def __init__(self, args):
        self.args = args
        self.log = Log(args.log)
        self.next_conn = 0
        self.open = {}  # conn -> (client_writer, upstream_writer)
        self.cut_done = False

    async def pipe(self, conn, reader, writer, splitter, counter, who):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return who
                t = time.time()
                counter[0] += len(data)
                splitter.feed(data, t)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            return who

    async def handle(self, creader, cwriter):
        conn = self.next_conn
        self.next_conn += 1
        self.log.write(ev="open", conn=conn, t=time.time())
        host, port = self.args.upstream.rsplit(":", 1)
        try:
            ureader, uwriter = await asyncio.open_connection(host, int(port))
        except OSError as e:
            self.log.write(ev="close", conn=conn, t=time.time(), up=0, down=0, by="upstream-refused:%s" % e)
            cwriter.close()
            return
        for w in (cwriter, uwriter):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.open[conn] = (cwriter, uwriter)
        # the relay's source port towards the broker, as the broker logs it ("from 127.0.0.1:P")
        sockname = uwriter.get_extra_info("sockname")
        self.log.write(ev="upstream", conn=conn, t=time.time(), port=sockname[1] if sockname else None)
        if conn == 0 and self.args.cut_after is not None:
            asyncio.get_running_loop().call_later(self.args.cut_after, self.cut, conn)
        up, down = [0], [0]
        t1 = asyncio.create_task(self.pipe(conn, creader, uwriter, RecordSplitter(self.log, conn, "up"), up, "device"))
        t2 = asyncio.create_task(self.pipe(conn, ureader, cwriter, RecordSplitter(self.log, conn, "down"), down, "broker"))
        done, pending = await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        by = next(iter(done)).result()
        if self.open.get(conn) is None:
            by = "relay-cut"
        # Give the other direction a moment to drain (e.g. a close_notify answering a close).
        try:
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 0.5)
        except asyncio.TimeoutError:
            for p in pending:
                p.cancel()
        for w in (cwriter, uwriter):
            try:
                w.close()
            except Exception:
                pass
        self.open.pop(conn, None)
        self.log.write(ev="close", conn=conn, t=time.time(), up=up[0], down=down[0], by=by)

    def cut(self, conn=None):
        targets = [conn] if conn is not None else list(self.open)
        for c in targets:
            ws = self.open.pop(c, None)
            if ws is None:
                continue
            self.log.write(ev="cut", conn=c, t=time.time())
            for w in ws:
                try:
                    w.transport.abort()  # RST-free close is not needed; the device just sees EOF/reset
                except Exception:
                    pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cut-after", type=float)
    args = p.parse_args()
    relay = Relay(args)
    server = await asyncio.start_server(relay.handle, "127.0.0.1", args.listen)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, relay.cut)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("relay listening on 127.0.0.1:%d -> %s" % (args.listen, args.upstream), file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
