//! The `slipway` binary: a thin shell over [`slipway_cli`], which owns argument parsing.

/// mimalloc instead of glibc's malloc: the proxy's request path allocates
/// and frees a few buffers and futures per request, and glibc's allocator
/// took ~5.6 % of the proxy threads' CPU under `wrk`, mimalloc ~1.3 %
/// (perf, same load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    slipway_cli::main()
}
