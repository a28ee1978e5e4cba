// Helpers the C echo and broadcast handlers share; the bindings in gen/
// are generated from ../../wit by `wit-bindgen c` (see build.sh).
#ifndef WSHOST_GUEST_COMMON_H
#define WSHOST_GUEST_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "errors.h"

typedef wshost_websocket_types_frame_t ws_frame_t;

#define OPCODE_TEXT WSHOST_WEBSOCKET_TYPES_OPCODE_TEXT
#define OPCODE_CLOSE WSHOST_WEBSOCKET_TYPES_OPCODE_CLOSE

// The next message; false when the connection is over (the peer left, it
// sent a Close frame or the text `close`, or recv failed: logged).
static inline bool next_message(ws_frame_t *frame) {
  wshost_websocket_connection_option_frame_t got;
  ws_error_t e;
  if (!wshost_websocket_connection_recv(NULL, &got, &e)) {
    log_error(&e);
    return false;
  }
  if (!got.is_some) {  // the peer has gone (the seed's '')
    return false;
  }
  *frame = got.val;
  bool is_close = frame->opcode == OPCODE_CLOSE ||
                  (frame->data.len == 5 && memcmp(frame->data.ptr, "close", 5) == 0);
  if (is_close) {
    wshost_websocket_types_frame_free(frame);
    return false;
  }
  return true;
}

// `prefix` + `data` + `suffix` as one message (malloc'd; free `out.ptr`).
static inline handler_list_u8_t framed(const char *prefix, const handler_list_u8_t *data,
                                       const char *suffix) {
  size_t p = strlen(prefix), s = strlen(suffix);
  handler_list_u8_t out = {malloc(p + data->len + s), p + data->len + s};
  memcpy(out.ptr, prefix, p);
  memcpy(out.ptr + p, data->ptr, data->len);
  memcpy(out.ptr + p + data->len, suffix, s);
  return out;
}

// End the handler with an error the host logs.
static inline bool fail(handler_string_t *err, ws_error_t *e) {
  handler_string_dup(err, error_name(e));
  wshost_websocket_types_error_free(e);
  return false;
}

#endif
