/* tr_repl_proto.c - replication messages (see tr_repl_proto.h and
 * thrift/repl.thrift for the field ids). */
#include "tr_repl_proto.h"

#include "tr_thrift_value.h"

#include <string.h>

/* ---- frames ---- */

/* Starts a framed strict message in @out; returns where its length goes. */
static gsize
message_begin (GByteArray *out, TrMsgType type, const char *name, gint32 seqid)
{
  gsize start = out->len;

  tr_thrift_write_i32 (out, 0); /* the frame length, patched by message_end() */
  tr_thrift_write_i32 (out, (gint32) (TR_FRAME_VERSION_1 | (guint32) type));
  tr_thrift_write_string (out, name);
  tr_thrift_write_i32 (out, seqid);
  return start;
}

static void
message_end (GByteArray *out, gsize start)
{
  tr_put_be32 (out->data + start, (guint32) (out->len - start - TR_FRAME_LEN_SIZE));
}

/* ---- values ---- */

void
tr_repl_service_free (gpointer data)
{
  TrReplService *service = data;

  g_free (service->name);
  g_clear_pointer (&service->rpcs, g_ptr_array_unref);
  g_free (service);
}

void
tr_repl_hello_clear (TrReplHello *hello)
{
  g_clear_pointer (&hello->server_id, g_free);
  g_clear_pointer (&hello->services, g_ptr_array_unref);
  g_clear_pointer (&hello->producer_address, g_free);
}

void
tr_repl_refused_clear (TrReplRefused *refused)
{
  g_clear_pointer (&refused->reason, g_free);
}

const char *
tr_repl_refused_code_to_string (TrReplRefusedCode code)
{
  switch (code) {
  case TR_REPL_REFUSED_SERVICES_DIFFER:
    return "services differ";
  case TR_REPL_REFUSED_STALE_EPOCH:
    return "stale epoch";
  case TR_REPL_REFUSED_NOT_CONTINUOUS:
    return "ids do not continue the replica's head";
  case TR_REPL_REFUSED_NO_HELLO:
    return "append before hello";
  case TR_REPL_REFUSED_STORE_FAILED:
    return "replica could not store";
  case TR_REPL_REFUSED_BAD_BATCH:
    return "bad batch";
  case TR_REPL_REFUSED_LAYOUT_DIFFERS:
    return "group_file_size differs";
  }
  return "refused";
}

/* ---- the master's side ---- */

void
tr_repl_build_hello (GByteArray *out, gint32 seqid, const TrReplHello *hello)
{
  gsize start = message_begin (out, TR_MSG_CALL, TR_REPL_METHOD_HELLO, seqid);

  tr_thrift_write_field_string (out, 1, hello->server_id);
  tr_thrift_write_field_i64 (out, 2, (gint64) hello->epoch);
  tr_thrift_write_field_i64 (out, 3, (gint64) hello->head);
  tr_thrift_write_field_begin (out, TR_TTYPE_LIST, 4);
  tr_thrift_write_list_begin (out, TR_TTYPE_STRUCT, hello->services->len);
  for (guint i = 0; i < hello->services->len; i++) {
    const TrReplService *service = g_ptr_array_index (hello->services, i);
    tr_thrift_write_field_string (out, 1, service->name);
    tr_thrift_write_field_i32 (out, 2, service->store_id);
    tr_thrift_write_field_begin (out, TR_TTYPE_LIST, 3);
    tr_thrift_write_list_begin (out, TR_TTYPE_STRING, service->rpcs->len);
    for (guint r = 0; r < service->rpcs->len; r++)
      tr_thrift_write_string (out, g_ptr_array_index (service->rpcs, r));
    tr_thrift_write_field_stop (out);
  }
  tr_thrift_write_field_string (out, 5, hello->producer_address);
  tr_thrift_write_field_i64 (out, 6, (gint64) hello->group_file_size);
  tr_thrift_write_field_stop (out);
  message_end (out, start);
}

