//! The `oidc-gateway` command line: `run`, `check-config` and `demo`.
// The release build's MIR inliner lays out the server's per-connection future through
// every nested stage (the replicas' refresh and validation paths among them), deeper than
// the default limit of 128 queries.
#![recursion_limit = "256"]

use clap::{Parser, Subcommand};
use oidc_gateway::clock::Clock;
use oidc_gateway::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "oidc-gateway",
    version,
    about = "OpenID Connect login in front of any web application"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file (same as `run --config FILE`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGTERM/SIGINT, then drain in-flight requests.
    Run {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
        /// Reload the configuration whenever the file changes (SIGHUP always reloads it).
        #[arg(long)]
        watch: bool,
    },
    /// Parse and validate a configuration file; print every problem.
    CheckConfig {
        #[arg(long, short, default_value = "conf/gateway.toml")]
        config: PathBuf,
    },
    /// GET an admin endpoint (e.g. http://127.0.0.1:9090/readyz); exit 0 on a 2xx within
    /// 5 s, else 1. For container HEALTHCHECKs: the image has no curl.
    Probe {
        /// The URL to ask (plain http).
        url: String,
    },
    /// Convert an Apache + mod_auth_openidc configuration to gateway.toml (stdout or
    /// --out); report on stderr every directive that was not mapped (exit status 2).
    ImportApache {
        /// The Apache configuration files (Include/IncludeOptional are followed).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the configuration here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start the gateway with a built-in development OpenID Provider and echo upstream.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` (index 4 in both mimalloc v2 and v3's `mi_option_e`).
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Commit the allocator's arena memory on demand, so that memory freed after a burst leaves
/// the resident set: with mimalloc's default (eager on overcommitting systems) it stayed
/// resident, about 12 KiB per idle keep-alive connection (scripts/bench --idle). Runs as a
/// load-time constructor because the first arena is made by the first allocation, before
/// `main`. MIMALLOC_ARENA_EAGER_COMMIT in the environment still wins.
#[cfg(target_os = "linux")]
extern "C" fn allocator_options() {
    // var_os allocates only when the variable is set, and then nothing is changed.
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: sets a process-wide allocator option before any thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static ALLOCATOR_OPTIONS: extern "C" fn() = allocator_options;

fn main() -> ExitCode {
    let cli = Cli::parse();
    oidc_gateway::install_crypto_provider();
    let command = match (cli.command, cli.config) {
        (Some(c), _) => c,
        (None, Some(config)) => Command::Run {
            config,
            watch: false,
        },
        (None, None) => Command::Run {
            config: PathBuf::from("conf/gateway.toml"),
            watch: false,
        },
    };
    match command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{}: {warning}", config.display());
                }
                println!("{}: configuration is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config: path,
            watch,
        } => {
            // Before reading: a change made while we start is then seen by --watch.
            let loaded_stamp = oidc_gateway::reload::stamp(&path);
            // Read first: `[log]` says how to log. Its problems go to stderr as they are.
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            // `log_control` applies `log.level` on a config reload; `export` sends the
            // spans to the OTLP collector of `[telemetry]`.
            let logging =
                oidc_gateway::observe::init_logging(&config.log, config.telemetry.as_ref());
            let (log_control, export) = match logging {
                Ok(logging) => logging,
                Err(e) => {
                    eprintln!("oidc-gateway: {e}");
                    return ExitCode::from(2);
                }
            };
            for warning in &config.warnings {
                tracing::warn!(key = warning.key.as_str(), "{}", warning.reason);
            }
            let code = runtime().block_on(async {
                let stop = oidc_gateway::shutdown_signal();
                // Before binding: a SIGHUP sent as soon as we answer must reload, not kill.
                let hangups = oidc_gateway::reload::hangups();
                match oidc_gateway::server::start(config, Clock::system()).await {
                    Ok(running) => {
                        let reloader = running.reloader(&path).with_log_control(log_control);
                        tokio::spawn(reloader.clone().on_hangup(hangups));
                        if watch {
                            tokio::spawn(reloader.watch(loaded_stamp));
                        }
                        // Listeners are bound: under systemd (Type=notify), we are up.
                        oidc_gateway::systemd::notify("READY=1");
                        stop.await;
                        oidc_gateway::systemd::notify("STOPPING=1");
                        tracing::info!("shutting down: draining in-flight requests");
                        running.shutdown().await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("oidc-gateway: {e}");
                        ExitCode::FAILURE
                    }
                }
            });
            // The last requests' spans.
            if let Some(export) = export {
                export.shutdown();
            }
            code
        }
        Command::Probe { url } => runtime().block_on(async {
            default_logging();
            match oidc_gateway::server::probe(&url).await {
                Ok(status) => {
                    println!("{url}: {status}");
                    if status.is_success() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::ImportApache { files, out } => import_apache(&files, out.as_deref()),
        Command::Demo { listen } => runtime().block_on(async {
            default_logging();
            match oidc_gateway::demo::run(listen).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("oidc-gateway demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

/// `import-apache`: the file on stdout (or `--out`), the report on stderr; 0 when every
/// directive was mapped, 2 when some were not, 1 when nothing could be written.
fn import_apache(files: &[PathBuf], out: Option<&std::path::Path>) -> ExitCode {
    let import = match oidc_gateway::import_apache::import(files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("oidc-gateway import-apache: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &import.toml) {
                eprintln!(
                    "oidc-gateway import-apache: cannot write {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", import.toml),
    }
    eprint!("{}", import.report());
    ExitCode::from(import.exit_code())
}

/// Logging for the commands without a config file: text, `RUST_LOG` or `info`, to stderr.
fn default_logging() {
    let _ = oidc_gateway::observe::init_logging(&Default::default(), None);
}

/// The main thread's runtime: accept loops, the admin listener, reloads and background
/// refreshes. Proxied connections are served on the worker threads (`server.workers`),
/// each with a runtime of its own.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}
