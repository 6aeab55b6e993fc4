//! The `minikafka` binary: a thin layer of flags over the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