void
tr_repl_build_append (GByteArray *out, gint32 seqid, guint64 epoch, TrRpcStoreRecord *const *records,
                      guint n_records, guint64 source_head, guint64 source_keeps_from)
{
  gsize start = message_begin (out, TR_MSG_CALL, TR_REPL_METHOD_APPEND, seqid);

  tr_thrift_write_field_i64 (out, 1, (gint64) epoch);
  tr_thrift_write_field_i64 (out, 2, n_records > 0 ? (gint64) records[0]->rpc_id : 0);
  tr_thrift_write_field_begin (out, TR_TTYPE_LIST, 3);
  tr_thrift_write_list_begin (out, TR_TTYPE_STRUCT, n_records);
  for (guint i = 0; i < n_records; i++) {
    const TrRpcStoreRecord *record = records[i];
    gsize len = 0;
    gconstpointer data = g_bytes_get_data (record->message, &len);
    tr_thrift_write_field_i64 (out, 1, (gint64) record->rpc_id);
    tr_thrift_write_field_i64 (out, 2, record->commit_time_us);
    tr_thrift_write_field_begin (out, TR_TTYPE_STRING, 3);
    tr_thrift_write_binary (out, data, len);
    tr_thrift_write_field_begin (out, TR_TTYPE_LIST, 4);
    tr_thrift_write_list_begin (out, TR_TTYPE_I32, record->n_services);
    for (guint s = 0; s < record->n_services; s++)
      tr_thrift_write_i32 (out, (gint32) record->service_ids[s]);
    tr_thrift_write_field_stop (out);
  }
  tr_thrift_write_field_i64 (out, 4, (gint64) source_head);
  tr_thrift_write_field_i64 (out, 5, (gint64) source_keeps_from);
  tr_thrift_write_field_stop (out);
  message_end (out, start);
}

/* Reads a string field's value as a new NUL-terminated string. */
static TrFrameStatus
read_string (TrThriftReader *reader, char **out)
{
  const guint8 *data;
  gsize len;
  TrFrameStatus status = tr_thrift_read_binary (reader, &data, &len);

  if (status != TR_FRAME_OK)
    return status;
  if (memchr (data, '\0', len) != NULL)
    return TR_FRAME_BAD_DATA;
  g_free (*out);
  *out = g_strndup ((const char *) data, len);
  return TR_FRAME_OK;
}

static TrFrameStatus
read_u64 (TrThriftReader *reader, guint64 *out)
{
  gint64 value = 0;
  TrFrameStatus status = tr_thrift_read_i64 (reader, &value);

  if (status == TR_FRAME_OK && value < 0)
    return TR_FRAME_BAD_DATA;
  *out = (guint64) value;
  return status;
}

