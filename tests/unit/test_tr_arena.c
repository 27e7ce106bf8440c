/* Tests for the cache's message memory (storage/tr_arena.h). */
#include "tr_arena.h"

#include <criterion/criterion.h>
#include <string.h>

static GBytes *
copy_pattern (TrArena *arena, gsize len, guint8 seed)
{
  g_autofree guint8 *buf = g_malloc (len);

  for (gsize i = 0; i < len; i++)
    buf[i] = (guint8) (seed + i * 7);
  return tr_arena_copy (arena, buf, len);
}

static void
assert_pattern (GBytes *bytes, gsize len, guint8 seed)
{
  gsize got = 0;
  const guint8 *data = g_bytes_get_data (bytes, &got);

  cr_assert_eq (got, len);
  for (gsize i = 0; i < len; i++)
    cr_assert_eq (data[i], (guint8) (seed + i * 7), "byte %zu of a %zu-byte copy (seed %u)", i, len, seed);
}

Test (tr_arena, copies_are_exact_and_aligned)
{
  g_autoptr (TrArena) arena = tr_arena_new ();
  GBytes *copies[40];
  TrArenaStats stats;

  for (guint i = 0; i < G_N_ELEMENTS (copies); i++) {
    copies[i] = copy_pattern (arena, 1 + i * 37, (guint8) i);
    cr_assert_eq ((guintptr) g_bytes_get_data (copies[i], NULL) % 16, 0);
  }
  for (guint i = 0; i < G_N_ELEMENTS (copies); i++) {
    assert_pattern (copies[i], 1 + i * 37, (guint8) i);
    g_bytes_unref (copies[i]);
  }
  tr_arena_get_stats (arena, &stats);
  cr_assert_eq (stats.copies, G_N_ELEMENTS (copies));
  cr_assert_eq (stats.chunks_mapped, 1);
  cr_assert_eq (stats.chunks_live, 1, "the chunk being filled stays");
  cr_assert_eq (stats.large_copies, 0);
}

Test (tr_arena, large_and_empty_messages_use_malloc)
{
  g_autoptr (TrArena) arena = tr_arena_new ();
  g_autoptr (GBytes) large = copy_pattern (arena, TR_ARENA_MAX_COPY + 1, 3);
  g_autoptr (GBytes) empty = tr_arena_copy (arena, "", 0);
  g_autoptr (GBytes) biggest = copy_pattern (arena, TR_ARENA_MAX_COPY, 4);
  TrArenaStats stats;

  assert_pattern (large, TR_ARENA_MAX_COPY + 1, 3);
  assert_pattern (biggest, TR_ARENA_MAX_COPY, 4);
  cr_assert_eq (g_bytes_get_size (empty), 0);
  tr_arena_get_stats (arena, &stats);
  cr_assert_eq (stats.large_copies, 2);
  cr_assert_eq (stats.copies, 1, "TR_ARENA_MAX_COPY itself still goes into a chunk");
}

/* Oldest-first release, like the cache: a window of live messages moves
 * through 40 MiB of copies.  Released chunks are reused, so only the window
 * plus the spares is ever mapped, and nothing is lost on the way. */
Test (tr_arena, fifo_use_reuses_chunks)
{
  g_autoptr (TrArena) arena = tr_arena_new ();
  const gsize len = 1100, window = (3 * TR_ARENA_CHUNK_SIZE) / len;
  const guint total = (guint) ((40 * TR_ARENA_CHUNK_SIZE) / len);
  g_autoptr (GPtrArray) live = g_ptr_array_new ();
  guint released = 0;
  TrArenaStats stats;

  for (guint i = 0; i < total; i++) {
    g_ptr_array_add (live, copy_pattern (arena, len, (guint8) i));
    if (live->len - released > window) {
      assert_pattern (live->pdata[released], len, (guint8) released);
      g_clear_pointer (&live->pdata[released], g_bytes_unref);
      released++;
    }
  }
  tr_arena_get_stats (arena, &stats);
  cr_assert_lt (stats.chunks_mapped, 3 + 2 + TR_ARENA_SPARE_CHUNKS + 1, "mapped %" G_GUINT64_FORMAT " chunks",
                stats.chunks_mapped);
  cr_assert_leq (stats.chunks_spare, TR_ARENA_SPARE_CHUNKS);
  cr_assert_leq (stats.chunks_live, 5);
  for (guint i = released; i < live->len; i++) {
    assert_pattern (live->pdata[i], len, (guint8) i);
    g_bytes_unref (live->pdata[i]);
  }
  tr_arena_get_stats (arena, &stats);
  cr_assert_eq (stats.chunks_live, 1);
  cr_assert_eq (stats.chunks_spare, TR_ARENA_SPARE_CHUNKS);
}

Test (tr_arena, messages_outlive_the_arena)
{
  TrArena *arena = tr_arena_new ();
  GBytes *kept[3];

  for (guint i = 0; i < G_N_ELEMENTS (kept); i++)
    kept[i] = copy_pattern (arena, TR_ARENA_MAX_COPY, (guint8) (9 + i));
  /* Fill more chunks and release them, so the arena also has spares. */
  for (guint i = 0; i < 40; i++)
    g_bytes_unref (copy_pattern (arena, TR_ARENA_MAX_COPY, 1));
  tr_arena_free (arena);
  for (guint i = 0; i < G_N_ELEMENTS (kept); i++) {
    assert_pattern (kept[i], TR_ARENA_MAX_COPY, (guint8) (9 + i));
    g_bytes_unref (kept[i]);
  }
}

/* The router copies on its event loop and releases on any thread. */
typedef struct {
  GAsyncQueue *queue;
  guint n;
} Consumer;

static gpointer
consume (gpointer data)
{
  Consumer *consumer = data;

  for (guint i = 0; i < consumer->n; i++) {
    GBytes *bytes = g_async_queue_pop (consumer->queue);
    assert_pattern (bytes, 500 + i % 1000, (guint8) i);
    g_bytes_unref (bytes);
  }
  return NULL;
}

Test (tr_arena, release_on_another_thread)
{
  g_autoptr (TrArena) arena = tr_arena_new ();
  Consumer consumer = { g_async_queue_new (), 20000 };
  GThread *thread = g_thread_new ("consumer", consume, &consumer);
  TrArenaStats stats;

  for (guint i = 0; i < consumer.n; i++)
    g_async_queue_push (consumer.queue, copy_pattern (arena, 500 + i % 1000, (guint8) i));
  g_thread_join (thread);
  g_async_queue_unref (consumer.queue);
  tr_arena_get_stats (arena, &stats);
  cr_assert_eq (stats.copies, consumer.n);
  cr_assert_eq (stats.chunks_live, 1);
}
