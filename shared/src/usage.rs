//! `--help` and `--version` of the service binaries. Their configuration comes from the
//! environment only, so the help lists the variables they read — taken from the doc comments of
//! their config types (`` /// `NAME`: meaning ``), so it cannot drift from the code. Any other
//! argument is a usage error (exit 2) rather than a service started, or failing with "address in
//! use", when someone only asked what it is.

/// What the arguments ask of a service binary, when not to run it: the text to print and the
/// exit status.
pub fn answer(name: &str, about: &str, sources: &[&str], args: &[String]) -> Option<(String, u8)> {
    let version = format!("{name} {}", env!("CARGO_PKG_VERSION"));
    match args.first().map(String::as_str) {
        None => None,
        Some("--help" | "-h" | "help") => Some((help(name, about, sources), 0)),
        Some("--version" | "-V") => Some((version, 0)),
        Some(other) => Some((
            format!("{name}: unexpected argument {other:?}: settings come from the environment (see {name} --help)"),
            2,
        )),
    }
}

/// Prints [`answer`] and exits when the process' arguments ask for it.
pub fn handle(name: &str, about: &str, sources: &[&str]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((text, code)) = answer(name, about, sources, &args) {
        if code == 0 {
            println!("{text}");
        } else {
            eprintln!("{text}");
        }
        std::process::exit(code.into());
    }
}

fn help(name: &str, about: &str, sources: &[&str]) -> String {
    let mut out = format!(
        "{about}\n\nUsage: {name}   (settings from the environment; defaults in docs/operations.md)\n\nEnvironment:\n"
    );
    for (var, meaning) in variables(sources) {
        out += &format!("  {var:<36} {meaning}\n");
    }
    out
}

/// Each documented variable of `sources` (config modules' text) with the first line of its
/// meaning, in order, once.
pub fn variables(sources: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in sources.iter().flat_map(|s| s.lines()) {
        let Some(rest) = line.trim_start().strip_prefix("/// `") else {
            continue;
        };
        let Some((var, meaning)) = rest.split_once("`: ") else {
            continue;
        };
        let is_name = var
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if is_name && !out.iter().any(|(v, _)| v == var) {
            out.push((var.to_owned(), meaning.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "    /// `CSVBUS_A`: the first.\n    /// more of it\n    pub a: u8,\n    /// `CSVBUS_B`: the second.\n    /// `not a var`: skipped\n";

    #[test]
    fn help_lists_the_documented_variables_and_other_arguments_are_usage_errors() {
        assert_eq!(
            variables(&[SOURCE]),
            [
                ("CSVBUS_A".into(), "the first.".into()),
                ("CSVBUS_B".into(), "the second.".into())
            ]
        );
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(answer("svc", "About.", &[SOURCE], &[]), None);
        let (text, code) = answer("svc", "About.", &[SOURCE], &args(&["--help"])).unwrap();
        assert_eq!(code, 0);
        assert!(
            text.starts_with("About.") && text.contains("CSVBUS_B"),
            "{text}"
        );
        let (text, code) = answer("svc", "About.", &[SOURCE], &args(&["--version"])).unwrap();
        assert_eq!((code, text.starts_with("svc ")), (0, true));
        assert_eq!(
            answer("svc", "", &[SOURCE], &args(&["--port"])).unwrap().1,
            2
        );
    }
}
