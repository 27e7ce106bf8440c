/* tr_config.h - the one configuration loader of thriftrouter (GLib key files).
 *
 * Files (reference with every key and default: conf/router.conf and
 * conf/services/demo.conf, which are commented):
 *
 *   router.conf, group [router]
 *     server_id        node name [A-Za-z0-9_.-]{1,64}           default "node1"
 *     server_type      MASTER | BACKUP (REPLY not yet)           default MASTER
 *     listen           host:port for producers ([v6]:port ok)    default 127.0.0.1:9090
 *     admin_listen     host:port of the admin service            default 127.0.0.1:9091
 *                      (port 0 in either = any free port)
 *     admin_token_file file holding the admin token (relative to    default none
 *                      router.conf's directory); when set, every
 *                      admin call must carry that token
 *     admin_allow_insecure bool: allow a non-loopback admin_listen    default false
 *                      without admin_token_file (otherwise an error)
 *     metrics_listen   host:port of the Prometheus /metrics endpoint  default none (off)
 *     data_dir         relative to router.conf's directory       default ./data
 *     sync_mode        always | interval | none                  default always
 *     sync_interval_ms 1..3600000                                default 10
 *     rpc_cache_size   size (K/M/G suffix, 1024-based), may be 0 default 64M
 *     group_file_size  size, >= 64K                              default 2G
 *     max_frame_size   size, 64 .. min(2G-1, group_file_size/2)  default 16384000 (16000K),
 *                      or group_file_size/2 when that is smaller (a
 *                      default follows the key it depends on; only an
 *                      explicit value above group_file_size/2 is an error)
 *     state_flush_ms   0..3600000 (0 = after each reply batch)   default 100
 *     max_connections  producer connection cap, 1..1000000       default 1024
 *     services         list of service names (, or ;)            default empty
 *     min_free_space   size, or N% (0..99) of the data dir's       default 256M
 *                      filesystem; below it new writes are refused
 *                      (0 = off); applied on reload
 *     replication_listen host:port where a BACKUP receives its     required on BACKUP,
 *                      master's stream (docs/replication.md)       refused on MASTER
 *
 *   services/NAME.conf next to router.conf, group [service]
 *     service_type     COMMON | BACKUP (REPLY not yet)            default COMMON
 *                      BACKUP: a replication link, its endpoints are
 *                      replicas' replication_listen addresses
 *     rpcs             list of rpc names (required, non-empty;     COMMON only;
 *                      refused on a BACKUP service)
 *     max_inflight     1..65536                                   default 64
 *     on_failure       block | skip (skip = dead-letter list)     default block
 *     max_retries      0..G_MAXINT32                              default 10
 *     retry_backoff_ms 1..86400000                                default 100
 *     retry_backoff_max_ms >= retry_backoff_ms                    default 30000
 *     connect_timeout_ms   1..86400000                            default 3000
 *     socket_timeout_ms    1..86400000                            default 10000
 *     oneway_barrier   bool: confirm oneways with a barrier call  default true
 *     barrier_method   rpc name of that call, not in rpcs         default __thriftrouter_barrier__
 *     max_backlog_bytes size: an endpoint's backlog beyond it expires  default 0 (off)
 *     max_backlog_age  duration 30s/10m/24h/7d (or 0): unacknowledged default 0 (off)
 *                      RPCs older than it expire
 *   and per endpoint, group [endpoint ID] (ID [A-Za-z0-9_.-]{1,64}, unique)
 *     host             host name or address                       default 127.0.0.1
 *     port             1..65535, required
 *     max_connection   1..1024                                    default 1
 *     stop_send        bool                                       default false
 *     start            head | earliest: where an endpoint added by a  default head
 *                      reload begins when it has no send state (at
 *                      start-up such an endpoint always begins at the
 *                      first stored seqid, see docs/configuration.md)
 *
 * Unknown groups or keys, duplicate groups or keys, bad values and missing
 * files are errors (TR_CONFIG_ERROR) naming file, group, key and problem.
 *
 * The structs are plain values, read directly by the router; every string
 * and array is owned by its struct and freed with it.  Not thread-safe.
 *
 * Ownership: a TrConfig has exactly one owner, the only thread that may
 * change it; everyone else reads a copy or reads during a call.  In the
 * daemon, main loads it, wires the node with it (tr_push_new and
 * tr_ingress_new read it during the call only) and keeps it read-only; the
 * admin thread works on its own copy (tr_admin_new() takes one with
 * tr_config_copy()), which stop-send updates and a reload replaces with the
 * newly loaded configuration.  No configuration is shared between threads.
 */
