fn main() {
    std::process::exit(reins::cli::main());
}
