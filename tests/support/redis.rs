//! A real `redis-server` for tests (the Debian package; `scripts/test` installs it): started on
//! a given port with its files in a scratch directory, `redis-cli` for inspection, killed on
//! drop.

use std::process::Stdio;
use std::time::Duration;

/// A scratch directory for Redis' files, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(port: u16) -> TempDir {
        let p = std::env::temp_dir().join(format!("oidcgate-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a fixed port, killed on drop.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start(port: u16, dir: &std::path::Path, append_only: bool) -> Redis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if append_only { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--dir",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let redis = Redis { child, port };
        for _ in 0..100 {
            if redis.cli(&["PING"]).trim() == "PONG" {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
