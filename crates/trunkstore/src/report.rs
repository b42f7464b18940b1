//! What the command line prints about invalid configuration (`check`, `serve`, `import`,
//! `export` share it).

use trunkstore_config::FileErrors;

/// One line per error, `file: dotted.path: keyword: message (value …)`. Secrets are never
/// part of an error value (the validator leaves them out).
pub(crate) fn print_failures(failures: &[FileErrors]) {
    let mut count = 0;
    for f in failures {
        for line in f.lines() {
            println!("{line}");
            count += 1;
        }
    }
    let files = failures.len();
    eprintln!("configuration invalid: {count} error(s) in {files} file(s)");
}
