//! A component of the wrong world (`wasi:cli/command`): `wshost serve` must refuse it.
fn main() {
    println!("I am not a wshost handler");
}
