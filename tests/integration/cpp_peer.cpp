/* cpp_peer - an Apache Thrift C++ peer for the integration tests: the
 * generated C++ client and a stock TThreadedServer, framed transport and
 * binary protocol, talking to the router.  Same command line as cglib_peer:
 *
 *   cpp_peer produce PORT COUNT PREFIX   calls log_event(PREFIX-i) COUNT times,
 *                                        then fire(PREFIX-oneway), then other(1)
 *                                        and prints "unknown-method ok" if the
 *                                        router answered UNKNOWN_METHOD
 *   cpp_peer serve PORT                  a TThreadedServer endpoint that prints
 *                                        "<method> <payload> <seqid>" per call
 *
 * The endpoint reads each message's seqid through a protocol decorator (the
 * generated handler does not see it), so the test can check that the router
 * numbers one endpoint's calls 1, 2, 3 ... */
#include "EventLog.h"

#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TProtocolDecorator.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

using namespace apache::thrift;
using namespace apache::thrift::protocol;
using namespace apache::thrift::server;
using namespace apache::thrift::transport;

namespace {

thread_local int32_t last_seqid = -1; /* of the message this thread is serving */
std::mutex out_lock;

class SeqidRecorder : public TProtocolDecorator {
public:
  explicit SeqidRecorder (const std::shared_ptr<TProtocol> &inner) : TProtocolDecorator (inner) {}

  uint32_t
  readMessageBegin_virt (std::string &name, TMessageType &type, int32_t &seqid) override
  {
    uint32_t n = TProtocolDecorator::readMessageBegin_virt (name, type, seqid);
    last_seqid = seqid;
    return n;
  }
};

class RecordingProtocolFactory : public TProtocolFactory {
public:
  std::shared_ptr<TProtocol>
  getProtocol (std::shared_ptr<TTransport> transport) override
  {
    return std::make_shared<SeqidRecorder> (std::make_shared<TBinaryProtocol> (transport));
  }
};

class Handler : public tr_demo::EventLogIf {
public:
  void
  log_event (const std::string &data) override
  {
    print ("log_event", data);
  }

  void
  fire (const std::string &data) override
  {
    print ("fire", data);
  }

  void
  other (const int32_t x) override
  {
    print ("other", std::to_string (x));
  }

private:
  static void
  print (const char *method, const std::string &data)
  {
    std::lock_guard<std::mutex> guard (out_lock);
    std::printf ("%s %s %d\n", method, data.c_str (), last_seqid);
    std::fflush (stdout);
  }
};

int
produce (int port, int count, const std::string &prefix)
{
  auto socket = std::make_shared<TSocket> ("127.0.0.1", port);
  auto transport = std::make_shared<TFramedTransport> (socket);
  auto protocol = std::make_shared<TBinaryProtocol> (transport);
  tr_demo::EventLogClient client (protocol);

  try {
    transport->open ();
    for (int i = 0; i < count; i++)
      client.log_event (prefix + "-" + std::to_string (i));
    client.fire (prefix + "-oneway");
    try {
      client.other (1);
      std::printf ("other: no exception\n");
    } catch (const TApplicationException &e) {
      if (e.getType () == TApplicationException::UNKNOWN_METHOD)
        std::printf ("unknown-method ok\n");
      else
        std::printf ("other: exception type %d: %s\n", (int) e.getType (), e.what ());
    }
    transport->close ();
  } catch (const std::exception &e) {
    std::fprintf (stderr, "cpp_peer produce: %s\n", e.what ());
    return 1;
  }
  return 0;
}

int
serve (int port)
{
  TThreadedServer server (std::make_shared<tr_demo::EventLogProcessor> (std::make_shared<Handler> ()),
                          std::make_shared<TServerSocket> ("127.0.0.1", port),
                          std::make_shared<TFramedTransportFactory> (),
                          std::make_shared<RecordingProtocolFactory> ());

  std::printf ("listening %d\n", port);
  std::fflush (stdout);
  try {
    server.serve ();
  } catch (const std::exception &e) {
    std::fprintf (stderr, "cpp_peer serve: %s\n", e.what ());
    return 1;
  }
  return 0;
}

} // namespace

int
main (int argc, char **argv)
{
  if (argc == 5 && std::string (argv[1]) == "produce")
    return produce (std::atoi (argv[2]), std::atoi (argv[3]), argv[4]);
  if (argc == 3 && std::string (argv[1]) == "serve")
    return serve (std::atoi (argv[2]));
  std::fprintf (stderr, "usage: cpp_peer produce PORT COUNT PREFIX | cpp_peer serve PORT\n");
  return 2;
}
