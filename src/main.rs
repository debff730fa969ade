mod config;
mod mode;
fn main() {}