/* Refused {1: i32 code, 2: string reason, 3: i64 head, 4: i64 epoch}. */
static TrFrameStatus
read_refused (TrThriftReader *reader, TrReplRefused *refused)
{
  for (;;) {
    guint8 type;
    gint16 id;
    gint32 code;
    TrFrameStatus status = tr_thrift_read_field_begin (reader, &type, &id);
    if (status != TR_FRAME_OK || type == TR_TTYPE_STOP)
      return status;
    if (id == 1 && type == TR_TTYPE_I32) {
      status = tr_thrift_read_i32 (reader, &code);
      refused->code = (TrReplRefusedCode) code;
    } else if (id == 2 && type == TR_TTYPE_STRING)
      status = read_string (reader, &refused->reason);
    else if (id == 3 && type == TR_TTYPE_I64)
      status = read_u64 (reader, &refused->head);
    else if (id == 4 && type == TR_TTYPE_I64)
      status = read_u64 (reader, &refused->epoch);
    else
      status = tr_thrift_read_skip (reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

/* HelloReply {1: string server_id, 2: i64 head, 3: i64 epoch}. */
static TrFrameStatus
read_hello_reply (TrThriftReader *reader, guint64 *head_out, guint64 *epoch_out, char **server_id_out,
                  guint64 *digest_out, gboolean *has_digest_out)
{
  g_autofree char *server_id = NULL;

  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP) {
      if (server_id_out != NULL)
        *server_id_out = g_steal_pointer (&server_id);
      return TR_FRAME_OK;
    }
    if (id == 1 && type == TR_TTYPE_STRING)
      status = read_string (reader, &server_id);
    else if (id == 2 && type == TR_TTYPE_I64)
      status = read_u64 (reader, head_out);
    else if (id == 3 && type == TR_TTYPE_I64)
      status = read_u64 (reader, epoch_out);
    else if (id == 4 && type == TR_TTYPE_I64) {
      gint64 digest = 0;
      status = tr_thrift_read_i64 (reader, &digest);
      if (digest_out != NULL)
        *digest_out = (guint64) digest;
      if (has_digest_out != NULL)
        *has_digest_out = TRUE;
    } else
      status = tr_thrift_read_skip (reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

TrFrameStatus
tr_repl_parse_result (const guint8 *body, gsize len, gboolean hello, guint64 *head_out, guint64 *epoch_out,
                      char **server_id_out, guint64 *digest_out, gboolean *has_digest_out, gboolean *is_refused,
                      TrReplRefused *refused)
{
  TrThriftReader reader;
  gboolean seen = FALSE;

  tr_thrift_reader_init (&reader, body, len);
  *is_refused = FALSE;
  if (has_digest_out != NULL)
    *has_digest_out = FALSE;
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (&reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP)
      return seen ? TR_FRAME_OK : TR_FRAME_BAD_DATA;
    if (id == 0 && hello && type == TR_TTYPE_STRUCT)
      status = read_hello_reply (&reader, head_out, epoch_out, server_id_out, digest_out, has_digest_out);
    else if (id == 0 && !hello && type == TR_TTYPE_I64)
      status = read_u64 (&reader, head_out);
    else if (id == 1 && type == TR_TTYPE_STRUCT) {
      *is_refused = TRUE;
      status = read_refused (&reader, refused);
    } else {
      /* A field this side does not know: skipped, it answers nothing. */
      status = tr_thrift_read_skip (&reader, type);
      if (status != TR_FRAME_OK)
        return status;
      continue;
    }
    if (status != TR_FRAME_OK)
      return status;
    seen = TRUE;
  }
}

/* ---- the replica's side ---- */

/* ReplService {1: string name, 2: i32 store_id, 3: list<string> rpcs}. */
static TrFrameStatus
read_service (TrThriftReader *reader, TrReplService *service)
{
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP)
      return service->name != NULL && service->store_id >= 0 ? TR_FRAME_OK : TR_FRAME_BAD_DATA;
    if (id == 1 && type == TR_TTYPE_STRING)
      status = read_string (reader, &service->name);
    else if (id == 2 && type == TR_TTYPE_I32)
      status = tr_thrift_read_i32 (reader, &service->store_id);
    else if (id == 3 && type == TR_TTYPE_LIST) {
      guint8 element;
      guint32 count = 0;
      status = tr_thrift_read_list_begin (reader, &element, &count);
      if (status == TR_FRAME_OK && element != TR_TTYPE_STRING)
        status = TR_FRAME_BAD_DATA;
      for (guint32 i = 0; i < count && status == TR_FRAME_OK; i++) {
        char *rpc = NULL;
        status = read_string (reader, &rpc);
        if (rpc != NULL)
          g_ptr_array_add (service->rpcs, rpc);
      }
    } else
      status = tr_thrift_read_skip (reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

TrFrameStatus
tr_repl_parse_hello (const guint8 *body, gsize len, TrReplHello *out)
{
  TrThriftReader reader;
  gboolean have_epoch = FALSE, have_head = FALSE;

  memset (out, 0, sizeof *out);
  out->services = g_ptr_array_new_with_free_func (tr_repl_service_free);
  tr_thrift_reader_init (&reader, body, len);
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (&reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP)
      return out->server_id != NULL && have_epoch && have_head ? TR_FRAME_OK : TR_FRAME_BAD_DATA;
    if (id == 1 && type == TR_TTYPE_STRING)
      status = read_string (&reader, &out->server_id);
    else if (id == 2 && type == TR_TTYPE_I64) {
      status = read_u64 (&reader, &out->epoch);
      have_epoch = TRUE;
    } else if (id == 3 && type == TR_TTYPE_I64) {
      status = read_u64 (&reader, &out->head);
      have_head = TRUE;
    } else if (id == 4 && type == TR_TTYPE_LIST) {
      guint8 element;
      guint32 count = 0;
      status = tr_thrift_read_list_begin (&reader, &element, &count);
      if (status == TR_FRAME_OK && element != TR_TTYPE_STRUCT)
        status = TR_FRAME_BAD_DATA;
      for (guint32 i = 0; i < count && status == TR_FRAME_OK; i++) {
        TrReplService *service = g_new0 (TrReplService, 1);
        service->store_id = -1;
        service->rpcs = g_ptr_array_new_with_free_func (g_free);
        g_ptr_array_add (out->services, service);
        status = read_service (&reader, service);
      }
    } else if (id == 5 && type == TR_TTYPE_STRING)
      status = read_string (&reader, &out->producer_address);
    else if (id == 6 && type == TR_TTYPE_I64)
      status = read_u64 (&reader, &out->group_file_size);
    else
      status = tr_thrift_read_skip (&reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

/* ReplRecord {1: i64 rpc_id, 2: i64 commit_time_us, 3: binary message,
 * 4: list<i32> service_ids}. */
static TrFrameStatus
read_record (TrRpcStore *store, TrThriftReader *reader, TrRpcStoreRecord *record)
{
  gboolean have_id = FALSE, have_time = FALSE, have_services = FALSE;

  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP)
      return have_id && have_time && have_services && record->message != NULL ? TR_FRAME_OK : TR_FRAME_BAD_DATA;
    if (id == 1 && type == TR_TTYPE_I64) {
      status = read_u64 (reader, &record->rpc_id);
      have_id = TRUE;
    } else if (id == 2 && type == TR_TTYPE_I64) {
      status = tr_thrift_read_i64 (reader, &record->commit_time_us);
      have_time = TRUE;
    } else if (id == 3 && type == TR_TTYPE_STRING) {
      const guint8 *data;
      gsize data_len;
      status = tr_thrift_read_binary (reader, &data, &data_len);
      if (status == TR_FRAME_OK) {
        g_clear_pointer (&record->message, g_bytes_unref);
        record->message = tr_rpcstore_copy_message (store, data, data_len);
      }
    } else if (id == 4 && type == TR_TTYPE_LIST) {
      guint8 element;
      guint32 count = 0;
      status = tr_thrift_read_list_begin (reader, &element, &count);
      if (status == TR_FRAME_OK && element != TR_TTYPE_I32)
        status = TR_FRAME_BAD_DATA;
      if (status == TR_FRAME_OK) {
        g_free (record->service_ids);
        record->service_ids = g_new0 (guint32, MAX (count, 1));
        record->n_services = count;
        have_services = TRUE;
      }
      for (guint32 i = 0; i < count && status == TR_FRAME_OK; i++) {
        gint32 sid = 0;
        status = tr_thrift_read_i32 (reader, &sid);
        if (status == TR_FRAME_OK && sid < 0)
          status = TR_FRAME_BAD_DATA;
        record->service_ids[i] = (guint32) sid;
      }
    } else
      status = tr_thrift_read_skip (reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

TrFrameStatus
tr_repl_parse_append (TrRpcStore *store, const guint8 *body, gsize len, guint64 *epoch_out, guint64 *first_id_out,
                      GPtrArray **records_out, guint64 *source_head_out, guint64 *source_keeps_from_out)
{
  g_autoptr (GPtrArray) records = g_ptr_array_new_with_free_func ((GDestroyNotify) tr_rpcstore_record_free);
  TrThriftReader reader;
  gboolean have_epoch = FALSE, have_first = FALSE;

  *source_head_out = 0;
  *source_keeps_from_out = 0;
  tr_thrift_reader_init (&reader, body, len);
  for (;;) {
    guint8 type;
    gint16 id;
    TrFrameStatus status = tr_thrift_read_field_begin (&reader, &type, &id);
    if (status != TR_FRAME_OK)
      return status;
    if (type == TR_TTYPE_STOP) {
      if (!have_epoch || !have_first)
        return TR_FRAME_BAD_DATA;
      *records_out = g_steal_pointer (&records);
      return TR_FRAME_OK;
    }
    if (id == 1 && type == TR_TTYPE_I64) {
      status = read_u64 (&reader, epoch_out);
      have_epoch = TRUE;
    } else if (id == 2 && type == TR_TTYPE_I64) {
      status = read_u64 (&reader, first_id_out);
      have_first = TRUE;
    } else if (id == 3 && type == TR_TTYPE_LIST) {
      guint8 element;
      guint32 count = 0;
      status = tr_thrift_read_list_begin (&reader, &element, &count);
      if (status == TR_FRAME_OK && element != TR_TTYPE_STRUCT)
        status = TR_FRAME_BAD_DATA;
      for (guint32 i = 0; i < count && status == TR_FRAME_OK; i++) {
        TrRpcStoreRecord *record = g_new0 (TrRpcStoreRecord, 1);
        g_ptr_array_add (records, record);
        status = read_record (store, &reader, record);
      }
    } else if (id == 4 && type == TR_TTYPE_I64)
      status = read_u64 (&reader, source_head_out);
    else if (id == 5 && type == TR_TTYPE_I64)
      status = read_u64 (&reader, source_keeps_from_out);
    else
      status = tr_thrift_read_skip (&reader, type);
    if (status != TR_FRAME_OK)
      return status;
  }
}

void
tr_repl_build_hello_reply (GByteArray *out, gint32 seqid, const char *server_id, guint64 head, guint64 epoch,
                           gboolean has_digest, guint64 head_digest)
{
  gsize start = message_begin (out, TR_MSG_REPLY, TR_REPL_METHOD_HELLO, seqid);

  tr_thrift_write_field_begin (out, TR_TTYPE_STRUCT, 0);
  tr_thrift_write_field_string (out, 1, server_id);
  tr_thrift_write_field_i64 (out, 2, (gint64) head);
  tr_thrift_write_field_i64 (out, 3, (gint64) epoch);
  if (has_digest)
    tr_thrift_write_field_i64 (out, 4, (gint64) head_digest);
  tr_thrift_write_field_stop (out);
  tr_thrift_write_field_stop (out);
  message_end (out, start);
}

void
tr_repl_build_append_reply (GByteArray *out, gint32 seqid, guint64 head)
{
  gsize start = message_begin (out, TR_MSG_REPLY, TR_REPL_METHOD_APPEND, seqid);

  tr_thrift_write_field_i64 (out, 0, (gint64) head);
  tr_thrift_write_field_stop (out);
  message_end (out, start);
}

void
tr_repl_build_refused (GByteArray *out, const char *method, gint32 seqid, const TrReplRefused *refused)
{
  gsize start = message_begin (out, TR_MSG_REPLY, method, seqid);

  tr_thrift_write_field_begin (out, TR_TTYPE_STRUCT, 1);
  tr_thrift_write_field_i32 (out, 1, (gint32) refused->code);
  tr_thrift_write_field_string (out, 2, refused->reason);
  tr_thrift_write_field_i64 (out, 3, (gint64) refused->head);
  tr_thrift_write_field_i64 (out, 4, (gint64) refused->epoch);
  tr_thrift_write_field_stop (out);
  tr_thrift_write_field_stop (out);
  message_end (out, start);
}
