//! What one handler instance's `Store` holds: its WASI context and its connection.

use crate::wasm::guest_log::{GuestLog, Stream};
use crate::wasm::sandbox::{self, GuestLimiter, Sandboxed};
use crate::world::conn::Conn;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wshost_config::Grants;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub conn: Conn,
    pub limiter: GuestLimiter,
}

impl HostState {
    /// A guest gets no environment, arguments, files or sockets; its stdout and
    /// stderr go to the host's log, tagged with `route` and the connection id.
    pub fn new(route: Arc<str>, conn: Conn, limiter: GuestLimiter, grants: &Grants) -> Self {
        let id = conn.id();
        let stdout = GuestLog::new(route.clone(), id, Stream::Stdout);
        let wasi = sandbox::wasi(grants, stdout, GuestLog::new(route, id, Stream::Stderr));
        HostState {
            wasi,
            table: sandbox::resource_table(1),
            conn,
            limiter,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Sandboxed for HostState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }

    fn take_waited(&mut self) -> bool {
        self.conn.take_waited()
    }
}
