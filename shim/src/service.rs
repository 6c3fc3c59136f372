//! containerd's shim v2 Task service. It translates requests; `Container`
//! owns each container's lifecycle and confinement.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use containerd_shim::api;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, context::Context};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{DeleteResponse, ExitSignal, Flags, TtrpcContext, TtrpcResult};
use palisade_enforce::host::{self, HostLayers};

use crate::container::{self, Container, CreateRequest, Exit, NodeSettings, Status, StdioPaths};

pub const RUNTIME_ID: &str = "io.containerd.palisade.v2";
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

#[derive(Clone)]
pub struct Service {
    namespace: String,
    /// containerd's gRPC socket (`-address`).
    address: String,
    id: String,
    exit: Arc<ExitSignal>,
    settings: NodeSettings,
    config_error: Option<String>,
    containers: Arc<Mutex<HashMap<String, Arc<Container>>>>,
    host: Arc<OnceLock<HostLayers>>,
    publisher: Option<Arc<RemotePublisher>>,
}

fn rpc_error(e: impl std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::UNKNOWN, e.to_string()))
}

fn not_found(id: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        ttrpc::Code::NOT_FOUND,
        format!("container {id} not found"),
    ))
}

fn timestamp(at: time::OffsetDateTime) -> MessageField<Timestamp> {
    let mut t = Timestamp::new();
    t.seconds = at.unix_timestamp();
    t.nanos = at.nanosecond() as i32;
    MessageField::some(t)
}

impl Service {
    fn host(&self) -> &HostLayers {
        self.host
            .get_or_init(|| host::detect_cached(&self.settings.state_dir))
    }

    fn get(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Some(p) = &self.publisher {
            if let Err(e) = p.publish(Context::default(), topic, &self.namespace, event) {
                tracing::warn!(topic, error = %e, "publish event");
            }
        }
    }

    /// Publishes TaskExit once the process ends; the Wait RPC blocks on the same exit.
    fn publish_exit_later(&self, c: Arc<Container>, exec_id: String) {
        let svc = self.clone();
        std::thread::spawn(move || {
            let proc = c.process(&exec_id);
            let Some(proc) = proc else { return };
            let exit = proc.wait();
            let ev = TaskExit {
                container_id: c.id.clone(),
                id: if exec_id.is_empty() {
                    c.id.clone()
                } else {
                    exec_id
                },
                pid: proc.pid() as u32,
                exit_status: exit.code as u32,
                exited_at: timestamp(exit.at),
                ..Default::default()
            };
            svc.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(ev));
        });
    }
}

/// containerd's runtime options (`runtimeoptions.v1.Options`, field 2:
/// `config_path`) arrive on the stdin of `shim start` as a protobuf Any.
fn read_config_path_option() -> Result<Option<PathBuf>, containerd_shim::Error> {
    use containerd_shim::protos::protobuf::well_known_types::any::Any;
    use containerd_shim::protos::protobuf::{CodedInputStream, Message};
    use std::io::Read;
    let mut buf = Vec::new();
    // No options: containerd closes stdin right away.
    let _ = std::io::stdin().read_to_end(&mut buf);
    if buf.is_empty() {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| {
        containerd_shim::Error::InvalidArgument(format!("runtime options: {e}"))
    };
    let any = Any::parse_from_bytes(&buf).map_err(|e| bad(&e))?;
    let mut input = CodedInputStream::from_bytes(&any.value);
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| bad(&e))? {
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field == 2 && wire_type == 2 {
            let path = input.read_string().map_err(|e| bad(&e))?;
            return Ok((!path.is_empty()).then(|| PathBuf::from(path)));
        }
        let wire = containerd_shim::protos::protobuf::rt::WireType::new(wire_type)
            .ok_or_else(|| bad(&"unknown wire type"))?;
        input.skip_field(wire).map_err(|e| bad(&e))?;
    }
    Ok(None)
}

/// Reads the bundle's annotations to group a pod's containers into one shim, as the runc shim does.
fn grouping_id(id: &str) -> String {
    std::fs::read("config.json")
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["annotations"][SANDBOX_ID].as_str().map(str::to_string))
        .unwrap_or_else(|| id.to_string())
}

