//! The Kubernetes (k3s) integration against an HTTP stand-in of the API
//! server (tests/fixtures/bin/kube-api-standin.pl): no API server can run on
//! the test machines. The requests are asserted as real kubectl sends them
//! (a merge patch for the label, a strategic merge patch of the whole taint
//! list, a field-selected pod list, policy/v1 Evictions retried on 429), and
//! the stand-in applies selectors as the API server does, with pods on
//! another node and pods without the GPU that must be left alone.

mod common;

use common::{entry, Container};
use serde_json::{json, Value};

fn pod(ns: &str, name: &str, node: &str, gpu: bool, labels: Value) -> Value {
    let resources = if gpu {
        json!({"limits": {"nvidia.com/gpu": "1"}})
    } else {
        json!({"requests": {"cpu": "100m"}})
    };
    json!({"metadata": {"namespace": ns, "name": name, "labels": labels},
           "spec": {"nodeName": node, "containers": [{"name": "main", "resources": resources}]},
           "status": {"phase": "Running"}})
}

fn world(pdb_blocks: u64, ends_after: Option<u64>) -> Value {
    let mut ends = json!({});
    if let Some(s) = ends_after {
        ends["ml/train-a"] = json!(s);
    }
    json!({
        "nodes": {"ws1": {"metadata": {"name": "ws1", "labels": {"kubernetes.io/hostname": "ws1"}},
                           "spec": {"taints": [{"key": "gpu-maintenance", "effect": "PreferNoSchedule"}]}}},
        "pods": [
            pod("ml", "train-a", "ws1", true, json!({"app": "trainer"})),
            pod("ml", "web", "ws1", false, json!({"app": "web"})),
            pod("ml", "train-b", "ws2", true, json!({"app": "trainer"})),
            pod("kube-system", "coredns", "ws1", false, json!({"k8s-app": "kube-dns"})),
        ],
        "pdb_blocks": {"ml/train-a": pdb_blocks},
        "ends_after": ends
    })
}

/// (Re)start the stand-in API on 127.0.0.1:8001 with `state`.
fn api(c: &Container, state: &Value) {
    c.sh("systemctl stop kube-api 2>/dev/null; rm -f /run/kube/requests.jsonl");
    c.write("/run/kube/state.json", &state.to_string());
    let r = c.sh(
        "systemd-run --unit=kube-api perl /opt/mode-test/kube-api-standin.pl 8001 /run/kube/state.json /run/kube/requests.jsonl",
    );
    assert_eq!(r.code, 0, "{r:?}");
    c.wait_for(
        "perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(\"127.0.0.1:8001\") ? \"up\" : \"down\"'",
        "up",
        10,
    );
}

fn requests(c: &Container) -> Vec<Value> {
    let text = c.read("/run/kube/requests.jsonl");
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn get_node(c: &Container) -> Value {
    let text = c
        .sh("perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(\"127.0.0.1:8001\"); print $s \"GET /api/v1/nodes/ws1 HTTP/1.0\\r\\n\\r\\n\"; local $/; $r=<$s>; $r=~s/^.*?\\r\\n\\r\\n//s; print $r'")
        .stdout;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn config(c: &Container, extra: &str, jobs: &str) {
    c.write(
        "/etc/mode-controller/config.json",
        &format!(
            r#"{{"version": 1,
  "integrations": {{"k3s": {{"node": "ws1", "eviction_retry_ms": 200, "eviction_timeout_secs": 10, "request_timeout_secs": 2{extra}}}}},
  "modes": {{"desktop": {{"drain": {{"jobs": "{jobs}", "wait_secs": 20, "vllm_timeout_secs": 1,
     "checkpoint_signal": "SIGTERM", "grace_secs": 1}}}}}}}}"#
        ),
    );
}

