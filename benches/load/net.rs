//! Sockets for the load generator: the open-file limit, loopback-only
//! targets, one source address per simulated device, and a readiness poller.
//!
//! Every simulated agent connects from its own address in 127.0.0.0/8
//! (`127.20.0.1`, `127.20.0.2`, ...), as a real fleet connects from many
//! addresses. That keeps the master's per-IP handshake rate limit meaning
//! what it means in production, and no run can run out of ephemeral ports.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::epoll;
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};

/// Raises the open-file limit so `want` sockets fit: the hard limit too
/// when allowed (root), else the soft limit up to the hard one. Returns the
/// soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let hard = cur.maximum.unwrap_or(u64::MAX);
    if hard < want {
        let raised = Rlimit {
            current: Some(want),
            maximum: Some(want),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return want;
        }
    }
    let soft = Rlimit {
        current: Some(hard),
        maximum: cur.maximum,
    };
    let _ = setrlimit(Resource::Nofile, soft);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Resolves `addr` and refuses anything but a loopback address: the tool
/// only ever loads servers on this machine.
pub fn loopback_target(addr: &str) -> Result<SocketAddr, String> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    if !a.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the load generator only targets this machine"
        ));
    }
    Ok(a)
}

/// The source address of simulated device `i`: unique for the first
/// 3.75 million devices, never in 127.0.0.x where the servers listen.
pub fn source_ip(i: usize) -> Ipv4Addr {
    let i = i as u32;
    Ipv4Addr::new(
        127,
        (20 + i / 62_500) as u8,
        (1 + (i / 250) % 250) as u8,
        (1 + i % 250) as u8,
    )
}

/// Connects to `dst` from `src` (port chosen by the kernel), then makes
/// the socket non-blocking with Nagle off. The connect itself blocks: on
/// loopback it completes within the call unless the listen queue is full.
pub fn connect_from(src: Option<Ipv4Addr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let fd = rustix::net::socket_with(
        match dst {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        },
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::TCP),
    )?;
    if let (Some(ip), SocketAddr::V4(_)) = (src, dst) {
        rustix::net::bind(&fd, &SocketAddrV4::new(ip, 0))?;
    }
    loop {
        match rustix::net::connect(&fd, &dst) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let s = TcpStream::from(fd);
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// As [`connect_from`], but without blocking: returns the socket and
/// whether the connect is still in progress (then it is done when the
/// socket turns writable; `take_error` says how). Failover clients use
/// it, so one reconnect that waits for a full listen queue (a SYN
/// retransmitted after 1 s) does not hold up the others on its thread, as
/// it would not hold up other devices.
pub fn connect_start(src: Option<Ipv4Addr>, dst: SocketAddr) -> io::Result<(TcpStream, bool)> {
    let fd = rustix::net::socket_with(
        match dst {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        },
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        Some(ipproto::TCP),
    )?;
    if let (Some(ip), SocketAddr::V4(_)) = (src, dst) {
        rustix::net::bind(&fd, &SocketAddrV4::new(ip, 0))?;
    }
    let pending = loop {
        match rustix::net::connect(&fd, &dst) {
            Ok(()) => break false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::INPROGRESS) => break true,
            Err(e) => return Err(e.into()),
        }
    };
    let s = TcpStream::from(fd);
    s.set_nodelay(true)?;
    Ok((s, pending))
}

/// A loopback port free right now (for servers that take a port number).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    let end = std::time::Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if std::time::Instant::now() > end {
            return Err(format!("nothing listens on {addr} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A level-triggered epoll set; keys are the caller's slot numbers.
pub struct Poller {
    ep: rustix::fd::OwnedFd,
    events: Vec<epoll::Event>,
}

/// One readiness report.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub key: u64,
    pub readable: bool,
    pub writable: bool,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            ep: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(1024),
        })
    }

    fn flags(write: bool) -> epoll::EventFlags {
        let mut f = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        if write {
            f |= epoll::EventFlags::OUT;
        }
        f
    }

    /// Watches `fd` for input (and output if `write`).
    pub fn add(&self, fd: impl AsFd, key: u64, write: bool) -> io::Result<()> {
        epoll::add(
            &self.ep,
            fd,
            epoll::EventData::new_u64(key),
            Self::flags(write),
        )?;
        Ok(())
    }

    /// Changes whether `fd` is watched for output.
    pub fn set_write(&self, fd: impl AsFd, key: u64, write: bool) -> io::Result<()> {
        epoll::modify(
            &self.ep,
            fd,
            epoll::EventData::new_u64(key),
            Self::flags(write),
        )?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: impl AsFd) {
        let _ = epoll::delete(&self.ep, fd);
    }

    /// Waits up to `timeout` (nanosecond precision) and returns what is ready.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Vec<Ready>> {
        self.events.clear();
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match epoll::wait(
            &self.ep,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&ts),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        let hup = epoll::EventFlags::ERR | epoll::EventFlags::HUP | epoll::EventFlags::RDHUP;
        Ok(self
            .events
            .iter()
            .map(|e| {
                let flags = e.flags;
                Ready {
                    key: e.data.u64(),
                    readable: flags.intersects(epoll::EventFlags::IN | hup),
                    writable: flags.contains(epoll::EventFlags::OUT),
                }
            })
            .collect())
    }
}
