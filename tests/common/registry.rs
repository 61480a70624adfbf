//! A real registry for the tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with
//! a port the kernel picks (read back from its log), scratch storage, optionally htpasswd auth.
//! Images are pushed into it with skopeo. Dropping the fixture kills the registry.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::have;

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub addr: String,
    /// The registry process, when it runs on this host.
    child: Option<Child>,
    /// The testbed it runs in (and skopeo with it: the testbed has its own network).
    testbed: Option<PathBuf>,
    creds: Option<(String, String)>,
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a registry that wants `user:password` (htpasswd, bcrypt).
    pub fn with_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user.to_string(), password.to_string())))
    }

    /// Starts an anonymous registry inside a testbed (its own network namespace): hoist and
    /// skopeo run there too.
    pub fn start_in(tb: &super::testbed::Testbed) -> Self {
        Self::start_at(None, Some(tb.dir.clone()), "", false)
    }

    /// [`Self::start_in`], declared the documented way: `insecure = true` for it in the
    /// testbed's /etc/containers/registries.conf (no `--tls-verify=false` needed).
    pub fn insecure_in(tb: &super::testbed::Testbed) -> Self {
        let reg = Self::start_in(tb);
        tb.ok(&format!(
            "printf '[[registry]]\\nlocation = \"{}\"\\ninsecure = true\\n' > /etc/containers/registries.conf",
            reg.addr
        ));
        reg
    }

    fn start_with(creds: Option<(String, String)>) -> Self {
        Self::start_at(creds, None, "", false)
    }

    /// Starts a registry that speaks HTTPS with a certificate for 127.0.0.1 from a throwaway CA
    /// (openssl): the CA is [`Self::ca_dir`]`/ca.crt`.
    pub fn with_tls() -> Self {
        Self::start_at(None, None, "", true)
    }

    /// [`Self::with_tls`] inside a testbed (its own network namespace).
    pub fn with_tls_in(tb: &super::testbed::Testbed) -> Self {
        Self::start_at(None, Some(tb.dir.clone()), "", true)
    }

    /// The directory holding the CA certificate (`ca.crt`) of a [`Self::with_tls`] registry.
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Starts a pull-through cache of `upstream` (distribution's `proxy:` mode), as fleets put one
    /// in front of a registry; used as a registries.conf mirror.
    pub fn proxy_of(upstream: &Registry) -> Self {
        Self::start_at(None, None, &format!("proxy: {{remoteurl: 'http://{}'}}\n", upstream.addr), false)
    }

    /// A command run where the registry is reachable.
    fn command(&self, prog: &str) -> Command {
        match &self.testbed {
            None => Command::new(prog),
            Some(dir) => {
                let mut c = Command::new(super::repo().join("tests/testbed/testbed"));
                c.env("HOIST_TESTBED_DIR", dir).env("HOIST_BIN", super::HOIST).args(["exec", prog]);
                c
            }
        }
    }

    fn start_at(creds: Option<(String, String)>, testbed: Option<PathBuf>, extra: &str, tls: bool) -> Self {
        for tool in ["docker-registry", "skopeo"] {
            assert!(have(tool), "{tool} is needed for the registry tests (make test installs it)");
        }
        let dir = tempfile::Builder::new().prefix("hoist-registry-").tempdir_in(super::repo().join("target")).unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = &creds {
            assert!(have("htpasswd"), "htpasswd (apache2-utils) is needed for the auth tests (make test installs it)");
            let out = Command::new("htpasswd").args(["-Bbn", u, p]).output().unwrap();
            assert!(out.status.success());
            fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth =
                format!("auth: {{htpasswd: {{realm: hoist-test, path: {}}}}}\n", dir.path().join("htpasswd").display());
        }
        let tls = if tls { format!(", {}", make_tls(&dir.path().join("ca"))) } else { String::new() };
        let config = format!(
            "version: 0.1\n\
             log: {{level: info, accesslog: {{disabled: false}}}}\n\
             storage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n  \
             maintenance: {{uploadpurging: {{enabled: false}}}}\n\
             http: {{addr: '127.0.0.1:0', secret: hoist-test-not-secret{tls}}}\n\
             health: {{storagedriver: {{enabled: false}}}}\n{auth}{extra}",
            dir.path().join("data").display()
        );
        fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = dir.path().join("registry.log");
        let mut reg = Registry { dir, addr: String::new(), child: None, testbed, creds };
        let config = reg.dir.path().join("config.yml");
        if reg.testbed.is_some() {
            let script = format!(
                "setsid docker-registry serve '{}' >'{}' 2>&1 </dev/null & echo $! >'{}'",
                config.display(),
                log.display(),
                reg.dir.path().join("pid").display()
            );
            let o = reg.command("sh").arg("-c").arg(script).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        } else {
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(fs::File::create(reg.dir.path().join("stdout.log")).unwrap())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            reg.child = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(pos) = text.find("listening on ") {
                let rest = &text[pos + "listening on ".len()..];
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).unwrap_or(rest.len());
                break rest[..end].to_string();
            }
            assert!(Instant::now() < deadline, "registry did not start: {text}");
            std::thread::sleep(Duration::from_millis(10));
        };
        reg.addr = addr;
        reg
    }

    /// `docker://ADDR/REPO:TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.addr)
    }

    /// Pushes an skopeo source (`oci-archive:…`, `oci:DIR:REF`) as `repo_tag`; `all` copies every
    /// platform of an index. Returns the manifest digest the registry stores.
    pub fn push(&self, source: &str, repo_tag: &str, all: bool) -> String {
        self.push_with(source, repo_tag, if all { &["--all"] } else { &[] })
    }

    /// Like [`Self::push`] with extra skopeo arguments (`--format v2s2`: Docker schema 2).
    pub fn push_with(&self, source: &str, repo_tag: &str, extra: &[&str]) -> String {
        let digest_file = self.dir.path().join("pushed.digest");
        let mut cmd = self.command("skopeo");
        cmd.args(["copy", "-q", "--dest-tls-verify=false", "--digestfile"]).arg(&digest_file);
        cmd.args(extra);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        let out = cmd.arg(source).arg(self.reference(repo_tag)).output().unwrap();
        assert!(out.status.success(), "skopeo copy {source}: {}", String::from_utf8_lossy(&out.stderr));
        fs::read_to_string(digest_file).unwrap().trim().to_string()
    }

    /// The file a blob is kept in.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The access log (Apache combined format, one line per request: `"GET /v2/… HTTP/1.1" 200`).
    pub fn access_log(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(self.dir.path().join("stdout.log")).map(|mut f| f.read_to_string(&mut s));
        if self.testbed.is_some() {
            s = self.log();
        }
        s.lines().filter(|l| l.contains("\"GET ") || l.contains("\"HEAD ")).map(|l| format!("{l}\n")).collect()
    }

    /// Every request of the access log, whatever its method (`"PUT /v2/… HTTP/1.1" 201`).
    pub fn requests_log(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(self.dir.path().join("stdout.log")).map(|mut f| f.read_to_string(&mut s));
        if self.testbed.is_some() {
            s = self.log();
        }
        s.lines().filter(|l| l.contains(" HTTP/1.1\" ")).map(|l| format!("{l}\n")).collect()
    }

    /// How many requests `method path` the access log shows.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} {path} ");
        self.access_log().lines().filter(|l| l.contains(&needle)).count()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(self.dir.path().join("registry.log")).map(|mut f| f.read_to_string(&mut s));
        s
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        } else if let Ok(pid) = fs::read_to_string(self.dir.path().join("pid")) {
            // Gone with the testbed anyway when it is already down.
            let _ = self.command("kill").arg(pid.trim()).output();
        }
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Writes an auth.json with `user:password` for `registry`.
pub fn auth_file(dir: &Path, registry: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::create_dir_all(dir).unwrap();
    let path = dir.join("auth.json");
    fs::write(&path, serde_json::to_vec(&serde_json::json!({"auths": {registry: {"auth": auth}}})).unwrap()).unwrap();
    path
}