#pragma once

#include <glib.h>

#include "tr_config_error.h"
#include "tr_rpcstore.h" /* TrSyncMode: one definition, owned by the store */
#include "tr_rpcstore.h"

G_BEGIN_DECLS

#define TR_CONFIG_DEFAULT_BARRIER_METHOD "__thriftrouter_barrier__"
/* min_free_space when unset (docs/configuration.md says why this much). */
#define TR_CONFIG_DEFAULT_MIN_FREE_SPACE (G_GUINT64_CONSTANT (256) << 20)

typedef enum {
  TR_SERVER_MASTER,
  TR_SERVER_BACKUP,
  TR_SERVER_REPLY,
} TrServerType;

/* TrSyncMode comes from the store it configures (storage/tr_rpcstore.h). */

typedef enum {
  TR_SERVICE_COMMON,
  TR_SERVICE_BACKUP,
  TR_SERVICE_REPLY,
} TrServiceType;

typedef enum {
  TR_ON_FAILURE_BLOCK,
  TR_ON_FAILURE_SKIP,
} TrOnFailure;

/* Where an endpoint with no send state starts (key `start`). */
typedef enum {
  TR_START_HEAD,     /* added by a reload: at the service head (only new RPCs) */
  TR_START_EARLIEST, /* added by a reload: at the first seqid still stored */
} TrEndpointStart;

typedef struct {
  char *id;   /* (transfer full) from the group name "[endpoint ID]" */
  char *host; /* (transfer full) */
  guint16 port;
  guint max_connection;
  gboolean stop_send;
  TrEndpointStart start;
} TrEndpointConfig;

typedef struct {
  char *name; /* (transfer full) */
  char *path; /* (transfer full) the file it was loaded from, as opened */
  TrServiceType service_type;
  GPtrArray *rpcs; /* (transfer full) (element-type utf8) unique, validated */
  guint max_inflight;
  TrOnFailure on_failure;
  guint max_retries;
  guint retry_backoff_ms;
  guint retry_backoff_max_ms;
  guint connect_timeout_ms;
  guint socket_timeout_ms;
  gboolean oneway_barrier;
  char *barrier_method;  /* (transfer full) */
  guint64 max_backlog_bytes;  /* 0 = off */
  guint64 max_backlog_age_s;  /* seconds; 0 = off */
  GPtrArray *endpoints;  /* (transfer full) (element-type TrEndpointConfig) file order */
} TrServiceConfig;

typedef struct {
  char *path; /* (transfer full) router.conf as given */
  char *dir;  /* (transfer full) absolute directory of router.conf */
  char *server_id;
  TrServerType server_type;
  char *listen_host; /* (transfer full) without [] for IPv6 */
  guint16 listen_port;
  char *admin_host;  /* (transfer full) */
  guint16 admin_port;
  char *admin_token_file; /* (transfer full) (nullable) absolute; NULL = no token */
  gboolean admin_allow_insecure;
  char *metrics_host; /* (transfer full) (nullable) NULL = metrics_listen not set: no /metrics */
  guint16 metrics_port;
  char *data_dir;    /* (transfer full) absolute, canonical */
  TrSyncMode sync_mode;
  guint sync_interval_ms;
  guint64 rpc_cache_size;
  guint64 group_file_size;
  guint32 max_frame_size;
  gboolean max_frame_size_is_default; /* not in the file: derived from group_file_size */
  guint state_flush_ms;
  guint max_connections;
  guint64 min_free_bytes;  /* min_free_space as a size (0 when a percentage or off) */
  guint min_free_percent;  /* min_free_space as N% (0 when a size or off) */
  char *replication_host; /* (transfer full) (nullable) replication_listen: BACKUP only, required there */
  guint16 replication_port;
  /* Services listed in `services`, in list order, split by kind: the
   * COMMON ones (pushed, routed, listed in the store) and the replication
   * links (service_type = BACKUP: each endpoint is a replica, fed by
   * tr_repl_source; MASTER only).  Nothing but the replication source
   * reads ->replicas. */
  GPtrArray *services; /* (transfer full) (element-type TrServiceConfig) COMMON */
  GPtrArray *replicas; /* (transfer full) (element-type TrServiceConfig) BACKUP */
} TrConfig;

