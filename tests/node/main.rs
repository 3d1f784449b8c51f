//! The tests that need a real node (kubelet + containerd + runc on this machine, see
//! `tests/testkit/node.rs` and `scripts/node.sh`), one binary with its own main: one node per
//! machine, so this binary starts it once, runs every test on it (each in its own namespaces,
//! each within its time budget), then stops it and removes what it made. A run killed half-way
//! is cleaned up by the node's watcher, or by the next run.
//!
//! Where a node cannot start (not root, no cgroup v1, ...) every test fails saying why, unless
//! `SKIP_NODE_TESTS=1` is set (README, "A real node"): then they are reported ignored.
//!
//! Rooms: `pods` (what the kubelet reports, judged by the function running on this machine),
//! `contain` (`ACTION=contain` on real pods, with the chart's RBAC), `function` (the function
//! itself as a pod from our image, installed with the chart).

#[path = "../testkit/mod.rs"]
mod testkit;

mod contain;
mod function;
mod kit;
mod pods;

use std::{future::Future, pin::Pin, time::Duration};

use libtest_mimic::{Arguments, Failed, Trial};

/// The environment variable that turns the node tests off where a node cannot run.
const OPT_OUT: &str = "SKIP_NODE_TESTS";

type Body = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One node test: its name, its time budget, its body.
#[derive(Clone)]
pub struct NodeTest {
    pub name: &'static str,
    pub budget: Duration,
    pub run: fn() -> Body,
}

/// `NodeTest` from an `async fn()`.
#[macro_export]
macro_rules! node_test {
    ($f:path, $secs:expr) => {
        $crate::NodeTest {
            name: concat!(module_path!(), "::", stringify!($f)),
            budget: std::time::Duration::from_secs($secs),
            run: || Box::pin($f()),
        }
    };
}

fn main() {
    let mut args = Arguments::from_args();
    // Two at a time: the node is one 2-core machine; every test waits on the kubelet more
    // than it computes.
    args.test_threads.get_or_insert(2);
    let tests: Vec<NodeTest> = [pods::tests(), contain::tests(), function::tests()].concat();
    let names: Vec<String> = tests.iter().map(|t| strip(t.name)).collect();
    let selected = names.iter().any(|n| selected(&args, n));

    // Nothing to run (listing, or a filter meant for another binary): no node.
    if args.list || !selected {
        let trials = tests
            .into_iter()
            .map(|t| Trial::test(strip(t.name), || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }

    let started = std::time::Instant::now();
    let setup = match testkit::node::why_not() {
        Some(why) => Err(why),
        None => testkit::node::start().map(|_| ()),
    };
    if setup.is_ok() {
        eprintln!(
            "node: API server, controllers, scheduler, kubelet and containerd up, node Ready, in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let opted_out = std::env::var(OPT_OUT).is_ok_and(|v| v == "1");
    let trials: Vec<Trial> = tests
        .into_iter()
        .map(|t| {
            let name = strip(t.name);
            match &setup {
                Ok(()) => Trial::test(name, move || run(t.budget, t.run)),
                Err(why) if opted_out => {
                    let _ = why;
                    Trial::test(name, || Ok(())).with_ignored_flag(true)
                }
                Err(why) => {
                    let why = format!(
                        "no node on this machine: {why}\n(set {OPT_OUT}=1 to skip the node tests \
                         here; README, \"A real node\")"
                    );
                    Trial::test(name, move || Err(why.into()))
                }
            }
        })
        .collect();
    if let (Err(why), true) = (&setup, opted_out) {
        eprintln!("node tests skipped ({OPT_OUT}=1): {why}");
    }
    let conclusion = libtest_mimic::run(&args, trials);
    let stopped = testkit::node::stop();
    if let Err(e) = &stopped {
        eprintln!("stopping the node failed:\n{e}");
    }
    if stopped.is_err() && !conclusion.has_failed() {
        std::process::exit(101);
    }
    conclusion.exit();
}

/// `pods::a_test` for `node::pods::a_test` (module paths start at the crate).
fn strip(name: &str) -> String {
    name.trim_start_matches("node::").to_string()
}

/// Whether libtest's rules (filter, --exact, --skip) select `name`.
fn selected(args: &Arguments, name: &str) -> bool {
    let matches = |pattern: &str| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// One test on its own runtime, within its budget.
fn run(budget: Duration, body: fn() -> Body) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("tokio runtime: {e}")))?;
    rt.block_on(async move { tokio::time::timeout(budget, body()).await })
        .map_err(|_| Failed::from(format!("over its time budget of {budget:?}")))
}
