//! The `session-gateway` binary; everything happens in [`session_gateway::cli`].

fn main() -> std::process::ExitCode {
    session_gateway::cli::main()
}