#[test]
fn leaving_compute_taints_labels_and_evicts_only_the_nodes_gpu_pods_through_their_budget() {
    let c = Container::boot_real("kube-standin", &[], &[], &[]);
    api(&c, &world(2, None));
    config(&c, "", "checkpoint");

    // Entering compute: labelled compute, our taint absent, theirs kept.
    let r = c.mode("--json request compute");
    assert_eq!(r.code, 0, "{r:?}");
    let node = get_node(&c);
    assert_eq!(
        node["metadata"]["labels"]["mode-controller.io/mode"],
        "compute"
    );
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "gpu-maintenance", "effect": "PreferNoSchedule"}])
    );
    let reqs = requests(&c);
    assert_eq!(reqs[0]["method"], "PATCH");
    assert_eq!(reqs[0]["content_type"], "application/merge-patch+json");
    assert_eq!(
        reqs[0]["body"],
        json!({"metadata": {"labels": {"mode-controller.io/mode": "compute"}}})
    );
    let taint_patch = reqs
        .iter()
        .find(|r| r["content_type"] == "application/strategic-merge-patch+json")
        .unwrap();
    assert_eq!(
        taint_patch["body"],
        json!({"spec": {"taints": [{"key": "gpu-maintenance", "effect": "PreferNoSchedule"}]}})
    );

    // The dry-run names the GPU pod that leaving would evict (soft).
    let d = c.mode("--json dry-run desktop").json();
    let g = entry(&d["guards"], "guards", "name", "k3s_gpu_pods_safe");
    assert_eq!(g["severity"], "soft");
    assert!(
        g["reason"]
            .as_str()
            .unwrap_or("")
            .contains("pod ml/train-a of ml"),
        "{g}"
    );

    // Leaving: taint + label first, then the eviction, twice held by its budget.
    c.sh("rm -f /run/kube/requests.jsonl");
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let record = r.json();
    assert_eq!(common::step_words(&record)[0], "k3s-drain ws1");
    let step = entry(&record, "steps", "action", "k3s-drain");
    assert_eq!(step["jobs"][0]["unit"], "pod ml/train-a", "{step}");
    assert_eq!(step["jobs"][0]["outcome"], "evicted");
    let node = get_node(&c);
    assert_eq!(
        node["metadata"]["labels"]["mode-controller.io/mode"],
        "desktop"
    );
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "gpu-maintenance", "effect": "PreferNoSchedule"},
               {"key": "mode-controller.io/not-compute", "value": "desktop", "effect": "NoSchedule"}])
    );
    let reqs = requests(&c);
    let list = reqs.iter().find(|r| r["path"] == "/api/v1/pods").unwrap();
    assert_eq!(list["query"], json!({"fieldSelector": "spec.nodeName=ws1"}));
    let evictions: Vec<&Value> = reqs.iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(evictions.len(), 3, "two 429s, then accepted: {evictions:?}");
    for e in &evictions {
        assert_eq!(e["path"], "/api/v1/namespaces/ml/pods/train-a/eviction");
        assert_eq!(
            e["body"],
            json!({"apiVersion": "policy/v1", "kind": "Eviction",
                                     "metadata": {"name": "train-a", "namespace": "ml"}})
        );
    }
    assert!(
        !reqs.iter().any(|r| r["method"] == "DELETE" || r["path"].as_str().unwrap_or("").contains("cordon")),
        "no pod deleted, no node cordoned"
    );
    // Back to compute: untainted again. The platform budget reaches the
    // pods in kubepods.slice, and status shows it.
    assert_eq!(c.mode("request compute").code, 0);
    assert_eq!(
        get_node(&c)["spec"]["taints"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        c.prop("kubepods.slice", "CPUWeight"),
        c.prop("platform.slice", "CPUWeight")
    );
    assert_eq!(c.prop("kubepods.slice", "CPUWeight"), "200");
    assert!(c
        .mode("status")
        .stdout
        .contains("budget:     kubepods.slice"));
}

#[test]
fn refuse_names_the_pod_wait_waits_and_a_selector_picks_the_pods() {
    let c = Container::boot_real("kube-standin", &[], &[], &[]);
    api(&c, &world(0, None));
    config(&c, "", "refuse");
    assert_eq!(c.mode("request compute").code, 0);
    let r = c.mode("request desktop");
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("k3s_gpu_pods_safe") && r.stderr.contains("pod ml/train-a of ml"),
        "{}",
        r.stderr
    );
    assert_eq!(
        get_node(&c)["metadata"]["labels"]["mode-controller.io/mode"],
        "compute",
        "nothing changed"
    );

    // wait: the pod ends by itself two seconds in; the switch waits for it.
    api(&c, &world(0, Some(2)));
    config(&c, "", "wait");
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "k3s-drain");
    assert_eq!(step["jobs"][0]["outcome"], "ended", "{step}");
    assert!(step["duration_ms"].as_u64().unwrap_or(0) >= 1000, "{step}");

    // A selector: the API server picks the pods, web included, train-b (other node) not.
    api(&c, &world(0, None));
    config(&c, r#", "pod_selector": "app in trainer""#, "checkpoint");
    let r = c.mode("config check /etc/mode-controller/config.json");
    assert_eq!(r.code, 7, "a set-based selector is refused: {r:?}");
    assert!(
        r.stderr.contains("integrations.k3s.pod_selector"),
        "{}",
        r.stderr
    );
    config(
        &c,
        r#", "pod_selector": "app!=trainer,!k8s-app""#,
        "checkpoint",
    );
    assert_eq!(c.mode("request compute").code, 0);
    c.sh("rm -f /run/kube/requests.jsonl");
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "k3s-drain");
    let evicted: Vec<&str> = step["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["unit"].as_str())
        .collect();
    assert_eq!(evicted, ["pod ml/web"], "{step}");
    let list = requests(&c)
        .into_iter()
        .find(|r| r["path"] == "/api/v1/pods")
        .unwrap();
    assert_eq!(list["query"]["labelSelector"], "app!=trainer,!k8s-app");

    // The API down: a warning, and the switch goes on.
    c.sh("systemctl stop kube-api");
    assert_eq!(c.mode("request compute").code, 0);
    let r = c.mode("--json request desktop");
    assert_eq!(r.code, 0, "{r:?}");
    let step = entry(&r.json(), "steps", "action", "k3s-drain");
    assert!(
        step["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("Kubernetes API is unreachable"),
        "{step}"
    );
}
