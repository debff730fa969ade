//! The Kubernetes (k3s) node this workstation is, through the API server
//! on plain HTTP on loopback (`kubectl proxy` adds credentials and TLS).
//! The requests are those real kubectl sends: the mode label as a JSON
//! merge patch of `metadata.labels`; the taint as a strategic merge patch of
//! the whole `spec.taints` list (an atomic list: the patch replaces it);
//! pods listed with a field selector on `spec.nodeName` (and the configured
//! label selector); each GPU pod evicted with a `policy/v1` Eviction, which
//! honours PodDisruptionBudgets: a 429 is retried until the deadline. Not a
//! drain (it cordons the whole node, and k3s's platform pods must keep
//! running) and not a NoExecute taint (it deletes pods past their budgets).

use std::time::Duration;

use serde_json::{json, Value};

use mode_guards::probe::http::{self, HttpUrl};
use mode_guards::ScheduledWork;

use crate::config::K3sIntegration;

/// The label that states the mode, and the taint key while not in compute.
pub const MODE_LABEL: &str = "mode-controller.io/mode";
pub const TAINT_KEY: &str = "mode-controller.io/not-compute";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum K3sError {
    #[error("the Kubernetes API is unreachable: {0}")]
    Unreachable(String),
    #[error("{request} answered HTTP {status}: {message}")]
    Refused {
        request: String,
        status: u16,
        message: String,
    },
    #[error("the Kubernetes API's answer could not be read: {0}")]
    Malformed(String),
}

/// A pod on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

impl Pod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// As the guards see scheduled work.
    pub fn as_work(&self) -> ScheduledWork {
        ScheduledWork {
            id: self.id(),
            name: self.name.clone(),
            owner: self.namespace.clone(),
            state: self.phase.clone(),
        }
    }
}

/// Whether `pod` (an item of a pod list) asks for `resource` in any container.
fn requests(pod: &Value, resource: &str) -> bool {
    let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten();
    containers.chain(init).any(|c| {
        ["limits", "requests"]
            .iter()
            .any(|k| c["resources"][k].get(resource).is_some())
    })
}

/// The pods of a pod list that count: not finished, not already going, and
/// (without a selector) asking for the GPU resource.
pub fn gpu_pods(list: &Value, config: &K3sIntegration) -> Result<Vec<Pod>, K3sError> {
    let items = list["items"]
        .as_array()
        .ok_or_else(|| K3sError::Malformed("a pod list without items".into()))?;
    Ok(items
        .iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| config.pod_selector.is_some() || requests(p, &config.gpu_resource))
        .map(|p| Pod {
            namespace: p["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: p["metadata"]["name"].as_str().unwrap_or("").to_string(),
            phase: p["status"]["phase"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string(),
        })
        .collect())
}

/// `spec.taints` with ours set (`Some(mode)`) or removed (`None`), the
/// others kept as they are.
pub fn taints_with(node: &Value, ours: Option<&str>) -> Value {
    let mut taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["key"] != TAINT_KEY)
        .collect();
    if let Some(mode) = ours {
        taints.push(json!({"key": TAINT_KEY, "value": mode, "effect": "NoSchedule"}));
    }
    Value::Array(taints)
}

/// Percent-encode a query value.
fn query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One configured Kubernetes node.
pub struct K3s<'a> {
    config: &'a K3sIntegration,
    pub node: String,
    api: HttpUrl,
}

impl<'a> K3s<'a> {
    pub fn new(config: &'a K3sIntegration) -> Result<Self, K3sError> {
        let node = config.node.clone().unwrap_or_else(super::host_name);
        let api = HttpUrl::parse(&config.api).map_err(|e| K3sError::Unreachable(e.to_string()))?;
        Ok(Self { config, node, api })
    }

