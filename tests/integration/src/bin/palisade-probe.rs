//! The attacker inside a confined workload. Each verb tries one thing and
//! exits 0 when it worked, or prints the error and exits 1. Tests run it
//! without a policy (the attack must work) and with one (it must not).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    println!("DENIED {what}: {e}");
    std::process::exit(1)
}

/// Benchmarks run on CPU 0 and their loopback listener on CPU 1: whether
/// client and server share a core otherwise changes a connect's cost by more
/// than anything being measured.
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Test and demo listeners on loopback: accept and close, forever.
fn listen(addr: &str) {
    let l = std::net::TcpListener::bind(addr).unwrap_or_else(|e| fail("listen", e));
    // std listens with a backlog of 128; a connect loop on the other core
    // outruns that. listen() again only raises the queue (to somaxconn).
    // SAFETY: listen(2) on a socket this function owns.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 4096) };
    for c in l.incoming() {
        drop(c);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    if arg(0).starts_with("bench-") {
        pin_to_cpu(0);
    }
    match arg(0).as_str() {
        "read" => match std::fs::File::open(arg(1)).and_then(|mut f| {
            let mut s = String::new();
            f.read_to_string(&mut s).map(|_| s)
        }) {
            Ok(s) => println!("OK read {} bytes", s.len()),
            Err(e) => fail("read", e),
        },
        "write" => match std::fs::OpenOptions::new()
            .append(true)
            .open(arg(1))
            .and_then(|mut f| f.write_all(b"attacker ALL=(ALL) NOPASSWD: ALL\n"))
        {
            Ok(()) => println!("OK write"),
            Err(e) => fail("write", e),
        },
        "connect" => {
            let addr: SocketAddr = arg(1).parse().unwrap_or_else(|e| fail("address", e));
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(_) => println!("OK connect {addr}"),
                Err(e) => fail("connect", e),
            }
        }
        "sendto" => {
            let addr: SocketAddr = arg(1).parse().unwrap_or_else(|e| fail("address", e));
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
            match sock.send_to(b"exfil", addr) {
                Ok(_) => println!("OK sendto {addr}"),
                Err(e) => fail("sendto", e),
            }
        }
        "raw-socket" => {
            // SAFETY: plain socket(2) call; the fd is closed right after.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            if fd < 0 {
                fail("raw socket", std::io::Error::last_os_error());
            }
            // SAFETY: fd was just returned by socket(2).
            unsafe { libc::close(fd) };
            println!("OK raw socket");
        }
        "euid" => {
            let euid = nix::unistd::geteuid();
            println!("EUID {euid}");
            if !euid.is_root() {
                std::process::exit(1);
            }
        }
        "setuid" => {
            let uid = nix::unistd::Uid::from_raw(arg(1).parse().unwrap_or(65534));
            match nix::unistd::setresuid(uid, uid, uid) {
                Ok(()) => println!("OK setuid {uid}"),
                Err(e) => fail("setuid", e),
            }
        }
        "exec" => {
            let e = std::process::Command::new(arg(1)).args(&args[2..]).exec();
            fail("exec", e);
        }
        // Fileless execution: the program's bytes in a memfd, run with fexecve.
        "memfd-exec" => {
            let bytes = std::fs::read(arg(1)).unwrap_or_else(|e| fail("read", e));
            let name = c"payload";
            let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MemFdCreateFlag::empty())
                .unwrap_or_else(|e| fail("memfd_create", e));
            let mut f = std::fs::File::from(fd);
            f.write_all(&bytes)
                .unwrap_or_else(|e| fail("write memfd", e));
            exec_fd(&f, &args[1..], false);
        }
        // The same file reached through /proc/self/fd/N instead of its path.
        "fd-exec" => {
            let f = std::fs::File::open(arg(1)).unwrap_or_else(|e| fail("open", e));
            exec_fd(&f, &args[1..], true);
        }
        "ptrace" => {
            // SAFETY: PTRACE_TRACEME takes no pointers.
            let r = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            if r != 0 {
                fail("ptrace", std::io::Error::last_os_error());
            }
            println!("OK ptrace");
        }
        "bench-open" => {
            // open+close of one file, the hot path Landlock sits on.
            let path = arg(1);
            let n: u32 = arg(2).parse().unwrap_or(100_000);
            let start = std::time::Instant::now();
            for _ in 0..n {
                drop(std::fs::File::open(&path).unwrap_or_else(|e| fail("open", e)));
            }
            println!(
                "ns_per_op {}",
                start.elapsed().as_nanos() / u128::from(n.max(1))
            );
        }
        "bench-connect" => {
            // TCP connect to a loopback listener; RST on close so ports are not exhausted.
            // Each connect is timed and the median reported: a SYN the listener's queue
            // drops costs a 1 s retransmit, which would swamp a mean.
            let addr: SocketAddr = arg(1).parse().unwrap_or_else(|e| fail("address", e));
            let n: u32 = arg(2).parse().unwrap_or(100_000);
            let mut samples: Vec<u64> = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let t = std::time::Instant::now();
                let s = TcpStream::connect(addr).unwrap_or_else(|e| fail("connect", e));
                samples.push(t.elapsed().as_nanos() as u64);
                let _ = nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::Linger,
                    &libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    },
                );
            }
            samples.sort_unstable();
            println!("ns_per_op {}", samples.get(samples.len() / 2).unwrap_or(&0));
        }
        "bench-exec" => {
            // fork+execve+wait of a small static binary.
            let n: u32 = arg(2).parse().unwrap_or(1000);
            let start = std::time::Instant::now();
            for _ in 0..n {
                let st = std::process::Command::new(arg(1))
                    .arg("true")
                    .status()
                    .unwrap_or_else(|e| fail("exec", e));
                if !st.success() {
                    fail("exec", "non-zero exit");
                }
            }
            println!(
                "ns_per_op {}",
                start.elapsed().as_nanos() / u128::from(n.max(1))
            );
        }
        "bench-listen" => {
            pin_to_cpu(1);
            listen(&arg(1));
        }
        "listen" => listen(&arg(1)),
        "later" => {
            // For the supervisor-crash test: wait, then try, and record the outcome.
            std::thread::sleep(Duration::from_millis(arg(1).parse().unwrap_or(1000)));
            let addr: SocketAddr = arg(2).parse().unwrap_or_else(|e| fail("address", e));
            let outcome = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(_) => "OK".to_string(),
                Err(e) => format!("DENIED {e}"),
            };
            let _ = std::fs::write(arg(3), &outcome);
            std::thread::sleep(Duration::from_secs(600));
        }
        other => {
            eprintln!("palisade-probe: unknown verb `{other}`");
            std::process::exit(2);
        }
    }
}

/// Executes an open file by descriptor: fexecve, or execve of its /proc/self/fd link.
fn exec_fd(f: &std::fs::File, argv: &[String], through_proc: bool) -> ! {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_else(|e| fail("argument", e)))
        .collect();
    let env: Vec<CString> = Vec::new();
    let e = if !through_proc {
        nix::unistd::fexecve(f.as_raw_fd(), &cargs, &env)
    } else {
        let path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .unwrap_or_else(|e| fail("path", e));
        nix::unistd::execve(&path, &cargs, &env)
    };
    match e {
        Err(e) => fail("exec", e),
        Ok(never) => match never {},
    }
}
