// Included by the build.rs of every crate that links libtorch (dp, models, actors, runtime):
// one copy of how their binaries and tests find it.
//
// An rpath to libtorch, so nothing sets LD_LIBRARY_PATH: torch-sys (a direct dependency,
// `links = "tch"`) tells us where it linked libtorch from.
//
// With the crate's `cuda` feature, libtorch's CUDA library is linked whether or not we call
// into it: nothing of ours names a CUDA symbol, so the linker's --as-needed would drop
// libtorch_cuda and libtorch would then see no GPU at all.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let cuda = std::path::Path::new(&lib).join("libtorch_cuda.so");
        if !cuda.exists() {
            panic!(
                "feature `cuda` needs a CUDA build of libtorch, but {} does not exist \
                 (LIBTORCH points at a CPU-only libtorch; deploy/gpu-check.sh installs one)",
                cuda.display()
            );
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
