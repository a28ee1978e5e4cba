// The seed's broadcast in event style: each message `X` is pushed as
// `Сервер：X` to every open socket of the route, the sender included. One
// instance serves them all; the host keeps the topic, so a socket leaves it
// when it closes.
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "errors.h"

static const char ROOM[] = "chat";
static const char PREFIX[] = "Сервер：";

void exports_events_on_request(events_connection_id_t conn, events_request_t *req,
                               events_decision_t *ret) {
  (void)conn;
  events_request_free(req);
  memset(ret, 0, sizeof *ret);  // no subprotocol, headers or attachment
  ret->tag = WSHOST_WEBSOCKET_EVENT_TYPES_DECISION_UPGRADE;
}

void exports_events_on_open(events_connection_id_t conn) {
  events_string_t room;
  events_string_set(&room, ROOM);
  bool subscribed;
  ws_error_t e;
  if (!wshost_websocket_topics_subscribe(conn, &room, &subscribed, &e)) {
    log_error(&e);
    wshost_websocket_sockets_terminate(conn);
  }
}

void exports_events_on_message(events_connection_id_t conn, events_message_t *msg) {
  // Text or binary, the payload is the bytes at the same place.
  events_string_t data = msg->val.text;
  // As the seed: the text `close` drops the connection.
  if (data.len == 5 && memcmp(data.ptr, "close", 5) == 0) {
    wshost_websocket_sockets_terminate(conn);
  } else {
    size_t p = strlen(PREFIX);
    events_message_t out = {.tag = WSHOST_WEBSOCKET_EVENT_TYPES_MESSAGE_TEXT};
    out.val.text.len = p + data.len;
    out.val.text.ptr = malloc(out.val.text.len);
    memcpy(out.val.text.ptr, PREFIX, p);
    memcpy(out.val.text.ptr + p, data.ptr, data.len);
    events_string_t room;
    events_string_set(&room, ROOM);
    uint32_t reached;
    ws_error_t e;
    if (!wshost_websocket_topics_publish(&room, &out, NULL, &reached, &e)) {
      log_error(&e);
    }
    free(out.val.text.ptr);
  }
  events_message_free(msg);
}

void exports_events_on_close(events_connection_id_t conn, uint16_t code, events_string_t *reason) {
  (void)conn;
  (void)code;
  events_string_free(reason);
}

void exports_events_on_drain(events_connection_id_t conn) { (void)conn; }
