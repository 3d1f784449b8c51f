//! The Dockerfile builds a static binary into an empty, non-root image.

use crate::{files::read, shell::logical_lines};

#[test]
fn dockerfile_builds_a_static_binary_into_an_empty_nonroot_image() {
    let text = read("Dockerfile");
    let lines = logical_lines(&text);
    let instructions: Vec<String> = lines
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap();
    assert_eq!(instructions[last_from], "FROM scratch", "final stage");
    let final_stage = &instructions[last_from + 1..];
    for want in [
        "USER 65532:65532",
        "ENV PORT=8080",
        "EXPOSE 8080",
        r#"ENTRYPOINT ["/falco-responder"]"#,
    ] {
        assert!(
            final_stage.iter().any(|l| l == want),
            "final stage lacks {want}"
        );
    }
    let copies: Vec<&String> = final_stage
        .iter()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 1, "one COPY in the final stage");
    assert!(
        copies[0].starts_with("COPY --from=builder ") && copies[0].ends_with(" /falco-responder"),
        "{}",
        copies[0]
    );
    for banned in ["RUN", "CMD", "VOLUME", "ADD"] {
        assert!(
            !final_stage
                .iter()
                .any(|l| l.split_whitespace().next() == Some(banned)),
            "{banned} in the final stage (scratch has no shell; nothing may be written)"
        );
    }
    let builder = instructions[..last_from].join("\n");
    for want in [
        "musl-tools",
        "rustup target add",
        "x86_64-unknown-linux-musl",
        "cargo build --release --locked --target",
    ] {
        assert!(builder.contains(want), "builder stage lacks {want}");
    }
    assert!(!text.contains("watchdog"), "no OpenFaaS watchdog");
    assert!(
        read(".dockerignore").lines().any(|l| l.trim() == "target/"),
        ".dockerignore: target/"
    );
    // scripts/image.sh assembles the image from this very final stage and checks the result.
    let script = read("scripts/image.sh");
    for want in [
        "FROM scratch",
        "Dockerfile",
        "want_user=65532:65532",
        r#"want_entrypoint='["/falco-responder"]'"#,
        "8080/tcp",
        "statically linked",
        "max_binary_bytes=$((10 * 1024 * 1024))",
    ] {
        assert!(script.contains(want), "scripts/image.sh lacks {want}");
    }
}
