//! The Kubernetes manifests (issue 13 point 5): every overlay of `deploy/kubernetes` renders
//! offline with the real `kubectl kustomize`, and the rendered objects are checked: kinds,
//! RBAC equal to the table of docs/deployment.md (the documented needs of the kubernetes
//! action), probes on /healthz, non-root and locked-down security contexts, resources, the
//! image, the config Secret; and the config in that Secret loads with `postee check`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::common::{repo, run};

const IMAGE: &str = "postee:0.1.0";

/// `kubectl`, as scripts/test provides it (`/usr/bin/kubectl`, else Debian's
/// kubernetes-client); kustomize v4 or later is needed (`labels`, `patches`).
fn kubectl() -> String {
    for c in ["/usr/bin/kubectl", "/usr/local/bin/kubectl"] {
        if std::path::Path::new(c).is_file() {
            return c.into();
        }
    }
    "kubectl".into()
}

/// The objects `kubectl kustomize` renders for an overlay.
fn render(overlay: &str) -> Vec<Value> {
    let dir = repo(&format!("deploy/kubernetes/overlays/{overlay}"));
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): install kubectl (scripts/test installs the Debian package kubernetes-client)")
        });
    if !out.status.success() {
        let version = Command::new(kubectl())
            .args(["version", "--client"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "kubectl kustomize {} failed (the manifests need kustomize v4 or later, kubectl 1.21+; this is {version}): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objs {
        m.entry(o["kind"].as_str().unwrap().to_string())
            .or_default()
            .push(o["metadata"]["name"].as_str().unwrap().to_string());
    }
    m
}

fn one<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// (API group, resource, verb) from the "RBAC" table of docs/deployment.md.
fn documented_rbac() -> BTreeSet<(String, String, String)> {
    let doc = std::fs::read_to_string(repo("docs/deployment.md")).unwrap();
    let section = doc
        .split("\n## RBAC")
        .nth(1)
        .expect("docs/deployment.md has a `## RBAC` section");
    let section = section.split("\n## ").next().unwrap();
    let mut set = BTreeSet::new();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "API group" || cells[1].starts_with("---") {
            continue;
        }
        let group = match ticked(cells[1]).first().map(String::as_str) {
            Some("\"\"") => String::new(),
            Some(g) => g.to_string(),
            None => panic!("no API group in the RBAC row {line}"),
        };
        for resource in ticked(cells[2]) {
            for verb in ticked(cells[3]) {
                set.insert((group.clone(), resource.clone(), verb));
            }
        }
    }
    assert!(
        !set.is_empty(),
        "the RBAC table of docs/deployment.md is empty"
    );
    set
}

/// (API group, resource, verb) from the table of the shipped manifests' rules in
/// docs/actions.md ("RBAC: the least rights", rows like `| `pods` (`""`) | `list`, `patch` |`),
/// written with the kubernetes action; `None` while that action is not in the tree.
fn rbac_of_the_kubernetes_action_docs() -> Option<BTreeSet<(String, String, String)>> {
    if !repo("src/actions/kubernetes.rs").exists() {
        return None;
    }
    let doc = std::fs::read_to_string(repo("docs/actions.md")).unwrap();
    let section = doc
        .split("### RBAC")
        .nth(1)
        .expect("docs/actions.md documents the kubernetes action's RBAC (`### RBAC...`)");
    let table = section
        .split("| resource (API group) | verbs |")
        .nth(1)
        .expect("docs/actions.md has the table `| resource (API group) | verbs |`");
    let mut set = BTreeSet::new();
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let rg = ticked(cells[1]);
        assert_eq!(rg.len(), 2, "resource and group in {line}");
        let group = if rg[1] == "\"\"" {
            String::new()
        } else {
            rg[1].clone()
        };
        for verb in ticked(cells[2]) {
            set.insert((group.clone(), rg[0].clone(), verb));
        }
    }
    assert!(!set.is_empty(), "the table of docs/actions.md is empty");
    Some(set)
}

