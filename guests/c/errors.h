// The host's errors, named and logged the seed's way. World-neutral:
// include it after the world's header (gen/handler.h or gen/events.h).
#ifndef WSHOST_GUEST_ERRORS_H
#define WSHOST_GUEST_ERRORS_H

#include <stdio.h>

typedef wshost_websocket_types_error_t ws_error_t;

// The error's name as the WIT spells it, for the log.
static inline const char *error_name(const ws_error_t *e) {
  static const char *names[] = {
      "timeout",  "peer-closed", "not-upgraded",       "already-answered",
      "too-large", "protocol",   "io",                 "unknown-connection",
      "queue-full",
  };
  return e->tag < sizeof names / sizeof names[0] ? names[e->tag] : "unknown";
}

// Log a failed call the seed's way and free the error.
static inline void log_error(ws_error_t *e) {
  fprintf(stderr, "errorCode: %s\n", error_name(e));
  wshost_websocket_types_error_free(e);
}

#endif
