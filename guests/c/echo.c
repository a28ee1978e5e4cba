// The seed's first example in C: `Привет, X!` then `Как ты там, X?` for every
// message; the text `close` or a Close frame ends it without a Close frame.
#include "common.h"

// Push `prefix` + `data` + `suffix` as text; false (logged) if it failed.
static bool push_text(const char *prefix, const handler_list_u8_t *data, const char *suffix) {
  handler_list_u8_t text = framed(prefix, data, suffix);
  ws_error_t e;
  bool pushed = wshost_websocket_connection_push(&text, OPCODE_TEXT, true, &e);
  free(text.ptr);
  if (!pushed) {
    log_error(&e);
  }
  return pushed;
}

bool exports_handler_handle(handler_request_t *req, handler_string_t *err) {
  handler_request_free(req);
  ws_error_t e;
  if (!wshost_websocket_connection_upgrade(&e)) {
    return fail(err, &e);
  }
  ws_frame_t frame;
  while (next_message(&frame)) {
    bool pushed = push_text("Привет, ", &frame.data, "!") &&
                  push_text("Как ты там, ", &frame.data, "?");
    wshost_websocket_types_frame_free(&frame);
    if (!pushed) {
      break;
    }
  }
  wshost_websocket_connection_close();
  return true;
}