impl containerd_shim::Shim for Service {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut containerd_shim::Config) -> Self {
        // A broken node config refuses every container (fail closed) instead of running defaults.
        let (settings, config_error) = match crate::config::load(None) {
            Ok(c) => (c.settings(), None),
            Err(e) => (NodeSettings::default(), Some(e)),
        };
        Service {
            namespace: args.namespace.clone(),
            address: args.address.clone(),
            id: args.id.clone(),
            exit: Arc::new(ExitSignal::default()),
            settings,
            config_error,
            containers: Arc::new(Mutex::new(HashMap::new())),
            host: Arc::new(OnceLock::new()),
            publisher: None,
        }
    }

    fn start_shim(
        &mut self,
        opts: containerd_shim::StartOpts,
    ) -> Result<String, containerd_shim::Error> {
        let grouping = grouping_id(&opts.id);
        // A pod's shim may already be serving: reuse it.
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        if containerd_shim::util::connect(&address).is_ok() {
            return Ok(address);
        }
        let config_path = read_config_path_option()?;
        if let Some(path) = &config_path {
            // A broken node configuration fails the start, with the reason.
            crate::config::load(Some(path)).map_err(containerd_shim::Error::InvalidArgument)?;
        }
        let path_text = config_path.map(|p| p.display().to_string());
        let vars: Vec<(&str, &str)> = path_text
            .as_deref()
            .map(|p| vec![(crate::config::CONFIG_ENV, p)])
            .unwrap_or_default();
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, vars)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        if let Some(p) = container::load_persisted(&self.settings, &self.namespace, &self.id) {
            container::cleanup(&p, &self.settings);
        }
        let mut resp = DeleteResponse::new();
        resp.exit_status = 137;
        resp.exited_at = timestamp(time::OffsetDateTime::now_utc());
        Ok(resp)
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let mut s = self.clone();
        s.publisher = Some(Arc::new(publisher));
        s
    }
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if let Some(e) = &self.config_error {
            return Err(rpc_error(format!(
                "container {}: node configuration: {e}",
                req.id
            )));
        }
        let rootfs = req
            .rootfs
            .iter()
            .map(|m| (m.type_.clone(), m.source.clone(), m.options.clone()))
            .collect();
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let c = Container::create(
            CreateRequest {
                containerd_address: self.address.clone(),
                id: req.id.clone(),
                namespace: self.namespace.clone(),
                bundle: PathBuf::from(&req.bundle),
                rootfs,
                stdio,
            },
            &self.settings,
            self.host(),
        )
        .map_err(|e| rpc_error(format!("{e:#}")))?;
        let pid = c.init.pid() as u32;
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req.id.clone(), c);
        let ev = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(ev));
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let c = self.get(&req.id)?;
        let pid = if req.exec_id.is_empty() {
            let pid = c.start().map_err(|e| rpc_error(format!("{e:#}")))?;
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: req.id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                }),
            );
            pid
        } else {
            let pid = c
                .start_exec(&req.exec_id)
                .map_err(|e| rpc_error(format!("{e:#}")))?;
            self.publish(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                Box::new(TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                }),
            );
            pid
        };
        self.publish_exit_later(c, req.exec_id.clone());
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let c = self.get(&req.id)?;
        let proc = c
            .process(&req.exec_id)
            .ok_or_else(|| not_found(&req.exec_id))?;
        let status = match proc.status() {
            Status::Created => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Stopped => api::Status::STOPPED,
        };
        let mut resp = api::StateResponse {
            id: req.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: proc.pid() as u32,
            status: status.into(),
            stdin: proc.stdio.stdin.clone(),
            stdout: proc.stdio.stdout.clone(),
            stderr: proc.stdio.stderr.clone(),
            terminal: proc.stdio.terminal,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        if let Some(exit) = proc.exit() {
            resp.exit_status = exit.code as u32;
            resp.exited_at = timestamp(exit.at);
        }
        Ok(resp)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let c = self.get(&req.id)?;
        let proc = c
            .process(&req.exec_id)
            .ok_or_else(|| not_found(&req.exec_id))?;
        let Exit { code, at } = proc.wait();
        Ok(api::WaitResponse {
            exit_status: code as u32,
            exited_at: timestamp(at),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        c.kill(&req.exec_id, req.signal, req.all)
            .map_err(|e| rpc_error(format!("{e:#}")))?;
        Ok(api::Empty::new())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let c = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            let proc = c
                .exec_proc(&req.exec_id)
                .ok_or_else(|| not_found(&req.exec_id))?;
            let exit = proc
                .exit()
                .ok_or_else(|| rpc_error("exec process is still running"))?;
            c.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.exec_id);
            return Ok(api::DeleteResponse {
                pid: proc.pid() as u32,
                exit_status: exit.code as u32,
                exited_at: timestamp(exit.at),
                ..Default::default()
            });
        }
        if c.init.status() == Status::Running {
            return Err(rpc_error(format!(
                "container {} is still running; kill it first",
                req.id
            )));
        }
        let exit = c.delete().map_err(|e| rpc_error(format!("{e:#}")))?;
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req.id);
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: c.init.pid() as u32,
                exit_status: exit.code as u32,
                exited_at: timestamp(exit.at),
                ..Default::default()
            }),
        );
        Ok(api::DeleteResponse {
            pid: c.init.pid() as u32,
            exit_status: exit.code as u32,
            exited_at: timestamp(exit.at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let c = self.get(&req.id)?;
        let processes = c
            .pids()
            .into_iter()
            .map(|pid| containerd_shim::protos::types::task::ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        c.add_exec(&req.exec_id, stdio, spec)
            .map_err(|e| rpc_error(format!("{e:#}")))?;
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            }),
        );
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let proc = c
            .process(&req.exec_id)
            .ok_or_else(|| not_found(&req.exec_id))?;
        proc.resize(req.width as u16, req.height as u16)
            .map_err(|e| rpc_error(format!("{e:#}")))?;
        Ok(api::Empty::new())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let c = self.get(&req.id)?;
        let path = c.cgroups_path.clone().ok_or_else(|| {
            rpc_error(format!("container {}: no cgroupsPath in its spec", req.id))
        })?;
        let stats = crate::stats::metrics(&path).map_err(|e| rpc_error(format!("{e:#}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let path = c.cgroups_path.clone().ok_or_else(|| {
            rpc_error(format!("container {}: no cgroupsPath in its spec", req.id))
        })?;
        let value = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        crate::stats::update(&path, &value)
            .map_err(|e| rpc_error(format!("container {}: update: {e:#}", req.id)))?;
        Ok(api::Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        // Stdin FIFOs belong to the container's processes; closing ours is all there is.
        self.get(&req.id)?;
        Ok(api::Empty::new())
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&req.id)
            .map_or(0, |c| c.init.pid() as u32);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // CRI sends Shutdown on every connection: stay while containers remain.
        if self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
