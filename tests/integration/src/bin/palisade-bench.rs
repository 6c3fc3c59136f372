//! `make bench`: Palisade against its side-by-side peers on this machine,
//! interleaved, medians, every figure a ratio against a peer of the same run.
//! Writes bench/results/<date>.md and .json. `--quick` is CI's smoke version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use palisade_integration::containerd::{build_image, Containerd, IMAGE, RUNTIME};
use palisade_integration::{palisade, probe, Scratch};
use serde_json::{json, Value};

const RUNC: &str = "io.containerd.runc.v2";

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A policy with `n` rules: file denials, egress allows (the benchmarked
/// destination among them) and process denials, none on the hot paths' files.
fn policy_with_rules(n: usize, allowed_port: u16) -> String {
    let mut s =
        String::from("apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n");
    if n == 0 {
        s.push_str("  mode: enforce\n");
        return s;
    }
    let third = (n / 3).max(1);
    s.push_str("  file:\n    rules:\n");
    for i in 0..third {
        s.push_str(&format!(
            "      - {{path: /nonexistent/d{}/f{i}, access: [read, write], action: deny}}\n",
            i % 50
        ));
    }
    s.push_str("  network:\n    egress:\n      default: deny\n      allow:\n");
    s.push_str(&format!(
        "        - {{cidr: 127.0.0.1/32, ports: [{allowed_port}], protocol: tcp}}\n"
    ));
    for i in 0..third {
        s.push_str(&format!(
            "        - {{cidr: 10.{}.{}.0/24, ports: [443], protocol: tcp}}\n",
            (i / 256) % 256,
            i % 256
        ));
    }
    s.push_str("  process:\n    deny:\n");
    for i in 0..(n.saturating_sub(2 * third).max(1)) {
        s.push_str(&format!("      - {{path: /nonexistent/bin/tool{i}}}\n"));
    }
    s
}

fn ns_per_op(cmd: &mut Command) -> f64 {
    let out = cmd.stderr(Stdio::null()).output().expect("bench command");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("ns_per_op "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no timing in output: {text}"))
}

struct HotPath {
    name: &'static str,
    args: Vec<String>,
}

fn hot_paths(s: &Scratch, quick: bool) -> Value {
    let port = 9917u16;
    let mut listener = Command::new(probe())
        .args(["bench-listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("listener");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let file = s.write("data/allowed.txt", "hello\n").display().to_string();
    let scale = if quick { 100 } else { 1 };
    let paths = [
        HotPath {
            name: "open+close",
            args: vec!["bench-open".into(), file, (100_000 / scale).to_string()],
        },
        HotPath {
            name: "tcp connect",
            args: vec![
                "bench-connect".into(),
                format!("127.0.0.1:{port}"),
                (100_000 / scale).to_string(),
            ],
        },
        HotPath {
            name: "execve (static busybox)",
            args: vec![
                "bench-exec".into(),
                "/bin/busybox".into(),
                (2_000 / scale).max(5).to_string(),
            ],
        },
    ];
    let sizes = [10usize, 1_000, 10_000];
    let policies: Vec<(usize, PathBuf)> = sizes
        .iter()
        .map(|n| {
            (
                *n,
                s.write(&format!("policy-{n}.yaml"), &policy_with_rules(*n, port)),
            )
        })
        .collect();
    let rounds = if quick { 1 } else { 9 };
    let mut results = serde_json::Map::new();
    for hp in &paths {
        let mut bare = Vec::new();
        let mut confined: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        // Interleaved: bare, 10, 1,000, 10,000 rules, then again.
        for _ in 0..rounds {
            bare.push(ns_per_op(Command::new(probe()).args(&hp.args)));
            for (n, pol) in &policies {
                let mut c = Command::new(palisade());
                c.arg("run")
                    .arg("--policy")
                    .arg(pol)
                    .arg("--events")
                    .arg(s.path("events.jsonl"))
                    .arg("--state-dir")
                    .arg(s.path("state"))
                    .arg("--")
                    .arg(probe())
                    .args(&hp.args);
                confined.entry(*n).or_default().push(ns_per_op(&mut c));
            }
        }
        let bare_m = median(bare);
        let mut row = serde_json::Map::new();
        row.insert("bare_ns".into(), json!(bare_m));
        for (n, v) in confined {
            let m = median(v);
            row.insert(format!("rules_{n}_ns"), json!(m));
            row.insert(format!("rules_{n}_ratio"), json!(m / bare_m));
            row.insert(format!("rules_{n}_added_ns"), json!(m - bare_m));
        }
        results.insert(hp.name.into(), Value::Object(row));
    }
    let _ = listener.kill();
    let _ = listener.wait();
    Value::Object(results)
}

fn timed_run(c: &Containerd, runtime: &str, id: &str, policy: Option<&str>) -> f64 {
    let start = Instant::now();

    let ann: Vec<(&str, &str)> = policy
        .map(|p| vec![("palisade.dev/policy-inline", p)])
        .unwrap_or_default();
    let o = c.run_with(runtime, id, &ann, &[], &["/bin/true"]);
    assert!(
        o.status.success(),
        "{id}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    start.elapsed().as_secs_f64() * 1000.0
}

fn container_start(c: &Containerd, quick: bool) -> Value {
    let pairs = if quick { 2 } else { 30 };
    let p10 = policy_with_rules(10, 1);
    let p1000 = policy_with_rules(1_000, 1);
    // runc given the same 1,000-rule annotation (which it ignores): what carrying
    // a large annotation through ctr and containerd costs any runtime.
    let variants: [(&str, &str, Option<&str>); 5] = [
        ("runc", RUNC, None),
        ("runc, 1,000-rule annotation", RUNC, Some(&p1000)),
        ("palisade, no policy", RUNTIME, None),
        ("palisade, 10 rules", RUNTIME, Some(&p10)),
        ("palisade, 1,000 rules", RUNTIME, Some(&p1000)),
    ];
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut launched: BTreeMap<String, (&str, time::OffsetDateTime)> = BTreeMap::new();
    for i in 0..pairs {
        let mut runc_ms = 0.0;
        for (name, runtime, policy) in &variants {
            let id = format!("bench-{i}-{}", name.len());
            launched.insert(id.clone(), (*name, time::OffsetDateTime::now_utc()));
            let ms = timed_run(c, runtime, &id, *policy);
            if *name == "runc" {
                runc_ms = ms;
            } else {
                ratios.entry(name).or_default().push(ms / runc_ms);
            }
            times.entry(name).or_default().push(ms);
        }
    }
    let mut out = serde_json::Map::new();
    // Launch -> confined: the `confined` event's time against the moment `ctr run`
    // was started for that container (so it includes ctr, containerd and the shim's
    // own start, which runc's shim pays too, as well as policy compile and attach).
    let mut to_confined: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ev in c.events() {
        if ev["kind"] != "confined" {
            continue;
        }
        let (Some(id), Some(at)) = (ev["container_id"].as_str(), ev["time"].as_str()) else {
            continue;
        };
        let Some((variant, start)) = launched.get(id) else {
            continue;
        };
        let Ok(at) =
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        else {
            continue;
        };
        to_confined
            .entry(*variant)
            .or_default()
            .push((at - *start).as_seconds_f64() * 1000.0);
    }
    for (name, _, _) in &variants {
        let mut row = serde_json::Map::new();
        row.insert(
            "median_ms".into(),
            json!(median(times.remove(name).unwrap_or_default())),
        );
        if let Some(r) = ratios.remove(name) {
            row.insert("per_pair_ratio_median".into(), json!(median(r)));
        }
        if let Some(v) = to_confined.remove(name) {
            row.insert("launch_to_confined_event_ms".into(), json!(median(v)));
        }
        out.insert((*name).into(), Value::Object(row));
    }
    out.insert("pairs".into(), json!(pairs));
    Value::Object(out)
}

/// A `Key:  N kB` line of a /proc/<pid> file.
fn proc_kib(pid: i32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn rss_kib(pid: i32) -> u64 {
    proc_kib(pid, "status", "VmRSS:")
}

/// Proportional set size: pages shared between shims (the binary's text) are
/// split among them, which is what each container really costs a node.
fn pss_kib(pid: i32) -> u64 {
    proc_kib(pid, "smaps_rollup", "Pss:")
}

fn shim_pids(binary: &str, namespace: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = String::from_utf8_lossy(
            &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
        )
        .replace('\0', " ");
        if (cmd.starts_with(binary) || cmd.contains(&format!("/{binary} ")))
            && cmd.contains(namespace)
        {
            pids.push(pid);
        }
    }
    pids
}

fn memory(c: &Containerd, quick: bool) -> Value {
    let policy = policy_with_rules(10, 1);
    let mut out = serde_json::Map::new();
    for count in if quick { vec![1] } else { vec![1, 10] } {
        let mut row = serde_json::Map::new();
        for (name, runtime, binary) in [
            ("runc", RUNC, "containerd-shim-runc-v2"),
            ("palisade", RUNTIME, "containerd-shim-palisade-v2"),
        ] {
            let mut ids = Vec::new();
            for i in 0..count {
                let id = format!("mem-{name}-{count}-{i}");
                let mut args = vec!["run", "-d", "--runtime", runtime];
                let ann = format!("palisade.dev/policy-inline={policy}");
                if runtime == RUNTIME {
                    args.extend(["--annotation", &ann]);
                }
                args.extend([IMAGE, &id, "sleep", "600"]);
                let o = c.ctr(&args);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                ids.push(id);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
            let pids = shim_pids(binary, &c.namespace);
            let total: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
            row.insert(
                format!("{name}_rss_kib_per_container"),
                json!(total as f64 / count as f64),
            );
            let total_pss: u64 = pids.iter().map(|p| pss_kib(*p)).sum();
            row.insert(
                format!("{name}_pss_kib_per_container"),
                json!(total_pss as f64 / count as f64),
            );
            row.insert(format!("{name}_shims"), json!(pids.len()));
            for id in ids {
                let _ = c.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = c.ctr(&["tasks", "delete", &id]);
                let _ = c.ctr(&["containers", "delete", &id]);
            }
        }
        let ratio = |metric: &str| {
            row[&format!("palisade_{metric}_kib_per_container")]
                .as_f64()
                .unwrap_or(0.0)
                / row[&format!("runc_{metric}_kib_per_container")]
                    .as_f64()
                    .unwrap_or(1.0)
        };
        let (rss, pss) = (ratio("rss"), ratio("pss"));
        row.insert("ratio".into(), json!(rss));
        row.insert("pss_ratio".into(), json!(pss));
        out.insert(format!("{count} container(s)"), Value::Object(row));
    }
    Value::Object(out)
}

/// Criterion's own medians for the policy compile bench, if it ran.
fn compile_times() -> Value {
    let mut out = serde_json::Map::new();
    for n in ["10", "1000", "10000"] {
        for stage in ["parse+validate", "compile"] {
            let p = Path::new("target/criterion/compile")
                .join(stage)
                .join(n)
                .join("new/estimates.json");
            if let Ok(text) = std::fs::read_to_string(&p) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    out.insert(
                        format!("{stage} {n} rules (ms)"),
                        json!(v["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN) / 1e6),
                    );
                }
            }
        }
    }
    Value::Object(out)
}

fn markdown(v: &Value) -> String {
    let mut s = format!("# Palisade benchmarks, {}\n\nMedians of interleaved runs on this machine; ratios are against the peer measured in the same run.\n", v["date"].as_str().unwrap_or(""));
    for (section, body) in v.as_object().into_iter().flatten() {
        if section == "date" || section == "quick" {
            continue;
        }
        s.push_str(&format!(
            "\n## {section}\n\n| case | figures |\n| --- | --- |\n"
        ));
        for (case, figures) in body.as_object().into_iter().flatten() {
            let f = match figures {
                Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| match v.as_f64() {
                        Some(x) => format!("{k} {x:.3}"),
                        None => format!("{k} {v}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            s.push_str(&format!("| {case} | {f} |\n"));
        }
    }
    s
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let s = Scratch::new("bench");
    println!("hot paths under `palisade run` (quick: {quick})...");
    let hot = hot_paths(&s, quick);
    println!("private containerd: start to exit, shim memory...");
    let c = Containerd::start("bench");
    c.import_image(&build_image(&c.dir, None));
    let start = container_start(&c, quick);
    let mem = memory(&c, quick);
    drop(c);
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let report = json!({
        "date": date,
        "quick": quick,
        "container start to exit (ctr run --rm /bin/true)": start,
        "hot paths inside a confined workload (ns per operation)": hot,
        "shim resident memory": mem,
        "policy compile (criterion)": compile_times(),
    });
    let dir = Path::new("bench/results");
    std::fs::create_dir_all(dir).expect("bench/results");
    let stem = if quick {
        "smoke".to_string()
    } else {
        date.get(..10).unwrap_or("today").to_string()
    };
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_vec_pretty(&report).expect("json"),
    )
    .expect("write json");
    let md = markdown(&report);
    std::fs::write(dir.join(format!("{stem}.md")), &md).expect("write md");
    println!("{md}");
}
