//! Shell commands as the scripts and guides write them. The `shell-words` crate splits a
//! command line into words (quotes, escapes, comments) as a POSIX shell would; it reads one
//! command and treats newlines as blanks and `&&`, `;`, `|` as words, so joining the
//! `\`-continued lines and cutting command lists stay here.

use crate::files::read;

/// Logical lines of a shell script: `\`-continued lines joined.
pub(crate) fn logical_lines(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for line in text.lines() {
        if let Some(stripped) = line.trim_end().strip_suffix('\\') {
            cur.push_str(stripped);
            cur.push(' ');
        } else {
            cur.push_str(line);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The words of one command line, quotes removed, no expansions performed.
pub(crate) fn words(line: &str) -> Vec<String> {
    shell_words::split(line).unwrap_or_else(|e| panic!("`{line}` is not one shell command: {e}"))
}

/// The words of the `kn service create ...` command in knative/kn-service-create.sh.
pub(crate) fn kn_create_words() -> Vec<String> {
    let script = read("knative/kn-service-create.sh");
    let line = logical_lines(&script)
        .into_iter()
        .find(|l| l.contains("kn service create"))
        .expect("knative/kn-service-create.sh runs `kn service create`");
    let words = words(&line);
    let at = words.iter().position(|w| w == "kn").unwrap();
    words[at..].to_vec()
}

/// Values of a repeatable flag (`--flag value` or `--flag=value`).
pub(crate) fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    let mut out = vec![];
    for (i, w) in words.iter().enumerate() {
        if w == flag {
            if let Some(v) = words.get(i + 1) {
                out.push(v.clone());
            }
        } else if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        }
    }
    out
}

pub(crate) fn flag_value(words: &[String], flag: &str) -> String {
    let values = flag_values(words, flag);
    assert_eq!(values.len(), 1, "{flag} once expected in {words:?}");
    values[0].clone()
}

/// The logical lines of a Markdown document's shell blocks (```sh, ```bash, ...).
pub(crate) fn doc_shell_lines(markdown: &str) -> Vec<String> {
    let mut out = vec![];
    // Inside a fence: Some(is a shell block, its text).
    let mut block: Option<(bool, String)> = None;
    for line in markdown.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            match block.take() {
                Some((true, text)) => out.extend(logical_lines(&text)),
                Some((false, _)) => {}
                None => {
                    let shell = ["sh", "bash", "shell", "console"].contains(&lang.trim());
                    block = Some((shell, String::new()));
                }
            }
            continue;
        }
        if let Some((_, text)) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The shell commands in a Markdown document's shell blocks, as word lists: one per pipeline
/// stage, `&&`/`;`/`&` part and `$(...)` substitution.
pub(crate) fn doc_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut commands: Vec<Vec<String>> = doc_shell_lines(markdown)
        .iter()
        .flat_map(|l| split_commands(words(l)))
        .collect();
    commands.retain(|c| !c.is_empty());
    commands
}

pub(crate) fn split_commands(words: Vec<String>) -> Vec<Vec<String>> {
    let mut out = vec![vec![]];
    for w in words {
        if ["|", "||", "&&", ";", "&"].contains(&w.as_str()) {
            out.push(vec![]);
            continue;
        }
        if let Some(at) = w.find("$(") {
            let (before, inner) = (&w[..at], &w[at + 2..]);
            if !before.is_empty() {
                out.last_mut().unwrap().push(before.to_string());
            }
            out.push(vec![]);
            if !inner.is_empty() {
                out.last_mut()
                    .unwrap()
                    .push(inner.trim_end_matches(')').to_string());
            }
            continue;
        }
        let w = w.strip_suffix(')').map(String::from).unwrap_or(w);
        out.last_mut().unwrap().push(w);
    }
    out
}