fn rules(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for r in role["rules"].as_array().unwrap() {
        assert!(
            r.get("resourceNames").is_none() && r.get("nonResourceURLs").is_none(),
            "{r}"
        );
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    let (g, res, v) = (
                        g.as_str().unwrap(),
                        res.as_str().unwrap(),
                        v.as_str().unwrap(),
                    );
                    assert!(g != "*" && res != "*" && v != "*", "wildcard in {r}");
                    set.insert((g.into(), res.into(), v.into()));
                }
            }
        }
    }
    set
}

/// The RBAC objects: a ClusterRole with exactly the documented rules, bound by a RoleBinding
/// (one namespace, not cluster-wide) to the ServiceAccount the pods use.
fn check_rbac(objs: &[Value]) {
    let role = one(objs, "ClusterRole", "postee-kubernetes-action");
    assert_eq!(
        rules(role),
        documented_rbac(),
        "ClusterRole rules vs docs/deployment.md"
    );
    // Once the kubernetes action is in the tree, its own docs say what the manifests ship.
    if let Some(action_docs) = rbac_of_the_kubernetes_action_docs() {
        assert_eq!(
            rules(role),
            action_docs,
            "ClusterRole rules vs the table of the shipped manifests in docs/actions.md"
        );
    }
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "Role"),
        "rights are granted per namespace, by a RoleBinding of the ClusterRole"
    );
    let binding = one(objs, "RoleBinding", "postee-kubernetes-action");
    assert_eq!(binding["metadata"]["namespace"], "postee");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "postee-kubernetes-action");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "postee", "namespace": "postee"}])
    );
    one(objs, "ServiceAccount", "postee");
}

/// A pod template runs postee locked down: non-root 1099, seccomp, no capabilities, read-only
/// root, probes on /healthz, requests and limits, the image; returns its only container.
fn check_pod(template: &Value, what: &str) -> Value {
    let spec = &template["spec"];
    assert_eq!(spec["serviceAccountName"], "postee", "{what}");
    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{what}");
    assert_eq!(psc["runAsUser"], 1099, "{what}");
    assert_eq!(psc["runAsGroup"], 1099, "{what}");
    assert_eq!(psc["fsGroup"], 1099, "{what}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}");
    let c = containers[0].clone();
    assert_eq!(c["image"], IMAGE, "{what}");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert_eq!(sc["runAsUser"], 1099, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{what}"
    );
    assert!(sc["capabilities"].get("add").is_none(), "{what}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
    assert!(sc.get("privileged").is_none_or(|p| p == false), "{what}");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{what} {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{what} {probe}");
    }
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][r].is_string(),
                "{what}: resources.{kind}.{r} missing"
            );
        }
    }
    let ports: BTreeMap<&str, i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports.get("http"), Some(&8082), "{what}");
    assert_eq!(ports.get("https"), Some(&8445), "{what}");
    // The read-only root needs writable places: the data directory and /tmp.
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap(),
                m["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(mounts.get("/server/database"), Some(&"data"), "{what}");
    assert_eq!(mounts.get("/tmp"), Some(&"tmp"), "{what}");
    c
}