/// A CA (`DIR/ca.crt`) and a server certificate for IP 127.0.0.1 signed by it; returns the
/// registry's `tls:` setting.
fn make_tls(dir: &Path) -> String {
    assert!(have("openssl"), "openssl is needed for the TLS tests (make test installs it)");
    fs::create_dir_all(dir).unwrap();
    let ext = dir.join("server.ext");
    fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=hoist test CA", "-days", "2"],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for args in steps {
        let o = Command::new("openssl").args(&args).current_dir(dir).output().unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // The registry reads its key and certificate from outside the CA directory, which holds
    // only what a client trusts.
    let srv = dir.parent().unwrap();
    for f in ["server.key", "server.crt"] {
        fs::rename(dir.join(f), srv.join(f)).unwrap();
    }
    for f in ["ca.key", "ca.srl", "server.csr", "server.ext"] {
        let _ = fs::remove_file(dir.join(f));
    }
    format!("tls: {{certificate: '{}', key: '{}'}}", srv.join("server.crt").display(), srv.join("server.key").display())
}

/// An HTTP front from `tests/kit/` (a Python script that prints its port once it listens) in
/// front of a registry; killed when dropped, passing or not.
pub struct Front {
    pub addr: String,
    child: Child,
}

impl Front {
    /// Starts `tests/kit/SCRIPT ARGS…`.
    pub fn start(script: &str, args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new("python3")
            .arg(super::repo().join("tests/kit").join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 tests/kit/{script}: {e}"));
        let mut port = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut port).unwrap();
        assert!(!port.trim().is_empty(), "tests/kit/{script} printed no port");
        Front { addr: format!("127.0.0.1:{}", port.trim()), child }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
