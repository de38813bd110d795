#[global_allocator]
static ALLOCATOR: gateway::Allocator = gateway::Allocator {};

fn main() {
    gateway_cli::main()
}
