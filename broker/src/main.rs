//! `skiff`: run a Kafka-compatible broker.
//!
//! With no arguments it starts a single-node broker on 127.0.0.1:9092 with its data in
//! `./data`. Settings use Kafka's names, from a TOML file (`--config`) and `--set NAME=VALUE`.

#[cfg(not(madsim))]
mod real {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Arc;

    use clap::Parser;
    use skiff::config::{flatten_toml, BrokerConfig};
    use skiff::io::disk::read_whole;
    use skiff::io::{Clock, Random, RealDisk};
    use skiff::server::{self, Seams};

    /// A Kafka-compatible message broker.
    #[derive(Parser, Debug)]
    #[command(name = "skiff", version, about)]
    struct Arguments {
        /// A TOML file of settings with Kafka's names, e.g. `log.dirs = "/var/lib/skiff"`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where the data lives (`log.dirs`). Default: ./data
        #[arg(long, value_name = "DIR")]
        data_dir: Option<String>,
        /// Where to accept clients (`listeners`), as HOST:PORT. Default: 127.0.0.1:9092
        #[arg(long, value_name = "HOST:PORT")]
        listeners: Option<String>,
        /// The address given to clients (`advertised.listeners`). Default: the listener.
        #[arg(long, value_name = "HOST:PORT")]
        advertised_listeners: Option<String>,
        /// This broker's id (`node.id`). Default: 1
        #[arg(long, value_name = "N")]
        node_id: Option<i32>,
        /// Any setting by its Kafka name, e.g. `--set log.retention.ms=60000`. Repeatable; wins
        /// over the file and the flags above.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        settings: Vec<String>,
    }

    fn properties(arguments: &Arguments) -> Result<BTreeMap<String, String>, String> {
        let mut properties = match &arguments.config {
            Some(path) => {
                let bytes = read_whole(&RealDisk, path).map_err(|error| {
                    format!("cannot read the config file {}: {error}", path.display())
                })?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("the config file {} is not UTF-8", path.display()))?;
                flatten_toml(&text, &path.display().to_string())
                    .map_err(|error| error.to_string())?
            }
            None => BTreeMap::new(),
        };
        let flags = [
            ("log.dirs", arguments.data_dir.clone()),
            ("listeners", arguments.listeners.clone()),
            (
                "advertised.listeners",
                arguments.advertised_listeners.clone(),
            ),
            ("node.id", arguments.node_id.map(|id| id.to_string())),
        ];
        for (name, value) in flags {
            if let Some(value) = value {
                properties.insert(name.to_string(), value);
            }
        }
        for setting in &arguments.settings {
            let (name, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("--set expects NAME=VALUE, got `{setting}`"))?;
            properties.insert(name.trim().to_string(), value.trim().to_string());
        }
        Ok(properties)
    }

    pub fn main() -> std::process::ExitCode {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
        let arguments = Arguments::parse();
        let config = match properties(&arguments).and_then(|properties| {
            BrokerConfig::from_properties(&properties).map_err(|error| error.to_string())
        }) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("skiff: {error}");
                return std::process::ExitCode::from(2);
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("skiff: cannot start the runtime: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
        runtime.block_on(async move {
            let seams = Seams {
                disk: Arc::new(RealDisk),
                clock: Clock::new(),
                random: Random::from_entropy(),
            };
            let server = match server::start(config, seams).await {
                Ok(server) => server,
                Err(error) => {
                    tracing::error!(%error, "cannot start");
                    eprintln!("skiff: {error}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            wait_for_stop_signal().await;
            server.shutdown().await;
            std::process::ExitCode::SUCCESS
        })
    }

    async fn wait_for_stop_signal() {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
        }
    }
}

/// Survives hostile array lengths in requests; see the module's documentation.
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: skiff::io::huge_allocation::LazyHugeAllocator =
    skiff::io::huge_allocation::LazyHugeAllocator;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

/// Under `--cfg madsim` the broker runs inside the simulator (`skiff-sim`), not as a process.
#[cfg(madsim)]
fn main() {
    eprintln!(
        "skiff: this build is for the simulator (--cfg madsim); build without it to run a broker"
    );
    std::process::exit(2);
}
