//! The seed's page at `/`: its script opens a WebSocket to `/websocket` on the
//! page's own host, sends `hello` and shows every message in the page.

use wshost_guest::{Connection, Error, Request, Response};

const PAGE: &str = include_str!("page.html");

fn page(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.respond(Response::html(PAGE))
}

wshost_guest::export_handler!(page);
