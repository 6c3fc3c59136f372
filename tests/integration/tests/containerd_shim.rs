//! containerd-shim-palisade-v2 under a private containerd, driven by ctr.

use std::sync::{Mutex, OnceLock};

use palisade_integration::containerd::{build_image, Containerd};
use palisade_integration::*;

/// One containerd and one image for the whole file; tests take turns.
fn ctrd() -> std::sync::MutexGuard<'static, Containerd> {
    static CTRD: OnceLock<Mutex<Containerd>> = OnceLock::new();
    CTRD.get_or_init(|| {
        let c = Containerd::start("shim");
        let archive = build_image(&c.dir, None);
        c.import_image(&archive);
        Mutex::new(c)
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

fn out(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn stdout_and_exit_code_reach_ctr() {
    let c = ctrd();
    let o = c.run(
        "exit-code",
        &[],
        &[],
        &["sh", "-c", "echo hello from palisade; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(stdout(&o).contains("hello from palisade"), "{}", out(&o));
}
