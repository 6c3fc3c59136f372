//! containerd-shim-palisade-v2: containerd's shim v2 for confined containers
//! (runtime type io.containerd.palisade.v2). Whatever forks containers runs in
//! the `palisade` binary beside it, as a single-threaded helper.

use palisade_shim::service;

fn main() {
    containerd_shim::run::<service::Service>(service::RUNTIME_ID, None);
}
