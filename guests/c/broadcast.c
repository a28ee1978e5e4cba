// The seed's second example in C: each message `X` is pushed as `Сервер：X`
// to every live connection of the route. The host's hub keeps the list of
// connections, so nothing here has to remove itself.
#include "common.h"

bool exports_handler_handle(handler_request_t *req, handler_string_t *err) {
  handler_request_free(req);
  ws_error_t e;
  if (!wshost_websocket_connection_upgrade(&e)) {
    return fail(err, &e);
  }
  ws_frame_t frame;
  while (next_message(&frame)) {
    handler_list_u8_t text = framed("Сервер：", &frame.data, "");
    uint32_t reached;
    bool sent = wshost_websocket_hub_broadcast(&text, OPCODE_TEXT, &reached, &e);
    free(text.ptr);
    wshost_websocket_types_frame_free(&frame);
    if (!sent) {
      log_error(&e);
      break;
    }
  }
  wshost_websocket_connection_close();
  return true;
}
