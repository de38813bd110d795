//! The `gateway` binary: the allocator in service and the command line
//! ([`gateway_cli`]), nothing else.

// The one the benchmarks measure (`gateway::Allocator`).
#[global_allocator]
static ALLOCATOR: gateway::Allocator = gateway::Allocator {};

fn main() {
    gateway_cli::main()
}
