//! `wardline`: run the server, administer it, or measure it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wardline_devtools::bench::BenchCommand;
use wardline_devtools::validate::ValidateCommand;
use wardline_server::admin::AdminCommand;
use wardline_server::config::{self, Overrides};

/// Wardline: remote patient monitoring. Devices send readings over MQTT or HTTP;
/// clinicians see them, live, for the patients of their care teams only.
#[derive(Parser, Debug)]
#[command(name = "wardline", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: MQTT for devices, HTTP API for people, SQLite in the data folder.
    Serve(ServeArgs),
    /// Manage users, patients, care teams and devices directly in a data folder.
    Admin {
        #[command(flatten)]
        location: DataArgs,
        /// Make a new data folder and database when there is none (otherwise a command
        /// run in the wrong folder would put its changes where no server looks).
        #[arg(long)]
        init: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Import a CGM export (Dexcom Clarity, LibreView) into a patient's record.
    Import {
        #[command(flatten)]
        location: DataArgs,
        #[command(subcommand)]
        command: wardline_server::admin::ImportCommand,
    },
    /// Measure Wardline (and optionally another broker) under load.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Check the analytics against the shared real data and print the tables; exits
    /// non-zero when a target is missed.
    Validate {
        /// The shared data folder (default: $WARDLINE_SHARED_DATA, else ../shared/data).
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: ValidateCommand,
    },
    /// Run the server with a simulated ward: accounts, patients, care team and devices
    /// sending over MQTT and HTTPS with their own credentials, in accelerated time.
    Demo(wardline_server::demo::DemoArgs),
    /// Run a home gateway: local devices send to it; it queues durably and forwards to
    /// the server over TLS with its own credential, keeping everything while offline.
    Gateway(wardline_server::gateway::GatewayArgs),
}

#[derive(clap::Args, Debug)]
struct DataArgs {
    /// Data folder (default: ./wardline-data, or WARDLINE_DATA_DIR, or the config file's).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Keys folder, outside the data folder (default: the data folder's name + `-keys`
    /// beside it, or WARDLINE_KEYS_DIR, or the config file's `keys.dir`).
    #[arg(long, global = true)]
    keys_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "WARDLINE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where records are stored: `embedded` (SQLite in the data folder, the default) or a
    /// postgres:// URL shared by several workers (or WARDLINE_STORE, or `store.url`).
    #[arg(long, global = true)]
    store: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    location: DataArgs,
    /// MQTT listen address (default 0.0.0.0:8883).
    #[arg(long)]
    mqtt_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address (default 0.0.0.0:8443).
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
    /// A listener serving only /metrics, without a login, for Prometheus (default: none;
    /// an admin reads /metrics on the HTTP listener).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Turn TLS off. Allowed only when both listeners are on loopback addresses.
    #[arg(long)]
    plaintext: bool,
    /// Host name or address for the server certificate (repeatable; default localhost).
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    /// Write the bound addresses as JSON to this file once listening (for tools and tests).
    #[arg(long)]
    listen_file: Option<PathBuf>,
    /// The NATS server(s) through which several workers on one PostgreSQL store work as
    /// one: nats:// URLs, comma-separated (or WARDLINE_BUS, or `bus.url`). Without one,
    /// a server is the only one on its database.
    #[arg(long)]
    bus: Option<String>,
}

fn resolve(location: &DataArgs, overrides: Overrides) -> anyhow::Result<config::Config> {
    let file_text = location
        .config
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        })
        .transpose()?;
    let environment: BTreeMap<String, String> = std::env::vars().collect();
    let overrides = Overrides {
        data_dir: location.data_dir.clone(),
        keys_dir: location.keys_dir.clone(),
        store: location.store.clone(),
        ..overrides
    };
    Ok(config::load(
        file_text.as_deref(),
        &environment,
        &overrides,
    )?)
}

fn init_logging(config: &config::Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in a log file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = resolve(
                &args.location,
                Overrides {
                    mqtt_listen: args.mqtt_listen,
                    http_listen: args.http_listen,
                    metrics_listen: args.metrics_listen,
                    plaintext: args.plaintext,
                    hostnames: args.hostnames,
                    bus: args.bus,
                    ..Overrides::default()
                },
            )?;
            init_logging(&config);
            let shutdown = CancellationToken::new();
            let signal_shutdown = shutdown.clone();
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                signal_shutdown.cancel();
            });
            wardline_server::server::serve(config, args.listen_file, shutdown).await
        }
        Command::Admin {
            location,
            init,
            command,
        } => {
            let config = resolve(&location, Overrides::default())?;
            wardline_server::admin::run(&config, command, init).await
        }
        Command::Import { location, command } => {
            let config = resolve(&location, Overrides::default())?;
            wardline_server::admin::import(&config, command).await
        }
        Command::Bench { command } => wardline_devtools::bench::run(command).await,
        Command::Demo(args) => wardline_server::demo::run(args, stop_on_signal()).await,
        Command::Gateway(args) => wardline_server::gateway::run(args, stop_on_signal()).await,
        Command::Validate { data, command } => {
            let data = wardline_devtools::validate::data_dir(data)?;
            // Reading and analysing the records is plain CPU work.
            tokio::task::spawn_blocking(move || wardline_devtools::validate::run(command, &data))
                .await
                .context("the validation task failed")?
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn stop_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        signal_shutdown.cancel();
    });
    shutdown
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wardline: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wardline: {error:#}");
            ExitCode::FAILURE
        }
    }
}
