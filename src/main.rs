//! The `oidcgate` binary: a thin entry into `oidcgate-cli`.

/// mimalloc rather than glibc's malloc: a proxied request makes a few dozen small allocations
/// (header maps, URIs, futures), and glibc's allocator spent about a quarter of the gateway's
/// instructions per request on them (bench/RESULTS.md, instructions per request).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    oidcgate_cli::main()
}
