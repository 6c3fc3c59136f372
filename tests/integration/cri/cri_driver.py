#!/usr/bin/env python3
"""Drives containerd's CRI the way kubelet does, for Palisade's tests.

One call runs one pod: RunPodSandbox (host network, no CNI needed), one
container, ExecSync sessions in it (kubectl exec), then stops and removes
everything, even on failure. Prints a JSON result on stdout.
Uses the CRI v1 stubs of the PyPI package container-runtime-interface-api.
"""
import argparse
import json
import sys
import time
import uuid

import grpc
from google.protobuf.json_format import ParseDict
from cri_api.v1 import api_pb2 as api
from cri_api.v1.api_pb2_grpc import RuntimeServiceStub

HOST_NETWORK = 2  # NamespaceMode.NODE


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--handler", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--image", required=True)
    p.add_argument("--pod-annotations", default="{}")
    p.add_argument("--pod-annotations-file", help="JSON file, for annotations too large for argv")
    p.add_argument("--container-annotations", default="{}")
    p.add_argument("--cmd", default='["sleep", "600"]')
    p.add_argument("--exec", action="append", default=[], help="JSON argv for ExecSync")
    p.add_argument("--log-dir", required=True)
    p.add_argument("--wait-exit", action="store_true", help="wait for the container to exit")
    a = p.parse_args()

    if a.pod_annotations_file:
        with open(a.pod_annotations_file) as f:
            a.pod_annotations = f.read()
    rt = RuntimeServiceStub(
        grpc.insecure_channel(
            "unix://" + a.socket,
            options=[("grpc.max_send_message_length", 16 << 20), ("grpc.max_receive_message_length", 16 << 20)],
        )
    )
    result = {"execs": [], "timings": {}}
    t0 = time.time()

    def mark(phase):
        result["timings"][phase] = round(time.time() - t0, 3)
    uid = uuid.uuid4().hex[:8]
    pod_config = ParseDict(
        {
            "metadata": {"name": a.name, "namespace": a.namespace, "uid": uid, "attempt": 0},
            "logDirectory": a.log_dir,
            "annotations": json.loads(a.pod_annotations),
            "linux": {"securityContext": {"namespaceOptions": {"network": HOST_NETWORK}}},
        },
        api.PodSandboxConfig(),
    )
    sandbox_id = None
    try:
        sandbox_id = rt.RunPodSandbox(api.RunPodSandboxRequest(config=pod_config, runtime_handler=a.handler)).pod_sandbox_id
        result["sandbox_id"] = sandbox_id
        mark("sandbox")
        container_config = ParseDict(
            {
                "metadata": {"name": "app", "attempt": 0},
                "image": {"image": a.image},
                "command": json.loads(a.cmd),
                "logPath": "app.log",
                "annotations": json.loads(a.container_annotations),
            },
            api.ContainerConfig(),
        )
        cid = rt.CreateContainer(
            api.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=container_config, sandbox_config=pod_config)
        ).container_id
        result["container_id"] = cid
        rt.StartContainer(api.StartContainerRequest(container_id=cid))
        mark("started")
        for argv in a.exec:
            mark("exec " + " ".join(json.loads(argv)))
            try:
                r = rt.ExecSync(api.ExecSyncRequest(container_id=cid, cmd=json.loads(argv), timeout=30))
                result["execs"].append(
                    {"cmd": json.loads(argv), "exit_code": r.exit_code, "stdout": r.stdout.decode(), "stderr": r.stderr.decode()}
                )
            except grpc.RpcError as e:
                # The exec could not even start (as kubectl exec reports it).
                result["execs"].append({"cmd": json.loads(argv), "exit_code": -1, "rpc_error": e.details()})
        mark("execs")
        if a.wait_exit:
            deadline = time.time() + 30
            while time.time() < deadline:
                st = rt.ContainerStatus(api.ContainerStatusRequest(container_id=cid)).status
                if st.state == api.CONTAINER_EXITED:
                    result["exit_code"] = st.exit_code
                    break
                time.sleep(0.1)
        try:
            with open(f"{a.log_dir}/app.log") as f:
                result["logs"] = [line.split(" ", 3)[-1].rstrip("\n") for line in f]
        except OSError:
            result["logs"] = []
    except grpc.RpcError as e:
        result["error"] = e.details()
    finally:
        if sandbox_id:
            try:
                rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
                mark("stopped")
                rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
                mark("removed")
            except grpc.RpcError as e:
                result["cleanup_error"] = e.details()
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
