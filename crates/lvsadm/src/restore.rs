//! `-R`: rules in ipvsadm-save form, read with the command-line parser, applied as one batch.
//!
//! Lines are split at blanks and tabs as ipvsadm's `config_stream_read` does, a leading
//! `ipvsadm` (or `lvsadm`) word is dropped, blank lines are skipped, and a word starting with
//! `#` starts a comment (ipvsadm's own comment handling does not work; files written by hand
//! have them). Unlike ipvsadm, which applies line by line and stops at the first bad one with
//! the earlier lines applied, lvsadm checks every line first and sends all of them as one
//! [`Request::Batch`]: all apply or none.

use lvs_api::{Request, ServiceInfo};

use crate::args::{self, Command, ParseError};
use crate::names::Resolve;

/// One rule line.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// 1-based line number in the input.
    pub line: usize,
    /// The line as written (trimmed).
    pub text: String,
    /// What it asks for.
    pub command: Command,
}

/// The words of one line, as ipvsadm's `config_stream_read` splits them.
pub fn words(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in line.split([' ', '\t', '\r']).filter(|w| !w.is_empty()) {
        if w.starts_with('#') {
            break;
        }
        out.push(w.to_string());
    }
    if matches!(out.first().map(String::as_str), Some("ipvsadm" | "lvsadm")) {
        out.remove(0);
    }
    out
}

/// A line that could not be read; nothing is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// Exit status (the parser's).
    pub code: i32,
    /// `line N (text): what was wrong`.
    pub message: String,
}

fn line_error(line: usize, text: &str, code: i32, message: &str) -> LineError {
    let first = message.lines().next().unwrap_or(message);
    LineError {
        code,
        message: format!("line {line} ({text}): {first}"),
    }
}

/// Parse every line of `input`.
pub fn parse_rules(input: &str, names: &dyn Resolve) -> Result<Vec<Rule>, LineError> {
    let mut rules = Vec::new();
    for (i, raw) in input.lines().enumerate() {
        let line = i + 1;
        let w = words(raw);
        if w.is_empty() {
            continue;
        }
        let text = raw.trim().to_string();
        let argv: Vec<String> = std::iter::once("lvsadm".to_string()).chain(w).collect();
        let inv = args::parse_with(&argv, names)
            .map_err(|e: ParseError| line_error(line, &text, e.code, &e.message))?;
        rules.push(Rule {
            line,
            text,
            command: inv.command,
        });
    }
    Ok(rules)
}

/// The change request of a command, if it is one a restore may contain.
pub fn change_request(command: &Command) -> Option<Request> {
    Some(match command.clone() {
        Command::AddService(service) => Request::AddService {
            service: service.into(),
        },
        Command::EditService(service) => Request::EditService {
            service: service.into(),
        },
        Command::DeleteService(key) => Request::DeleteService { key: key.into() },
        Command::Clear => Request::Clear,
        Command::AddDest { key, dest } => Request::AddDest {
            key: key.into(),
            dest: dest.into(),
        },
        Command::EditDest { key, dest } => Request::EditDest {
            key: key.into(),
            dest: dest.into(),
        },
        Command::DeleteDest { key, addr, port } => Request::DeleteDest {
            key: key.into(),
            addr,
            port,
        },
        Command::SetTimeouts { tcp, tcpfin, udp } => Request::SetTimeouts { tcp, tcpfin, udp },
        _ => return None,
    })
}

/// The batch for a restore, or the first line that cannot be part of one.
pub fn batch(rules: &[Rule]) -> Result<Vec<Request>, LineError> {
    rules
        .iter()
        .map(|r| {
            change_request(&r.command).ok_or_else(|| {
                line_error(
                    r.line,
                    &r.text,
                    args::EXIT_INVALID,
                    "only table changes can be restored (-A -E -D -C -a -e -d --set); run other commands separately",
                )
            })
        })
        .collect()
}

/// After lvsd refused a batch: replay it on a local copy of the running table to find the
/// line that fails, so the message can name it. `None` when the replay finds nothing.
pub fn locate_refusal(current: &[ServiceInfo], rules: &[Rule]) -> Option<(usize, String, String)> {
    let mut d = lvs_config::table::from_listing(current).ok()?;
    for r in rules {
        let req = change_request(&r.command)?;
        // The timeouts cannot be refused; the replay is about the table.
        if matches!(req, Request::SetTimeouts { .. }) {
            continue;
        }
        if let Err(e) = lvs_config::table::apply_change(&mut d, req) {
            return Some((r.line, r.text.clone(), e));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_as_config_stream_read() {
        assert_eq!(
            words("ipvsadm -A -t 10.0.0.1:80\t-s rr\r"),
            ["-A", "-t", "10.0.0.1:80", "-s", "rr"]
        );
        assert_eq!(words("  # a comment"), Vec::<String>::new());
        assert_eq!(words("-C # then"), ["-C"]);
        assert_eq!(words(""), Vec::<String>::new());
    }
}
