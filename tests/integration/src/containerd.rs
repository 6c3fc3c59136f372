//! A private containerd for tests (own root, state, socket; never the
//! system's), a test image built from busybox-static, and `ctr` helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{bin_dir, probe};

pub const IMAGE: &str = "docker.io/library/palisade-test:latest";
/// The same image, configured to run as nobody (image config `User`).
pub const IMAGE_NOBODY: &str = "docker.io/library/palisade-test-nobody:latest";
/// The pod sandbox image for CRI tests: the same rootfs, sleeping.
pub const PAUSE_IMAGE: &str = "docker.io/library/palisade-pause:latest";
pub const RUNTIME: &str = "io.containerd.palisade.v2";

pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub namespace: String,
    child: Child,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files a dynamically linked binary needs, from ldd.
fn shared_libraries(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

fn copy_into(rootfs: &Path, host_path: &Path, image_path: &Path) {
    let dest = rootfs.join(image_path.strip_prefix("/").unwrap_or(image_path));
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    std::fs::copy(host_path, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", host_path.display()));
}

/// Writes an OCI image layout archive with busybox, the probe and a few
/// files the attacks go after; `label` ends up as an image config label.
pub fn build_image(dir: &Path, label_policy: Option<&str>) -> PathBuf {
    build_named_image(dir, IMAGE, None, label_policy)
}

/// As `build_image`, with another name and optionally a `User` in the image config.
pub fn build_named_image(
    dir: &Path,
    name: &str,
    user: Option<&str>,
    label_policy: Option<&str>,
) -> PathBuf {
    let dir = dir.join(name.rsplit('/').next().unwrap_or("image").replace(':', "-"));
    std::fs::create_dir_all(&dir).expect("image dir");
    let dir = dir.as_path();
    let rootfs = dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    copy_into(
        &rootfs,
        Path::new("/bin/busybox"),
        Path::new("/bin/busybox"),
    );
    for applet in [
        "sh", "cat", "echo", "id", "sleep", "nc", "wget", "ls", "kill", "true", "false", "env",
        "su",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    let probe_bin = probe();
    copy_into(&rootfs, &probe_bin, Path::new("/usr/local/bin/probe"));
    copy_into(&rootfs, &probe_bin, Path::new("/usr/local/bin/app"));
    copy_into(&rootfs, &probe_bin, Path::new("/usr/local/bin/suid-helper"));
    {
        use std::os::unix::fs::PermissionsExt;
        let suid = rootfs.join("usr/local/bin/suid-helper");
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    }
    for lib in shared_libraries(&probe_bin) {
        let real = std::fs::canonicalize(&lib).expect("lib");
        copy_into(&rootfs, &real, &lib);
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        (
            "etc/shadow",
            "root:$6$palisade-test-secret:19000:0:99999:7:::\n",
        ),
        ("etc/sudoers", "root ALL=(ALL) ALL\n"),
        ("var/run/secrets/token", "s3cr3t-service-account-token\n"),
    ] {
        let p = rootfs.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    std::fs::create_dir_all(rootfs.join("tmp")).expect("tmp");
    let layout = dir.join("layout");
    let _ = std::fs::remove_dir_all(&layout);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let layer = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--sort=name",
                "--mtime=@0",
                "-C",
            ])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."),
        "tar layer",
    );
    let layer_bytes = std::fs::read(&layer).expect("layer");
    let layer_digest = sha256_hex(&layer_bytes);
    std::fs::write(blobs.join(&layer_digest), &layer_bytes).expect("blob");
    let mut labels = serde_json::Map::new();
    if let Some(p) = label_policy {
        labels.insert("palisade.dev/policy".into(), p.into());
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin:/bin"],
            "Cmd": if name == PAUSE_IMAGE { vec!["/bin/sleep", "2147483647"] } else { vec!["/bin/sh"] },
            "Labels": labels,
            "User": user.unwrap_or(""),
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config");
    let config_digest = sha256_hex(&config_bytes);
    std::fs::write(blobs.join(&config_digest), &config_bytes).expect("blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer_bytes.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest");
    let manifest_digest = sha256_hex(&manifest_bytes);
    std::fs::write(blobs.join(&manifest_digest), &manifest_bytes).expect("blob");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_bytes.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let archive = dir.join("image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."),
        "tar image",
    );
    archive
}

impl Containerd {
    /// Starts containerd (CRI disabled) with the Palisade shim on its PATH and
    /// a node config pointing events, state and policies into `dir`.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, false)
    }

    /// With the CRI plugin and a `palisade` runtime handler, as kubelet uses it.
    pub fn start_cri(name: &str) -> Self {
        let c = Self::start_with(name, true);
        c.import_image(&build_image(&c.dir, None));
        c.import_image(&build_named_image(&c.dir, PAUSE_IMAGE, None, None));
        c
    }

    fn start_with(name: &str, cri: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("palisade-ctrd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("dir");
        std::fs::create_dir_all(dir.join("cni")).expect("dir");
        let socket = dir.join("containerd.sock");
        let plugins = if cri {
            format!(
                r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # CAP_SYS_RESOURCE is not in this machine's bounding set.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{0}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.palisade]
      runtime_type = "{RUNTIME}"
      pod_annotations = ["palisade.dev/*"]
      container_annotations = ["palisade.dev/*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.palisade.options]
        ConfigPath = "{0}/palisade.toml"
"#,
                dir.display()
            )
        } else {
            String::new()
        };
        let disabled = if cri {
            ""
        } else {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
        };
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{disabled}\n[grpc]\n  address = \"{1}\"\n\n[ttrpc]\n  address = \"{1}.ttrpc\"\n{plugins}",
            dir.display(),
            socket.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("config");
        std::fs::write(
            dir.join("palisade.toml"),
            format!(
                "policy_dir = \"{0}/policies\"\nevents_path = \"{0}/events.jsonl\"\nstate_dir = \"{0}/palisade-state\"\n",
                dir.display()
            ),
        )
        .expect("node config");
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .env("PALISADE_CONFIG", dir.join("palisade.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let c = Self {
            dir,
            socket,
            // CRI keeps its containers and images in k8s.io.
            namespace: if cri {
                "k8s.io".into()
            } else {
                format!("pal-it-{}", std::process::id())
            },
            child,
        };
        let start = Instant::now();
        while c.ctr(&["version"]).status.code() != Some(0) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not come up: see {}",
                c.dir.join("containerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg("ctr")
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    pub fn import_image(&self, archive: &Path) {
        let out = self.ctr(&["images", "import", &archive.display().to_string()]);
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.events_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("palisade-state")
    }

    /// `ctr run --rm` with the Palisade runtime; annotations as `k=v`.
    pub fn run(
        &self,
        id: &str,
        annotations: &[(&str, &str)],
        extra: &[&str],
        cmd: &[&str],
    ) -> Output {
        self.run_with(RUNTIME, id, annotations, extra, cmd)
    }

    /// `ctr run --rm` with any runtime, e.g. `io.containerd.runc.v2` for the side-by-side peer.
    pub fn run_with(
        &self,
        runtime: &str,
        id: &str,
        annotations: &[(&str, &str)],
        extra: &[&str],
        cmd: &[&str],
    ) -> Output {
        self.run_image(runtime, IMAGE, id, annotations, extra, cmd)
    }

    pub fn run_image(
        &self,
        runtime: &str,
        image: &str,
        id: &str,
        annotations: &[(&str, &str)],
        extra: &[&str],
        cmd: &[&str],
    ) -> Output {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--runtime".into(),
            runtime.into(),
        ];
        for (k, v) in annotations {
            args.push("--annotation".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(image.into());
        args.push(id.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&refs)
    }

    /// SIGSTOP/SIGCONT containerd, to see what holds while nothing supervises a container.
    pub fn pause(&self, paused: bool) {
        let sig = if paused {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    pub fn shim_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmd.contains("containerd-shim-palisade-v2") && cmd.contains(&self.namespace) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first, so shims exit and release what they hold.
        let tasks = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.ctr(&["tasks", "delete", "-f", id]);
        }
        let containers = self.ctr(&["containers", "ls", "-q"]);
        for id in String::from_utf8_lossy(&containers.stdout).lines() {
            let _ = self.ctr(&["containers", "delete", id]);
        }
        for pid in self.shim_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        // Whatever is still mounted under our root goes, deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        // The runtimes (runc as well as the shim) make a parent cgroup for the
        // namespace in every hierarchy and leave it, as runc does for `default`.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_empty_cgroups(&hierarchy.path().join(&self.namespace));
        }
        remove_empty_cgroups(&Path::new("/sys/fs/cgroup").join(&self.namespace));
        if std::env::var_os("PALISADE_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// rmdir of a cgroup and its children, deepest first; one that still has
/// processes or children refuses, so only what is unused goes.
fn remove_empty_cgroups(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_cgroups(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// One containerd shared by the tests of a test binary, which take turns.
/// Statics are never dropped, so the first use registers an exit hook that
/// drops it: the daemon, its shims, mounts and directory go when the test
/// binary exits, whether its tests passed or not.
pub struct Shared {
    cell: Mutex<Option<Containerd>>,
    started: Once,
}

/// The shared containerd, held for one test.
pub struct SharedGuard(MutexGuard<'static, Option<Containerd>>);

impl std::ops::Deref for SharedGuard {
    type Target = Containerd;
    fn deref(&self) -> &Containerd {
        self.0
            .as_ref()
            .expect("the shared containerd is only taken at exit")
    }
}

static LIVE: Mutex<Vec<&'static Mutex<Option<Containerd>>>> = Mutex::new(Vec::new());

extern "C" fn drop_shared_at_exit() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for cell in live {
        drop(cell.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

impl Shared {
    pub const fn new() -> Self {
        Self {
            cell: Mutex::new(None),
            started: Once::new(),
        }
    }

    pub fn get(&'static self, start: impl FnOnce() -> Containerd) -> SharedGuard {
        self.started.call_once(|| {
            *self.cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(start());
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if live.is_empty() {
                // SAFETY: registers a plain function that captures nothing.
                unsafe { libc::atexit(drop_shared_at_exit) };
            }
            live.push(&self.cell);
        });
        SharedGuard(self.cell.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}
