//! The `hawkey` binary: hawkey's master with the built-in HTTP app.

fn main() -> std::process::ExitCode {
    hawkey::main(hawkey::builtin::Builtin)
}
