//! The `oidcgate` binary: a thin entry into `oidcgate-cli`.

fn main() -> std::process::ExitCode {
    oidcgate_cli::main()
}
