//! A `redis-server` of the tool's own for the cluster scenarios, and the
//! few commands the tool sends it itself.
//!
//! Each cluster measurement starts a fresh one on a free loopback port
//! (never 6379, never a system Redis) with its own directory, with the
//! persistence docs/cluster.md asks of a production Redis: AOF on,
//! `appendfsync always`, so the figures include the fsync a push or a
//! claim waits for. It is killed and its directory removed on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::net;
use crate::procs::{Server, TempDir, spawn};

/// Where `redis-server` is: on PATH, or where Debian puts it.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/bin".into(),
            "/usr/sbin".into(),
            "/usr/local/bin".into(),
        ])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A running `redis-server`.
pub struct Redis {
    pub server: Server,
}

impl Redis {
    /// Starts one in a new directory under `base` and waits for PONG.
    pub fn start(base: &Path) -> Result<Redis, String> {
        let bin = find().ok_or(
            "redis-server is not installed (apt-get install redis-server): the cluster scenarios need their own",
        )?;
        let dir = TempDir::new(base, "redis")?;
        let port = net::free_port().map_err(|e| e.to_string())?;
        let log = dir.0.join("redis.log");
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir.0)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", "", "--daemonize", "no", "--logfile"])
            .arg(&log);
        let child = spawn("redis-server", &mut cmd, &dir.0.join("stderr.log"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut r = Redis {
            server: Server {
                name: "redis-server",
                child,
                addr,
                log,
                _dir: dir,
            },
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            r.server.check_alive()?;
            if let Ok(Reply::Status(s)) = r.cmd(&["PING"])
                && s == "PONG"
            {
                return Ok(r);
            }
            if Instant::now() > end {
                return Err(format!(
                    "redis-server did not answer: {}",
                    r.server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL a master is given.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.server.addr)
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// One command on a fresh connection (the tool asks rarely).
    pub fn cmd(&self, args: &[&str]) -> Result<Reply, String> {
        let mut s = TcpStream::connect_timeout(&self.server.addr, Duration::from_secs(2))
            .map_err(|e| format!("redis: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())
            .map_err(|e| format!("redis: {e}"))?;
        read_reply(&mut BufReader::new(s))
    }

    /// Owner entries (`egw:owner:*`, see src/master/cluster/scripts.rs)
    /// by node: how many agents each master holds in Redis.
    pub fn owners(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        const COUNT: &str = "local n = {} \
            for _, k in ipairs(redis.call('KEYS', 'egw:owner:*')) do \
              local v = redis.call('GET', k) \
              if v then local node = string.match(v, '^(%S+)') \
                if node then n[node] = (n[node] or 0) + 1 end end end \
            local out = {} \
            for node, c in pairs(n) do table.insert(out, node) table.insert(out, c) end \
            return out";
        let r = self.cmd(&["EVAL", COUNT, "0"])?;
        let Reply::Array(items) = r else {
            return Err(format!("redis: unexpected answer {r:?}"));
        };
        let mut m = std::collections::BTreeMap::new();
        for pair in items.chunks_exact(2) {
            if let (Reply::Bulk(Some(node)), Reply::Int(c)) = (&pair[0], &pair[1]) {
                m.insert(node.clone(), *c as u64);
            }
        }
        Ok(m)
    }
}

/// A RESP reply, as far as the tool needs it.
#[derive(Debug)]
pub enum Reply {
    Status(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| format!("redis: {e}"))?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || -> Result<i64, String> {
        rest.parse()
            .map_err(|_| format!("redis: bad length {rest:?}"))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Err(format!("redis error: {rest}")),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0u8; n as usize + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(|e| format!("redis: {e}"))?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(
                String::from_utf8_lossy(&buf).into_owned(),
            )))
        }
        "*" => {
            let n = num()?;
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read_reply(r)?);
            }
            Ok(Reply::Array(v))
        }
        _ => Err(format!("redis: unexpected reply {line:?}")),
    }
}
