//! The `oidcgate` command line (DESIGN §4). Subcommands land with their issues; today:
//! `inspect`.

use std::process::ExitCode;

/// Parses arguments, runs the subcommand, and maps the outcome onto DESIGN §4 exit codes.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
