/* fuzz_recovery.h - input format of fuzz_recovery (shared with the seed
 * generator fuzz_gen_corpus.c).
 *
 *   byte 0: mode (bits 0-1: 0/3 RPC store, 1 RotateFile, 2 DoubleWriteFile);
 *           bit 7 set: the harness recomputes record / entry checksums
 *           before writing the files, so mutations get past them
 *   then:   chunks separated by FUZZ_REC_SEP; chunk i becomes file i of the
 *           mode's list (an empty chunk: the file is absent).  Extra chunks
 *           are ignored. */
#pragma once

#define FUZZ_REC_SEP "#FZSEP"
#define FUZZ_REC_SEP_LEN 6
#define FUZZ_REC_FIXUP 0x80

#define FUZZ_REC_MODE_STORE 0
#define FUZZ_REC_MODE_ROTATEFILE 1
#define FUZZ_REC_MODE_DWFILE 2

/* Files of each mode, in chunk order. */
static const char *const fuzz_rec_store_files[] = {
  "data.0", "checkpoint.0", "checkpoint.1", "services.map", "services.map.dw",
  "double_write_prepare", "index.0", "list-0.0", "data.1", NULL,
};
static const char *const fuzz_rec_rotatefile_files[] = { "rf.0", "rf.1", NULL };
static const char *const fuzz_rec_dwfile_files[] = { "dw", "dw.dw", NULL };
