//! Terminal mode (`ctr run -t`, `kubectl exec -t`): libcontainer sends the
//! pty master over a unix socket; the shim copies between it and containerd's
//! FIFOs and applies window sizes.

use std::fs::{File, OpenOptions};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use sha2::{Digest, Sha256};

/// The pty master once the container's process sent it.
#[derive(Default)]
pub struct Console {
    master: Mutex<Option<Arc<File>>>,
}

/// A socket path short enough for sun_path (108 bytes) whatever the ids are.
pub fn socket_path(state_dir: &Path, key: &str) -> PathBuf {
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
    state_dir.join("console").join(format!("{hash}.sock"))
}

impl Console {
    /// Listens on `path`; a thread receives the master and wires it to the FIFOs.
    pub fn listen(path: &Path, stdin: String, stdout: String) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("console socket {}", path.display()))?;
        let console = Arc::new(Self::default());
        let c = console.clone();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let result = (|| -> Result<()> {
                let (stream, _) = listener.accept()?;
                let master = receive_fd(stream.as_raw_fd())?;
                let master = Arc::new(File::from(master));
                *c.master.lock().unwrap_or_else(|e| e.into_inner()) = Some(master.clone());
                copy_out(master.clone(), stdout);
                copy_in(master, stdin);
                Ok(())
            })();
            let _ = std::fs::remove_file(&path);
            if let Err(e) = result {
                tracing::warn!(error = %e, "console");
            }
        });
        Ok(console)
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        let master = self
            .master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let master = master.ok_or_else(|| anyhow!("no terminal yet"))?;
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r != 0 {
            return Err(anyhow!(
                "resize terminal: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

fn receive_fd(sock: i32) -> Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut space), MsgFlags::empty())?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(anyhow!("no pty master received"))
}

fn copy_out(master: Arc<File>, stdout: String) {
    if stdout.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        let Ok(mut out) = OpenOptions::new().write(true).open(&stdout) else {
            return;
        };
        let mut buf = [0u8; 8192];
        // EIO once the last slave closes: the process ended.
        while let Ok(n) = (&*master).read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}

fn copy_in(master: Arc<File>, stdin: String) {
    if stdin.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        let Ok(mut input) = File::open(&stdin) else {
            return;
        };
        let mut buf = [0u8; 8192];
        while let Ok(n) = input.read(&mut buf) {
            if n == 0 || (&*master).write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}
