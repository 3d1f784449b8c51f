//! One-shot mode for Argo Workflows: one event from env `BODY` (what a WorkflowTemplate passes)
//! or stdin, acted on exactly as the server would, the JSON result on stdout: the same reply as
//! over HTTP, which names no live-object data (the details are in the log line, on stderr).

use std::process::ExitCode;

use http::HeaderMap;
use tokio::io::AsyncReadExt;

use crate::app::App;

/// Exit codes: 0 deleted/gone/skipped/stale/terminating/dry-run/breaker-open, and `held` for
/// good (a floor no recovery can meet); 1 could not act or `held` (retry the step);
/// 2 the input is not a Falco event; 3 the pod was removed (or may have been) but the deletion
/// breaker's record of it could not be written: the next runs will not count it, so the budget
/// no longer holds (a person must look: the function's namespace, its RBAC).
pub async fn run(app: &App, body_env: Option<String>) -> std::io::Result<ExitCode> {
    let body = match body_env {
        Some(b) => b.into_bytes(),
        None => {
            let mut buf = Vec::new();
            tokio::io::stdin()
                .take(app.config.max_body_bytes as u64 + 1)
                .read_to_end(&mut buf)
                .await?;
            buf
        }
    };
    if body.len() > app.config.max_body_bytes {
        eprintln!(
            "input larger than MAX_BODY_BYTES ({} bytes)",
            app.config.max_body_bytes
        );
        return Ok(ExitCode::from(2));
    }
    let reply = app.handle(&HeaderMap::new(), &body).await;
    println!("{}", reply.json());
    app.drain().await;
    if app.metrics.breaker_record_failures.get() > 0 {
        eprintln!(
            "falco-responder: the deletion breaker's record of this removal could not be written \
             (the error is logged above): later runs will not count it; check the function's \
             namespace (POD_NAMESPACE) and its RBAC (create, list on events there)"
        );
        return Ok(ExitCode::from(3));
    }
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else if reply.status.is_client_error() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}
