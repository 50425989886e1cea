/* bindings/ffi.h: every struct (and function pointer type) that Lua reaches through LuaJIT's FFI,
 * declared once, in C, for both sides.
 *
 * The convention, for every struct added here:
 * - Declare it between a KLUA_CDEF_BEGIN and a KLUA_CDEF_END comment line, in plain C that
 *   LuaJIT's ffi.cdef parses: fixed-width types, no bit fields, no macros, padding written out.
 *   At build time tools/extract_cdefs.lua copies every such region, in order, into the binding
 *   chunk "bindings/ffi.h" (build/gen/ffi_cdefs.lua), which declares them to the FFI once per Lua state
 *   and returns the ffi module: Lua files get their types from it and never write a cdef of their
 *   own (`local ffi = ...` from load_lua_chunk(L, "bindings/ffi.h") in the C++ opener).
 * - Name it `typedef struct klua_NAME { ... } klua_NAME;` and give it, in the C++ block at the
 *   end, a static_assert on its size and on the offset of every field. The extractor refuses a
 *   struct with no size assertion, so a layout change cannot go unnoticed on one side.
 * - C++ code uses these types directly (no mirror struct); Lua code checks ffi.sizeof against the
 *   size the C++ opener passes in (consumer_fast.lua does), which catches a Lua parser that reads
 *   the text differently.
 */
#ifndef KLUA_BINDINGS_FFI_H
#define KLUA_BINDINGS_FFI_H

#include <stddef.h>
#include <stdint.h>

/* ---- consumer: c:poll's fast path (bindings/consumer_poll.cpp, bindings/lua/consumer_fast.lua) */
/* KLUA_CDEF_BEGIN */
/* A plain message as the fast path sees it: pointers into librdkafka's message, valid until the
   release function is called (the Lua side copies them first). */
typedef struct klua_msg_view {
  const char *key, *value;
  double offset, timestamp;
  int32_t key_len, value_len;
  int32_t has_key, has_value;
  int32_t topic;     /* index into the consumer's topic names table */
  int32_t partition;
  int32_t tstype;    /* 0 none, 1 create, 2 log_append */
  int32_t pad;
} klua_msg_view;
/* Called with the payload of a consumer userdata: 0 and v filled, or 1 (take the full path). */
typedef int (*klua_consumer_take_fn)(void *box, klua_msg_view *v);
typedef void (*klua_consumer_release_fn)(void *box);
/* KLUA_CDEF_END */

/* ---- producer: p:send's fast path and batched delivery reports (bindings/producer_lua.cpp,
   bindings/producer_report.cpp, bindings/lua/producer_fast.lua) */
/* KLUA_CDEF_BEGIN */
/* One successful delivery report for the producer-level on_delivery, handed to Lua in batches
   (one Lua call per DR event instead of a C-built table and a lua_call per message). */
typedef struct klua_dr_entry {
  int32_t topic;     /* index into the producer's topic names table */
  int32_t partition;
  int32_t tstype;    /* 0 none, 1 create, 2 log_append */
  int32_t pad;
  double offset, timestamp;
} klua_dr_entry;
/* p:send with only topic/value/key/partition: 0 when enqueued, else take the full path. */
typedef int (*klua_producer_send_fn)(void *box, const char *topic, size_t topic_len, const char *value,
                                     size_t value_len, const char *key, size_t key_len, int32_t partition);
/* KLUA_CDEF_END */

/* ---- standard output: the CLI's buffered writer (bindings/stdout.cpp, bindings/lua/stdout_fast.lua) */
/* KLUA_CDEF_BEGIN */
/* One process-wide buffer in front of fd 1. Lua appends small pieces itself (ffi.copy at
   data + len); the C functions below take what needs a loop (large pieces, JSON escaping,
   base64) and write it out. */
typedef struct klua_outbuf {
  char *data;
  int32_t len, cap;
  int32_t error;     /* errno of the first failed write (the buffer is dropped then), else 0 */
  int32_t pad;
} klua_outbuf;
/* Writes the buffer to fd 1: 0, or -1 (error set). */
typedef int (*klua_out_flush_fn)(klua_outbuf *b);
/* Appends n bytes of s: raw bytes; a JSON string literal (1 and nothing appended when s is not
   valid UTF-8); a quoted base64 string. 0, 1 (JSON: not UTF-8) or -1 (a failed write). */
typedef int (*klua_out_append_fn)(klua_outbuf *b, const char *s, size_t n);
/* 1 when s[0..n) is valid UTF-8 (klua.json's rule), else 0. */
typedef int (*klua_utf8_valid_fn)(const char *s, size_t n);
/* KLUA_CDEF_END */

#ifdef __cplusplus
#include <cstddef>
static_assert(sizeof(klua_msg_view) == 64, "klua_msg_view: the FFI sees 64 bytes");
static_assert(offsetof(klua_msg_view, key) == 0 && offsetof(klua_msg_view, value) == 8, "klua_msg_view layout");
static_assert(offsetof(klua_msg_view, offset) == 16 && offsetof(klua_msg_view, timestamp) == 24, "klua_msg_view layout");
static_assert(offsetof(klua_msg_view, key_len) == 32 && offsetof(klua_msg_view, value_len) == 36, "klua_msg_view layout");
static_assert(offsetof(klua_msg_view, has_key) == 40 && offsetof(klua_msg_view, has_value) == 44, "klua_msg_view layout");
static_assert(offsetof(klua_msg_view, topic) == 48 && offsetof(klua_msg_view, partition) == 52, "klua_msg_view layout");
static_assert(offsetof(klua_msg_view, tstype) == 56 && offsetof(klua_msg_view, pad) == 60, "klua_msg_view layout");
static_assert(sizeof(klua_dr_entry) == 32, "klua_dr_entry: the FFI sees 32 bytes");
static_assert(offsetof(klua_dr_entry, topic) == 0 && offsetof(klua_dr_entry, partition) == 4, "klua_dr_entry layout");
static_assert(offsetof(klua_dr_entry, tstype) == 8 && offsetof(klua_dr_entry, pad) == 12, "klua_dr_entry layout");
static_assert(offsetof(klua_dr_entry, offset) == 16 && offsetof(klua_dr_entry, timestamp) == 24, "klua_dr_entry layout");
static_assert(sizeof(klua_outbuf) == 24, "klua_outbuf: the FFI sees 24 bytes");
static_assert(offsetof(klua_outbuf, data) == 0 && offsetof(klua_outbuf, len) == 8, "klua_outbuf layout");
static_assert(offsetof(klua_outbuf, cap) == 12 && offsetof(klua_outbuf, error) == 16, "klua_outbuf layout");
static_assert(offsetof(klua_outbuf, pad) == 20, "klua_outbuf layout");
#endif

#endif /* KLUA_BINDINGS_FFI_H */