    /// One request, off the async thread; the JSON answer.
    async fn call(
        &self,
        method: &str,
        path: String,
        body: Option<(&str, Value)>,
    ) -> Result<(u16, Value), K3sError> {
        let url = self.api.with_path(&path);
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let words = format!("{method} {path}");
        let method = method.to_string();
        let body = body.map(|(kind, v)| (kind.to_string(), v.to_string().into_bytes()));
        let answer = tokio::task::spawn_blocking(move || {
            let body = body.as_ref().map(|(k, b)| (k.as_str(), b.as_slice()));
            http::send(&method, &url, body, timeout)
        })
        .await
        .map_err(|e| K3sError::Unreachable(e.to_string()))?
        .map_err(|e| K3sError::Unreachable(e.to_string()))?;
        let doc: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&answer.status) {
            return Ok((answer.status, doc));
        }
        Err(K3sError::Refused {
            request: words,
            status: answer.status,
            message: doc["message"]
                .as_str()
                .unwrap_or(answer.body.trim())
                .chars()
                .take(300)
                .collect(),
        })
    }

    fn node_path(&self) -> String {
        format!("/api/v1/nodes/{}", query(&self.node))
    }

    pub async fn get_node(&self) -> Result<Value, K3sError> {
        self.call("GET", self.node_path(), None)
            .await
            .map(|(_, v)| v)
    }

    /// State the mode in the node's label, and taint it (`taint: true`,
    /// outside compute) or take the taint away.
    pub async fn mark(&self, mode: &str, taint: bool) -> Result<(), K3sError> {
        let label = json!({"metadata": {"labels": {MODE_LABEL: mode}}});
        self.call(
            "PATCH",
            self.node_path(),
            Some(("application/merge-patch+json", label)),
        )
        .await?;
        let node = self.get_node().await?;
        let taints = taints_with(&node, taint.then_some(mode));
        let patch = json!({"spec": {"taints": taints}});
        self.call(
            "PATCH",
            self.node_path(),
            Some(("application/strategic-merge-patch+json", patch)),
        )
        .await
        .map(drop)
    }

    /// The GPU pods on the node.
    pub async fn pods(&self) -> Result<Vec<Pod>, K3sError> {
        let mut path = format!(
            "/api/v1/pods?fieldSelector={}",
            query(&format!("spec.nodeName={}", self.node))
        );
        if let Some(sel) = &self.config.pod_selector {
            path.push_str(&format!("&labelSelector={}", query(sel)));
        }
        let (_, list) = self.call("GET", path, None).await?;
        gpu_pods(&list, self.config)
    }

    /// Ask to evict `pod`: `Ok(true)` accepted, `Ok(false)` held back by a
    /// PodDisruptionBudget (429: try again later).
    pub async fn evict(&self, pod: &Pod) -> Result<bool, K3sError> {
        let body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace}
        });
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/eviction",
            query(&pod.namespace),
            query(&pod.name)
        );
        match self
            .call("POST", path, Some(("application/json", body)))
            .await
        {
            Ok(_) => Ok(true),
            // Already gone is as good as evicted.
            Err(K3sError::Refused { status: 404, .. }) => Ok(true),
            Err(K3sError::Refused { status: 429, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn retry(&self) -> Duration {
        Duration::from_millis(self.config.eviction_retry_ms)
    }

    pub fn eviction_timeout(&self) -> Duration {
        Duration::from_secs(self.config.eviction_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node_gpu: bool, phase: &str) -> Value {
        let resources = if node_gpu {
            json!({"limits": {"nvidia.com/gpu": "1"}})
        } else {
            json!({"requests": {"cpu": "100m"}})
        };
        json!({"metadata": {"name": name, "namespace": "ml"},
               "spec": {"containers": [{"name": "c", "resources": resources}]},
               "status": {"phase": phase}})
    }

    #[test]
    fn gpu_pods_are_those_asking_for_the_resource_and_still_running() {
        let list = json!({"items": [
            pod("train", true, "Running"),
            pod("web", false, "Running"),
            pod("done", true, "Succeeded"),
        ]});
        let pods = gpu_pods(&list, &K3sIntegration::default()).unwrap();
        assert_eq!(pods.iter().map(Pod::id).collect::<Vec<_>>(), ["ml/train"]);
        // With a selector, the API server chose them: every running one counts.
        let with_selector = K3sIntegration {
            pod_selector: Some("app=x".into()),
            ..K3sIntegration::default()
        };
        assert_eq!(gpu_pods(&list, &with_selector).unwrap().len(), 2);
    }

    #[test]
    fn our_taint_is_added_or_removed_and_every_other_taint_kept() {
        let node = json!({"spec": {"taints": [
            {"key": "gpu-maintenance", "effect": "NoSchedule"},
            {"key": TAINT_KEY, "value": "desktop", "effect": "NoSchedule"}
        ]}});
        let on = taints_with(&node, Some("studio-local"));
        assert_eq!(on.as_array().unwrap().len(), 2);
        assert_eq!(on[1]["value"], "studio-local");
        let off = taints_with(&node, None);
        assert_eq!(
            off,
            json!([{"key": "gpu-maintenance", "effect": "NoSchedule"}])
        );
        assert_eq!(taints_with(&json!({}), None), json!([]));
    }

    #[test]
    fn selectors_are_percent_encoded_in_the_query() {
        assert_eq!(query("spec.nodeName=box-1"), "spec.nodeName%3Dbox-1");
        assert_eq!(query("app=a,tier!=b"), "app%3Da%2Ctier%21%3Db");
    }
}
