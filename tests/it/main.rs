//! The integration tests, one binary (one link of kube + hyper + k8s-openapi): a module per
//! concern, all on the one test kit (`tests/testkit`).

#[path = "../testkit/mod.rs"]
mod testkit;

mod apiserver_smoke;
mod binary;
mod decode_duplicates;
mod decode_fixtures;
mod decode_props;
mod e2e_apiserver;
mod e2e_audit;
mod e2e_breaker;
mod e2e_contain;
mod e2e_faults;
mod e2e_guards;
mod e2e_reserve;
mod fuzz_regressions;
mod hostile_load;
mod http_server;
mod kube_mock;
mod limits;
mod logs;