/* tr_config_load:
 * Loads @router_conf_path and every service file it lists, validating all.
 * Returns: (transfer full) (nullable): the configuration, or NULL with
 * @error set (TR_CONFIG_ERROR_PARSE / _INVALID / _IO). */
TrConfig *tr_config_load (const char *router_conf_path, GError **error);

/* tr_config_load_router:
 * Loads and validates @router_conf_path alone: the service files are not
 * read and ->services stays empty.  For tools that only need the node's
 * addresses (tr-admin -c), so a service file being edited for a reload
 * cannot keep them from reaching the router.
 * Returns: (transfer full) (nullable): as tr_config_load(). */
TrConfig *tr_config_load_router (const char *router_conf_path, GError **error);

/* tr_config_copy:
 * Returns: (transfer full): a deep copy of @config (services and endpoints
 * included) that shares no memory with it, for a new owner. */
TrConfig *tr_config_copy (const TrConfig *config);

/* tr_config_free: frees @config and everything in it; NULL is ignored. */
void tr_config_free (TrConfig *config);

/* tr_config_load_service:
 * Loads one service file @path for service @name (e.g. on reload).
 * Returns: (transfer full) (nullable): the service, or NULL with @error set. */
TrServiceConfig *tr_config_load_service (const char *path, const char *name, GError **error);

/* tr_service_config_free: frees @service; NULL is ignored. */
void tr_service_config_free (TrServiceConfig *service);

/* tr_config_lookup_service:
 * Returns: (transfer none) (nullable): the service named @name, valid as
 * long as @config is. */
TrServiceConfig *tr_config_lookup_service (const TrConfig *config, const char *name);

/* tr_config_lookup_endpoint:
 * Returns: (transfer none) (nullable): the endpoint of @service whose id is
 * @id, valid as long as @service is. */
TrEndpointConfig *tr_config_lookup_endpoint (const TrServiceConfig *service, const char *id);

/* The configuration words of @on_failure ("block", "skip") and of an
 * endpoint's @start ("head", "earliest"), from the loader's own tables. */
const char *tr_config_on_failure_to_string (TrOnFailure on_failure);

/* A duration as the loader reads it back ("0", "90s", "10m", "24h", "7d").
 * Returns: (transfer full). */
char *tr_config_format_duration (guint64 seconds);
/* min_free_space as written in a file ("256M", "5%", "0").
 * Returns: (transfer full). */
char *tr_config_format_min_free_space (const TrConfig *config);
const char *tr_config_start_to_string (TrEndpointStart start);

/* tr_config_edit_endpoint_key:
 * @text: a service file's content (@len bytes, need not be NUL-terminated)
 * Sets @key = @value in [endpoint @endpoint_id] by changing that one line
 * (everything up to the value, the line ending, every other line and every
 * comment stay byte for byte), or, when the group has no such key, by
 * adding one line "@key = @value" after the group's last key line.  For
 * tr-admin stop-send / start-send: config management and `git diff` then
 * see one changed line.
 * Returns: (transfer full) (nullable): the new content, or NULL with @error
 * TR_CONFIG_ERROR_INVALID when the file has no such group. */
char *tr_config_edit_endpoint_key (const char *text, gsize len, const char *endpoint_id, const char *key,
                                   const char *value, GError **error);

/* One [router] key whose typed value differs between two configurations. */
typedef struct {
  const char *key; /* (transfer none) a static string, the key's name */
  char *running;   /* (transfer full) the running value, as written in a file ("not set" if unset) */
  char *loaded;    /* (transfer full) the new value, likewise */
} TrConfigKeyChange;

/* tr_config_diff_router:
 * Compares every [router] key of @running and @loaded as typed values (each
 * key explicitly, never the serialized text, so an unset value is compared
 * like any other).  `services` is included when the list differs.
 * Returns: (transfer full) (element-type TrConfigKeyChange): the keys that
 * differ, in the order of the reference in this header; empty if none. */
GPtrArray *tr_config_diff_router (const TrConfig *running, const TrConfig *loaded);

/* tr_config_to_string:
 * The effective settings, defaults included, in key-file syntax (service
 * files follow router.conf, each introduced by a comment naming it).
 * Returns: (transfer full): the text. */
char *tr_config_to_string (const TrConfig *config);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrConfig, tr_config_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TrServiceConfig, tr_service_config_free)

G_END_DECLS
