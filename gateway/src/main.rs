//! The `session-gateway` binary; everything happens in [`session_gateway::cli`].

// A proxy allocates and frees many small, short-lived buffers per request
// (header maps, Bytes, futures); under load glibc malloc took about a fifth
// of the gateway's CPU time (docs/performance.md). mimalloc's thread-local
// free lists make that a small fraction.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    session_gateway::cli::main()
}
