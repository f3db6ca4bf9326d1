// Nothing to build: see Cargo.toml.
fn main() {}
