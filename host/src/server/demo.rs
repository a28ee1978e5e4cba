//! The seed's demo, built into the binary: what `wshost serve` serves with no `--route`.

use wshost_config::{ComponentSource, RouteSpec};

const PAGE: &[u8] = include_bytes!(concat!(env!("WSHOST_GUEST_DIR"), "/page.wasm"));
const ECHO: &[u8] = include_bytes!(concat!(env!("WSHOST_GUEST_DIR"), "/echo.wasm"));

/// `/` answers with the seed's page, `/websocket` greets each message.
pub fn routes() -> Vec<RouteSpec> {
    vec![
        RouteSpec {
            path: "/".into(),
            source: ComponentSource::Builtin {
                name: "page",
                bytes: PAGE,
            },
            world: None,
            limits: None,
        },
        RouteSpec {
            path: "/websocket".into(),
            source: ComponentSource::Builtin {
                name: "echo",
                bytes: ECHO,
            },
            world: None,
            limits: None,
        },
    ]
}
