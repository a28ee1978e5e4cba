use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wshost::{Limits, RouteSpec, Server};

/// A WebSocket server whose handlers are WebAssembly components.
#[derive(Parser)]
#[command(name = "wshost", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket requests with wasm handler components.
    Serve(ServeArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9502")]
    listen: SocketAddr,

    /// Serve requests for exactly PATH with the component in FILE; repeatable.
    /// With none, the built-in demo: the seed's page at / and echo at /websocket.
    #[arg(long = "route", value_name = "PATH=FILE.wasm")]
    routes: Vec<RouteSpec>,

    /// Largest WebSocket message, received or pushed, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_size)]
    max_message_size: usize,

    /// Seconds a client may take to send its request head.
    #[arg(long, default_value_t = Limits::default().head_timeout.as_secs_f64())]
    handshake_timeout: f64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshost: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let routes = if args.routes.is_empty() {
        wshost::demo::routes()
    } else {
        args.routes
    };
    let limits = Limits {
        max_message_size: args.max_message_size,
        max_frame_size: args.max_message_size,
        head_timeout: Duration::try_from_secs_f64(args.handshake_timeout)
            .context("--handshake-timeout must be a non-negative number of seconds")?,
        ..Limits::default()
    };
    let server = Arc::new(Server::new(&routes, limits)?);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        for route in &routes {
            tracing::info!("route {} -> {}", route.path, route.source);
        }
        // Tests and scripts wait for this line to learn the port.
        println!("wshost listening on http://{addr}");
        std::io::stdout().flush()?;
        server.serve(listener).await;
        Ok(())
    })
}
