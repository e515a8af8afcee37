//! The gateway binary, built inside the end-to-end package so its tests get
//! `CARGO_BIN_EXE_gateway-under-test` and cargo rebuilds it whenever the
//! gateway changes. Same code as `session-gateway`.

fn main() -> std::process::ExitCode {
    session_gateway::cli::main()
}
