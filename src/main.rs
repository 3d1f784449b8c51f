#![forbid(unsafe_code)]
//! Thin: configuration, client, listener, run (or run once).

use std::process::ExitCode;

use anyhow::Context;
use falco_responder::{
    app::App,
    app::once,
    cluster::client::{self, Transport},
    config::Config,
    obs::logs,
    web,
};

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: falco-responder [serve | once]
  serve   HTTP server on $PORT (default)
  once    act on one event from $BODY or stdin, print the result, exit (Argo Workflows);
          also chosen when started without a subcommand while BODY is set
configuration: environment variables, see README.md";

enum Mode {
    Serve,
    Once(Option<String>),
}

fn main() -> ExitCode {
    let body = std::env::var("BODY").ok().filter(|b| !b.trim().is_empty());
    let mode = match std::env::args().nth(1).as_deref() {
        None => match body {
            Some(b) => Mode::Once(Some(b)),
            None => Mode::Serve,
        },
        Some("serve") => Mode::Serve,
        Some("once") => Mode::Once(body),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown argument {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env().and_then(Config::load_files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("falco-responder: {e}");
            return ExitCode::from(2);
        }
    };
    logs::init(&config.log_format);
    // The stock k8saudit rules lack the fields an audit event is acted on with: say so once at
    // start rather than let their events be skipped quietly.
    let audit_rules = config.policy.k8s_audit_rules();
    if !audit_rules.is_empty() {
        tracing::warn!(
            rules = ?audit_rules,
            "RULES lets k8s_audit rules act: their events are acted on only when the rule's \
             output carries ka.response.code and ka.verb, which the stock rules do not; until \
             they are added (README, \"Audit events\") every such event is skipped"
        );
    }
    let runtime = match mode {
        // One event: a single thread starts faster.
        Mode::Once(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Mode::Serve => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // Workers batch their log lines, written whenever they run out of work.
            .on_thread_unpark(logs::batch_this_thread)
            .on_thread_park(logs::flush_this_thread)
            .on_thread_stop(logs::flush_this_thread)
            .build(),
    }
    .expect("tokio runtime");
    match runtime.block_on(start(config, mode)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("falco-responder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(config: Config, mode: Mode) -> anyhow::Result<ExitCode> {
    let port = config.port;
    match mode {
        Mode::Once(body) => {
            let clients = client::clients(&config, Transport::Single).await?;
            let app = App::connecting(config);
            app.connect(clients);
            Ok(once::run(&app, body).await?)
        }
        Mode::Serve => {
            let app = App::connecting(config.clone());
            let listener = match web::bind(port) {
                Ok(l) => l,
                Err(e) => {
                    // No configuration at all is the more fundamental error: say that one.
                    client::clients(&config, Transport::Pool).await?;
                    return Err(e).with_context(|| format!("cannot listen on port {port} (PORT)"));
                }
            };
            // The kube client (reading the kubeconfig or the ServiceAccount files, TLS set-up)
            // is built on a thread of its own while the server already answers its probes: as
            // a task it would hold a worker, and on one CPU (a CPU limit of 1: one worker) the
            // only one, which also polls the sockets. An event that comes first waits for it.
            // Not being able to build it still stops the process.
            let runtime = tokio::runtime::Handle::current();
            let building = tokio::task::spawn_blocking(move || {
                runtime.block_on(client::clients(&config, Transport::Pool))
            });
            let connecting = async {
                app.connect(building.await??);
                app.watch();
                std::future::pending::<anyhow::Result<()>>().await
            };
            tokio::select! {
                served = web::run(listener, app.clone(), shutdown_signal()) => served?,
                failed = connecting => failed?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// SIGTERM (Kubernetes, Knative scale-down) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
