//! A private Git server over SSH on 127.0.0.1: the system's OpenSSH `sshd` (installed by
//! `e2e/cluster/up`) run by the test itself with its own config, host key and one authorized client
//! key, as a hosted Git service does with a deploy key. The session runs the real `git-upload-pack`.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege-separation directory; it refuses to start without it, and only the system
/// service's unit creates it.
const PRIVSEP_DIR: &str = "/run/sshd";

/// An ed25519 key pair made by `ssh-keygen`, in OpenSSH formats.
pub struct KeyPair {
    /// The private key file's text (`-----BEGIN OPENSSH PRIVATE KEY-----...`), as a Secret's
    /// `sshPrivateKey` holds it.
    pub private: String,
    /// `ssh-ed25519 AAAA... comment`
    pub public: String,
}

impl KeyPair {
    pub fn generate(comment: &str) -> Self {
        let dir = TempDir::new().expect("key directory");
        Self::generate_at(&dir.path().join("key"), comment)
    }

    /// Writes the pair to `path` and `path.pub`, where sshd reads a host key.
    fn generate_at(path: &Path, comment: &str) -> Self {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .status()
            .expect("run ssh-keygen");
        assert!(status.success(), "ssh-keygen failed: {status}");
        Self {
            private: std::fs::read_to_string(path).expect("private key"),
            public: std::fs::read_to_string(path.with_extension("pub"))
                .expect("public key")
                .trim()
                .to_string(),
        }
    }

    /// `ssh-ed25519 AAAA...` without the comment, as a `known_hosts` line ends.
    pub fn type_and_key(&self) -> String {
        self.public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A private `sshd` on `127.0.0.1:port` that lets [`Self::user`] in with [`Self::client_key`] only;
/// killed when dropped.
pub struct PrivateSshServer {
    pub port: u16,
    /// The user the tests run as: sshd logs in as a real account, and this is the only one sure to
    /// exist and to own the repositories.
    pub user: String,
    pub client_key: KeyPair,
    pub host_key: KeyPair,
    /// Public-key authentications refused (`Failed publickey` in sshd's log).
    pub refused: Arc<AtomicUsize>,
    /// Logins with a public key (`Accepted publickey`).
    pub accepted: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    child: Child,
    _dir: TempDir,
}

impl PrivateSshServer {
    pub fn start() -> Self {
        let dir = TempDir::new().expect("sshd directory");
        let host_key_path = dir.path().join("host_key");
        let host_key = KeyPair::generate_at(&host_key_path, "sluice-test-host");
        let client_key = KeyPair::generate("sluice-test-client");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{}\n", client_key.public))
            .expect("authorized_keys");
        std::fs::create_dir_all(PRIVSEP_DIR).expect("create /run/sshd");

        let port = free_port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            sshd_config(port, &host_key_path, &authorized_keys, dir.path()),
        )
        .expect("sshd_config");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {SSHD} (e2e/cluster/up installs it): {e}"));

        let refused = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        {
            let (refused, accepted, log) = (refused.clone(), accepted.clone(), log.clone());
            // Reads sshd's log until it exits; the sender drops then, so a failed start ends the wait.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.starts_with("Failed publickey for ") {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    if line.starts_with("Accepted publickey for ") {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    if line.starts_with("Server listening on 127.0.0.1") {
                        let _ = listening_tx.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let server = Self {
            port,
            user: current_user(),
            client_key,
            host_key,
            refused,
            accepted,
            log,
            child,
            _dir: dir,
        };
        // sshd prints this line once its socket is listening.
        if listening_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("sshd did not start listening:\n{}", server.log());
        }
        server
    }

    /// The URL prefix of bare repositories under `root`: `ssh://USER@127.0.0.1:PORT/abs/root`.
    pub fn base_url(&self, root: &Path) -> String {
        let root: PathBuf = root.canonicalize().expect("absolute repository root");
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            root.display()
        )
    }

    /// The `known_hosts` line trusting this server's host key.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key.type_and_key())
    }

    /// Everything sshd has logged so far, for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for PrivateSshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_config(port: u16, host_key: &Path, authorized_keys: &Path, dir: &Path) -> String {
    // StrictModes would refuse the temp directory's ownership checks; root logs in only because the
    // tests run as root here, and then only with a key.
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         StrictModes no\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PidFile {pid}\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        authorized_keys = authorized_keys.display(),
        pid = dir.join("sshd.pid").display(),
    )
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(output.status.success(), "id -un failed");
    String::from_utf8(output.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_string()
}
