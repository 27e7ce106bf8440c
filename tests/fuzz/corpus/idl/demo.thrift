/* demo.thrift - the example service of thriftrouter's README, conf/ and tests.
 *
 * Routed methods must be void or oneway: the router answers a CALL itself
 * with an empty T_REPLY once the RPC is durable, and never returns an
 * endpoint's result to the producer.
 */
namespace c_glib tr_demo
namespace py tr_demo
namespace cpp tr_demo

service EventLog {
  /* Routed to the "demo" service in conf/services/demo.conf. */
  void log_event(1: binary data),
  /* Routed too; oneway: no answer from the router or the endpoint. */
  oneway void fire(1: binary data),
  /* Not subscribed by any service: the router answers UNKNOWN_METHOD. */
  void other(1: i32 x)
}
