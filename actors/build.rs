// Let every binary and test of this crate find libtorch at run time without LD_LIBRARY_PATH:
// torch-sys (a direct dependency, `links = "tch"`) tells us where it linked libtorch from.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
