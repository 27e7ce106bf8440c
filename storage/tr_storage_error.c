/* tr_storage_error.c - the TR_STORAGE_ERROR domain. */
#include "tr_storage_error.h"

#include <errno.h>

G_DEFINE_QUARK (tr-storage-error-quark, tr_storage_error)

TrStorageError
tr_storage_error_from_errno (int errnum)
{
  switch (errnum) {
  case ENOSPC:
  case EDQUOT:
    return TR_STORAGE_ERROR_FULL;
  case ENOENT:
    return TR_STORAGE_ERROR_NOT_FOUND;
  default:
    return TR_STORAGE_ERROR_IO;
  }
}
