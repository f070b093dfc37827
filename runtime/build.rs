// libtorch's rpath, and its CUDA library with the `cuda` feature: see the included file.
include!("../build-support/link_libtorch.rs");

fn main() {
    link_libtorch();
}
