//! A real Docker engine per test: its own `dockerd` (vfs storage, no iptables, no bridge, its own
//! data root, exec root, pid file and unix socket in a temp dir), optionally its own Debian
//! `docker-registry` on a free 127.0.0.1 port, and a busybox image made from `/bin/busybox`
//! (busybox-static). nextest runs each test in its own process, so every test that needs Docker
//! gets an engine nobody else touches; two engines run side by side (each dockerd starts its own
//! containerd, whose state lives under that engine's exec root).
//!
//! Image names are always `127.0.0.1:<port>/busybox:1`: a name without a registry prefix would
//! make the daemon try docker.io, which these machines cannot reach.
//!
//! Nothing here skips: if the engine cannot start, the test fails saying why (with the end of the
//! daemon's log). `scripts/test` installs `docker.io`, `busybox-static` and `docker-registry`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Programs the test image links to busybox (in `/bin`).
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "env", "ls", "sleep", "id", "true", "false", "mkdir", "touch", "date",
    "ps", "uname", "hostname", "wc", "head", "tail", "printf", "test", "grep", "cp", "tee", "rm",
    "tr", "sed", "cut", "find", "chmod", "basename", "dirname",
];

#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Start a local registry and push the busybox image to it (needed to test pulls).
    pub registry: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { registry: true }
    }
}

/// One test's Docker engine. Drop stops the daemon (and its containerd) and the registry.
pub struct Engine {
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    registry: Option<Child>,
    /// The registry's port (also used in the image name when there is no registry, so that a
    /// name never points at docker.io).
    pub registry_port: u16,
    /// `127.0.0.1:<port>/busybox:1`, present in the engine (and in the registry if any).
    pub image: String,
}

impl Engine {
    /// An engine with a registry holding the busybox image, which is also present locally.
    pub fn start() -> Engine {
        Self::start_with(EngineOptions::default())
    }

    pub fn start_with(opts: EngineOptions) -> Engine {
        // Short paths: the unix socket (and containerd's socket under the exec root) must fit
        // in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pd")
            .tempdir_in("/tmp")
            .expect("temp dir for the docker engine");
        let registry_port = free_port();
        let mut engine = Engine {
            dir,
            daemon: None,
            registry: None,
            registry_port,
            image: format!("127.0.0.1:{registry_port}/busybox:1"),
        };
        engine.start_daemon();
        if opts.registry {
            engine.start_registry();
        }
        engine.import_busybox();
        if opts.registry {
            engine.push(&engine.image.clone());
        }
        engine
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("d.sock")
    }

