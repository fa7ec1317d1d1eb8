//! The `slipway` binary: a thin shell over [`slipway_cli`], which owns argument parsing.

fn main() -> std::process::ExitCode {
    slipway_cli::main()
}
