fn main() -> std::process::ExitCode {
    reins::cli::main()
}