    /// The value for `DOCKER_HOST` (or the action's `docker-host` key).
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
    }

    /// The real dockerd pid (we spawn it directly, not through a shell).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "dockerd already running");
        let bin = which("dockerd").unwrap_or_else(|| {
            panic!("dockerd not found: install the Debian package docker.io (scripts/test does)")
        });
        for d in ["data", "exec"] {
            std::fs::create_dir_all(self.path(d)).unwrap();
        }
        // An empty config file, so the machine's /etc/docker/daemon.json never applies.
        std::fs::write(self.path("daemon.json"), "{}").unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("dockerd.log"))
            .unwrap();
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        let child = Command::new(bin)
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=vfs",
            ])
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = self.try_api("GET", "/_ping") {
                return;
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                self.daemon = None;
                panic!(
                    "dockerd exited ({status}) before answering; its log:\n{}",
                    tail(&self.path("dockerd.log"))
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer /_ping within 60 s; its log:\n{}",
                    tail(&self.path("dockerd.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 20 s), keeping its data: `restart` brings
    /// it back on the same socket with the same images.
    pub fn stop(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    signal(child.id(), libc::SIGKILL);
                    let _ = child.wait();
                    break;
                }
            }
        }
        // dockerd stops its containerd; if it was killed, containerd may be left: its pid file.
        let cpid = self.path("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(&cpid)
            && let Ok(pid) = pid.trim().parse::<u32>()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            signal(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts the daemon again after `stop`, on the same socket and data root.
    pub fn restart(&mut self) {
        self.start_daemon();
    }

    fn start_registry(&mut self) {
        let bin = which("docker-registry").unwrap_or_else(|| {
            panic!("docker-registry not found: install the Debian package docker-registry (scripts/test does)")
        });
        let storage = self.path("registry");
        std::fs::create_dir_all(&storage).unwrap();
        let cfg = self.path("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
                storage.display(),
                self.registry_port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.path("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}"));
        self.registry = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.registry_port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.registry.as_mut().map(|c| c.try_wait()) {
                self.registry = None;
                panic!(
                    "docker-registry exited ({status}); its log:\n{}",
                    tail(&self.path("registry.log"))
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer within 30 s; its log:\n{}",
                    tail(&self.path("registry.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes a root file system of busybox plus applet links and imports it as `self.image`.
    fn import_busybox(&self) {
        self.import_image(&self.image, &[]);
    }

    /// Imports the busybox image under `name`, with extra files (`path` relative to `/`,
    /// contents): e.g. a second version of an image with a marker file.
    pub fn import_image(&self, name: &str, files: &[(&str, &str)]) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| panic!("/bin/busybox not found: install the Debian package busybox-static (scripts/test does)"));
        let root = tempfile::tempdir_in(self.dir.path()).unwrap();
        let root = root.path();
        for d in ["bin", "etc", "tmp", "out"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        for (path, text) in files {
            let p = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let tar = root.with_extension("tar");
        let out = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.docker(&[
            "import",
            "--change",
            "ENV PATH=/bin",
            tar.to_str().unwrap(),
            name,
        ]);
        assert!(
            out.status.success(),
            "docker import failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&tar);
    }

    /// Pushes an image to this engine's registry (`name` must start with `127.0.0.1:<port>/`).
    pub fn push(&self, name: &str) {
        let out = self.docker(&["push", name]);
        assert!(
            out.status.success(),
            "docker push {name} failed: {}{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.path("registry.log"))
        );
    }

    /// Runs the docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        let bin =
            which("docker").expect("docker CLI not found: install the Debian package docker.io");
        Command::new(bin)
            .arg("-H")
            .arg(self.host())
            .args(args)
            // A private client config dir: no credential helpers or contexts of the machine.
            .env("DOCKER_CONFIG", self.path("cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .unwrap()
    }

    /// Removes an image from the engine (not from the registry).
    pub fn remove_image(&self, name: &str) {
        let out = self.docker(&["image", "rm", "-f", name]);
        assert!(
            out.status.success(),
            "docker image rm {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn has_image(&self, name: &str) -> bool {
        let (status, _) = self.api("GET", &format!("/images/{name}/json"));
        status == 200
    }

    /// One Engine API call on the socket (unversioned path, so any engine version answers).
    pub fn api(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        self.try_api(method, path).unwrap_or_else(|e| {
            panic!(
                "engine API {method} {path}: {e}\ndockerd log:\n{}",
                tail(&self.path("dockerd.log"))
            )
        })
    }

    /// Every container, running or not (`GET /containers/json?all=1`).
    pub fn containers(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.api("GET", "/containers/json?all=1");
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// The names (without the leading `/`) of every container.
    pub fn container_names(&self) -> Vec<String> {
        self.containers()
            .iter()
            .flat_map(|c| c["Names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(|s| s.trim_start_matches('/').to_string()))
            .collect()
    }

    fn try_api(&self, method: &str, path: &str) -> Result<(u16, serde_json::Value), String> {
        let mut s = UnixStream::connect(self.socket()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        // HTTP/1.0: the engine answers without chunked encoding and closes the connection.
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or("no status")?;
        let json =
            serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
        Ok((status, json))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        // dockerd can leave mounts under its exec root (`exec/netns/default`, an nsfs bind
        // mount) after it stops; the temp dir could not be removed with them in place.
        unmount_under(self.dir.path());
        if let Some(mut r) = self.registry.take() {
            signal(r.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(r.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

/// Detaches every mount point below `dir` (deepest first), as read from /proc/self/mountinfo.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p) else {
            continue;
        };
        // SAFETY: umount2 reads a NUL-terminated path we own for the duration of the call.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we started; no memory is touched.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Two engines at once, each with its own registry and image: both answer, both run a
/// container, and neither sees the other's containers.
#[test]
fn two_engines_run_side_by_side() {
    let a = Engine::start();
    let b = Engine::start();
    assert_ne!(a.socket(), b.socket());
    for (e, other) in [(&a, &b), (&b, &a)] {
        let name = format!("probe{}", e.registry_port);
        let out = e.docker(&[
            "run",
            "--name",
            &name,
            "--network",
            "none",
            &e.image,
            "sh",
            "-c",
            "echo hi from $0",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi from sh");
        assert!(e.container_names().contains(&name));
        assert!(!other.container_names().contains(&name));
    }
    let pa = a.pid().unwrap();
    drop(a);
    assert!(
        !Path::new(&format!("/proc/{pa}")).exists(),
        "dockerd {pa} still runs after Drop"
    );
    // b still answers after a stopped.
    assert_eq!(b.api("GET", "/_ping").0, 200);
}