fn env(c: &Value, name: &str) -> Option<String> {
    c["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or("").to_string())
}

/// The server StatefulSet: one replica, the store on a PVC, the config from the Secret
/// rendered alongside (with its hash suffix), whose cfg.yaml loads.
fn check_server(objs: &[Value]) -> Value {
    let sts = one(objs, "StatefulSet", "postee");
    assert_eq!(sts["metadata"]["namespace"], "postee");
    assert_eq!(sts["spec"]["replicas"], 1, "the store has one writer");
    let claims = sts["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["metadata"]["name"], "data");
    assert_eq!(
        claims[0]["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );
    let c = check_pod(&sts["spec"]["template"], "StatefulSet postee");
    assert_eq!(env(&c, "POSTEE_CFG").as_deref(), Some("/config/cfg.yaml"));
    assert_eq!(
        env(&c, "POSTEE_DATA_DIR").as_deref(),
        Some("/server/database")
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    let config = mounts.iter().find(|m| m["mountPath"] == "/config").unwrap();
    assert_eq!(config["readOnly"], true);
    let volume = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == config["name"])
        .unwrap();
    let secret_name = volume["secret"]["secretName"].as_str().unwrap();
    assert!(secret_name.starts_with("postee-config-"), "{secret_name}");
    let secret = one(objs, "Secret", secret_name);
    use base64::Engine as _;
    // kustomize folds long base64 values over several lines.
    let encoded: String = secret["data"]["cfg.yaml"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    let cfg = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(
        cfg,
        std::fs::read(repo("deploy/kubernetes/base/cfg.yaml")).unwrap()
    );

    let svc = one(objs, "Service", "postee");
    let ports: BTreeSet<(i64, &str)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, BTreeSet::from([(8082, "http"), (8445, "https")]));
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the server pods");
    }
    c
}

#[test]
fn the_single_overlay_renders_a_locked_down_statefulset_with_exactly_the_documented_rbac() {
    let objs = render("single");
    let k = kinds(&objs);
    assert_eq!(
        k.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ClusterRole",
            "Namespace",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "StatefulSet"
        ],
        "{k:?}"
    );
    check_rbac(&objs);
    let c = check_server(&objs);
    assert!(
        c.get("args").is_none(),
        "the plain install runs the server as is"
    );
    for o in &objs {
        if !matches!(o["kind"].as_str(), Some("Namespace" | "ClusterRole")) {
            assert_eq!(o["metadata"]["namespace"], "postee", "{}", o["metadata"]);
        }
    }
}

#[test]
fn the_controller_runners_overlay_adds_a_runner_daemonset_with_postees_flags() {
    let objs = render("controller-runners");
    let k = kinds(&objs);
    assert_eq!(k["DaemonSet"], ["postee-runner"]);
    assert_eq!(k["StatefulSet"], ["postee"]);
    let mut services = k["Service"].clone();
    services.sort();
    assert_eq!(services, ["postee", "postee-controller", "postee-runner"]);
    check_rbac(&objs);

    let controller = check_server(&objs);
    assert_eq!(
        controller["args"],
        serde_json::json!(["--controller-mode", "--controller-url=nats://0.0.0.0:4222"])
    );
    assert!(
        controller["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "nats" && p["containerPort"] == 4222)
    );
    let nats = one(&objs, "Service", "postee-controller");
    assert_eq!(nats["metadata"]["namespace"], "postee");
    assert_eq!(nats["spec"]["ports"][0]["port"], 4222);

    let ds = one(&objs, "DaemonSet", "postee-runner");
    assert_eq!(ds["metadata"]["namespace"], "postee");
    let runner = check_pod(&ds["spec"]["template"], "DaemonSet postee-runner");
    assert_eq!(
        runner["args"],
        serde_json::json!([
            "--runner-name=$(NODE_NAME)",
            "--controller-url=nats://postee-controller.postee.svc:4222"
        ])
    );
    let node = runner["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .unwrap();
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    // Postee lets POSTEE_CFG win over the config fetched from the controller: not for runners.
    assert_eq!(env(&runner, "POSTEE_CFG").as_deref(), Some(""));
    let runner_svc = one(&objs, "Service", "postee-runner");
    assert_eq!(runner_svc["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(
        runner_svc["spec"]["selector"]["app.kubernetes.io/component"],
        "runner"
    );
}

#[test]
fn the_config_shipped_in_the_manifests_and_the_image_loads() {
    for cfg in ["deploy/kubernetes/base/cfg.yaml", "deploy/image/cfg.yaml"] {
        let path = repo(cfg);
        let out = run(&["check", "--cfgfile", path.to_str().unwrap()], &[]);
        assert!(
            out.status.success(),
            "{cfg}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
