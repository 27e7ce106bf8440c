#!/usr/bin/python3
"""Example producer: an unmodified python3-thrift EventLog client
(TFramedTransport + TBinaryProtocol) calling the router on 127.0.0.1:9090
as if it were the service.

    /usr/bin/python3 tools/examples/producer.py [-n 3] [--port 9090]

It calls log_event N times (each returns once the router has made the RPC
durable), fire once (oneway: no answer at all), then other(1), which no
service subscribes to, so the router answers UNKNOWN_METHOD.
"""
import argparse
import sys
import time

import _gen  # noqa: F401
from thrift.protocol import TBinaryProtocol
from thrift.Thrift import TApplicationException
from thrift.transport import TSocket, TTransport
from tr_demo import EventLog

NAMES = {v: k for k, v in vars(TApplicationException).items() if k.isupper() and isinstance(v, int)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="number of log_event calls (default 3)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args()

    sock = TSocket.TSocket(args.host, args.port)
    sock.setTimeout(20000)
    transport = TTransport.TFramedTransport(sock)
    client = EventLog.Client(TBinaryProtocol.TBinaryProtocol(transport))
    transport.open()
    try:
        for i in range(1, args.n + 1):
            payload = b"event %d at %.3f" % (i, time.time())
            start = time.monotonic()
            client.log_event(payload)
            print("log_event(%r): stored (answered in %.1f ms)" % (payload, (time.monotonic() - start) * 1e3))
        client.fire(b"fire!")
        print("fire(b'fire!'): sent (oneway: no answer)")
        try:
            client.other(1)
            print("other(1): answered?! (a service subscribes to 'other')")
        except TApplicationException as e:
            print("other(1): TApplicationException %s: %s" % (NAMES.get(e.type, e.type), e.message))
    finally:
        transport.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
