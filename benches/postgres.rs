//! Placeholder: the benchmark is being written.

fn main() {
    println!("not yet measured");
}
