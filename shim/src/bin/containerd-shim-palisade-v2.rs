//! containerd-shim-palisade-v2: containerd's shim v2 for confined containers
//! (runtime type io.containerd.palisade.v2). With `palisade-runtime` as its
//! first argument it is the single-threaded runtime helper the shim runs.

use palisade_shim::{runtime, service};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(runtime::VERB) {
        palisade_enforce::bpf::route_libbpf_logs();
        std::process::exit(runtime::main(&args[2..]));
    }
    containerd_shim::run::<service::Service>(service::RUNTIME_ID, None);
}
