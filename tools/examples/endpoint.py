#!/usr/bin/python3
"""Example endpoint: a stock python3-thrift TThreadedServer implementing
EventLog (thrift/demo.thrift) on 127.0.0.1:9190, the endpoint "local" of
conf/services/demo.conf.  It prints every call the router pushes to it.

    /usr/bin/python3 tools/examples/endpoint.py [--port 9190]

A stock handler cannot see the message seqid; the router sets it to the
service seqid (1, 2, 3, ...), see docs/delivery.md.  Stop with Ctrl-C.
"""
import argparse
import sys

import _gen  # noqa: F401  (generates and imports the bindings' path)
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport
from tr_demo import EventLog


class Handler:
    def log_event(self, data):
        print("log_event(%r)" % data, flush=True)

    def fire(self, data):
        print("fire(%r)  [oneway]" % data, flush=True)

    def other(self, x):
        print("other(%r)" % x, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9190)
    args = parser.parse_args()
    server = TServer.TThreadedServer(EventLog.Processor(Handler()),
                                     TSocket.TServerSocket(host=args.host, port=args.port),
                                     TTransport.TFramedTransportFactory(),
                                     TBinaryProtocol.TBinaryProtocolFactory(), daemon=True)
    print("endpoint: EventLog on %s:%d (framed, binary); Ctrl-C stops" % (args.host, args.port), flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
