//! The `reins` binary: the command line of the library (see [`reins::cli`]).

fn main() -> std::process::ExitCode {
    reins::cli::main()
}
