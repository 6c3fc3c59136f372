//! Image config labels, read through containerd's API: they never reach the
//! OCI spec. container -> image -> manifest (this platform's, from an index)
//! -> config -> Labels. Failures are errors: a label the shim cannot read
//! must not silently leave a container without its policy.

use std::collections::HashMap;

use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::{with_namespace, Client};
use tonic::Request;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn read_blob(client: &Client, namespace: &str, digest: &str) -> Result<Vec<u8>, String> {
    let req = ReadContentRequest {
        digest: digest.to_string(),
        offset: 0,
        size: 0,
    };
    let mut stream = client
        .content()
        .read(with_namespace!(req, namespace))
        .await
        .map_err(|e| format!("read {digest}: {}", e.message()))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|e| format!("read {digest}: {}", e.message()))?
    {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

async fn labels_async(
    address: &str,
    namespace: &str,
    container_id: &str,
) -> Result<HashMap<String, String>, String> {
    let client = Client::from_path(address)
        .await
        .map_err(|e| format!("connect to containerd at {address}: {e}"))?;
    let req = GetContainerRequest {
        id: container_id.to_string(),
    };
    let container = client
        .containers()
        .get(with_namespace!(req, namespace))
        .await
        .map_err(|e| format!("container {container_id}: {}", e.message()))?
        .into_inner()
        .container
        .ok_or("no container record")?;
    if container.image.is_empty() {
        return Ok(HashMap::new());
    }
    let req = GetImageRequest {
        name: container.image.clone(),
    };
    let image = client
        .images()
        .get(with_namespace!(req, namespace))
        .await
        .map_err(|e| format!("image {}: {}", container.image, e.message()))?
        .into_inner()
        .image
        .ok_or("no image record")?;
    let target = image.target.ok_or("image has no target")?;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&read_blob(&client, namespace, &target.digest).await?)
            .map_err(|e| e.to_string())?;
    if INDEX_TYPES.contains(&target.media_type.as_str()) || manifest["manifests"].is_array() {
        let chosen = manifest["manifests"]
            .as_array()
            .and_then(|m| {
                m.iter()
                    .find(|d| {
                        d["platform"]["os"] == "linux" && d["platform"]["architecture"] == arch()
                    })
                    .or_else(|| m.first())
            })
            .and_then(|d| d["digest"].as_str())
            .ok_or("image index lists no manifest for this platform")?
            .to_string();
        manifest = serde_json::from_slice(&read_blob(&client, namespace, &chosen).await?)
            .map_err(|e| e.to_string())?;
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or("manifest has no config")?;
    let config: serde_json::Value =
        serde_json::from_slice(&read_blob(&client, namespace, config_digest).await?)
            .map_err(|e| e.to_string())?;
    Ok(config["config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// The container's image labels, from containerd at `address` (its gRPC socket).
pub fn image_labels(
    address: &str,
    namespace: &str,
    container_id: &str,
) -> Result<HashMap<String, String>, String> {
    // A current-thread runtime starts no worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(labels_async(address, namespace, container_id))
}
