//! The physical limit for heartbeat round trips on this machine: a bare
//! epoll server that echoes every whole 45-byte frame it reads, and its
//! closed-loop client. It parses nothing, checks nothing and allocates
//! nothing per frame, so what it reaches is what loopback TCP, the kernel
//! and this generator allow; edge-gw's heartbeat rate is reported as a
//! share of it.
//!
//! The server runs in its own process (this binary re-run with
//! `--serve-echo`), like the master and Mosquitto, so its CPU is measured
//! the same way. Each thread has its own `SO_REUSEPORT` listener.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};

use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, sockopt};

use crate::engine::{Io, Proto};
use crate::net::Poller;

/// The frame size echoed: a header-only (v1 heartbeat) frame.
pub const FRAME: usize = 45;

fn listener(port: u16) -> io::Result<TcpListener> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        Some(ipproto::TCP),
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrV4::new([127, 0, 0, 1].into(), port))?;
    rustix::net::listen(&fd, 4096)?;
    let l = TcpListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves on 127.0.0.1:`port` with `threads` threads, forever.
pub fn serve(port: u16, threads: usize) -> ! {
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let l = listener(port).expect("echo listener");
            std::thread::spawn(move || {
                if let Err(e) = serve_one(l) {
                    eprintln!("echo server: {e}");
                    std::process::exit(1);
                }
            })
        })
        .collect();
    println!("listening");
    for h in handles {
        let _ = h.join();
    }
    std::process::exit(0)
}

fn serve_one(l: TcpListener) -> io::Result<()> {
    const LISTENER: u64 = u64::MAX;
    let mut poller = Poller::new()?;
    poller.add(&l, LISTENER, false)?;
    let mut conns: Vec<Option<(TcpStream, usize)>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        for r in poller.wait(std::time::Duration::from_secs(1))? {
            if r.key == LISTENER {
                while let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    poller.add(&s, conns.len() as u64, false)?;
                    conns.push(Some((s, 0)));
                }
                continue;
            }
            let k = r.key as usize;
            let Some((s, carry)) = conns[k].as_mut() else {
                continue;
            };
            // `carry` bytes of a partial frame sit at the front of `buf`.
            let close = match s.read(&mut buf[*carry..]) {
                Ok(0) => true,
                Ok(n) => {
                    let have = *carry + n;
                    let whole = have - have % FRAME;
                    let ok = s.write_all(&buf[..whole]).is_ok();
                    buf.copy_within(whole..have, 0);
                    *carry = have - whole;
                    !ok
                }
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            };
            if close {
                poller.delete(&s);
                conns[k] = None;
            }
        }
    }
}

/// A closed-loop client keeping `depth` 45-byte frames in flight.
pub struct EchoClient {
    depth: usize,
    carry: usize,
    frame: [u8; FRAME],
}

impl EchoClient {
    pub fn new(depth: usize) -> EchoClient {
        let mut frame = [0u8; FRAME];
        frame[0] = 1;
        frame[1] = 3;
        frame[4] = FRAME as u8;
        EchoClient {
            depth,
            carry: 0,
            frame,
        }
    }
}

impl Proto for EchoClient {
    fn start(&mut self, io: &mut Io<'_>) {
        io.ready = true;
    }

    fn input(&mut self, data: &[u8], io: &mut Io<'_>) -> Result<(), String> {
        let have = self.carry + data.len();
        let frames = have / FRAME;
        self.carry = have % FRAME;
        io.ops += frames as u64;
        for _ in 0..frames {
            io.out.extend_from_slice(&self.frame);
        }
        Ok(())
    }

    fn go(&mut self, io: &mut Io<'_>) {
        for _ in 0..self.depth {
            io.out.extend_from_slice(&self.frame);
        }
    }
}
