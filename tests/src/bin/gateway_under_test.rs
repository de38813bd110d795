// The same allocator as the benchmarks measure: under load glibc malloc took
// about a fifth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    gateway::cli::main()
}
