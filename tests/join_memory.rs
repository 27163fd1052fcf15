//! What an idle, joined, sealed connection costs the master's core: the
//! `MasterSession` itself, the heap it still holds once its join has been
//! handled and its queues drained, and the registry's entry for the agent.
//! Issue 12 asks for ≤ 512 bytes per sealed connection in all (shell,
//! session and registry); these are upper bounds on the core's share, as
//! regression guards.
//!
//! Heap is measured with a counting global allocator. Counts are per
//! thread, so the test harness's other threads (and other tests running in
//! parallel) never show up in a measurement.
//!
//! `cargo test --test join_memory -- --nocapture` prints the figures.
#![cfg(feature = "master")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use edge_gw::master::conn_handle::ConnHandle;
use edge_gw::master::registry::Registry;
use edge_gw::proto::Uuid;
use edge_gw::session::agent::{AgentConfig, AgentSession};
use edge_gw::session::dedup::RecentIds;
use edge_gw::session::master::{KeyLookup, MasterConfig, MasterEvent, MasterSession, Peer};
use edge_gw::session::outbox::OutboxLimits;
use edge_gw::session::{Clock, Entropy, EntropyFailed};

/// The system allocator, counting the bytes the current thread holds.
struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread. A const-initialised
    /// `Cell` without a destructor: safe to touch from inside the allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Allocations (and growing reallocations) made on this thread.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: during thread teardown the slot may be gone; those
    // allocations belong to no measurement.
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
    if delta > 0 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds
// `GlobalAlloc`'s contract; the counting touches only a thread-local `Cell`
// and never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes this thread holds now (requested sizes: the allocator's own
/// rounding and headers, ~8-16 bytes per block with glibc, come on top).
fn live() -> isize {
    LIVE.with(Cell::get)
}

const PSK: [u8; 32] = [0x42; 32];

/// The same bytes every time: a join replays byte for byte, so the agent's
/// confirming frame recorded in one run opens a second master session
/// given the same randomness.
struct Fixed(u8);

impl Entropy for Fixed {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
        buf.fill(self.0);
        Ok(())
    }
}

/// Every uuid has the one key.
struct AnyUuid;

impl KeyLookup for AnyUuid {
    fn psk_for(&self, _: &Uuid) -> Option<[u8; 32]> {
        Some(PSK)
    }
}

fn now() -> Clock {
    edge_gw::os::now()
}

fn uuid(i: usize) -> Uuid {
    Uuid::from_text(&format!("memory-agent-{i:06}")).unwrap()
}

/// The agent's Hello and its confirming frame for one join against a
/// master whose randomness is `Fixed(7)`.
fn recorded_join(cfg: &Arc<MasterConfig>, now: Clock) -> (Vec<u8>, Vec<u8>) {
    let agent_cfg = AgentConfig {
        uuid: uuid(0),
        group: "site-a".into(),
        psk: Some(PSK),
        ..AgentConfig::default()
    };
    let mut agent = AgentSession::new(agent_cfg, RecentIds::new(16), now, &mut Fixed(3));
    let hello = agent.poll_transmit().unwrap();
    let mut m = MasterSession::new(cfg.clone(), now);
    m.handle_input(&hello, now, &AnyUuid, &mut Fixed(7));
    agent.handle_input(&m.poll_transmit().unwrap(), now);
    let mut confirm = Vec::new();
    while let Some(b) = agent.poll_transmit() {
        confirm.extend_from_slice(&b);
    }
    (hello, confirm)
}

/// Runs a sealed join on a fresh session the way the shell does (input,
/// transmit, events, traffic) and returns it with the peer that joined.
fn join(
    cfg: &Arc<MasterConfig>,
    now: Clock,
    hello: &[u8],
    confirm: &[u8],
) -> (MasterSession, Peer) {
    let mut m = MasterSession::new(cfg.clone(), now);
    m.handle_input(hello, now, &AnyUuid, &mut Fixed(7));
    while m.poll_transmit().is_some() {}
    m.handle_input(confirm, now, &AnyUuid, &mut Fixed(7));
    while m.poll_transmit().is_some() {}
    let mut peer = None;
    while let Some(e) = m.poll_event() {
        if let MasterEvent::Joined(p) = e {
            peer = Some(p);
        }
    }
    m.take_traffic();
    let peer = peer.expect("the sealed join did not complete");
    assert!(m.is_authenticated());
    (m, peer)
}

/// Upper bounds, with a little room over what was measured when they were
/// set (see the figures this test prints).
/// Measured: 288 B (360 before issue 12's work).
const MAX_SESSION_SIZE: usize = 296;
/// Measured: 80 B, the two directions' cipher keys (99 B before, with the
/// peer's group and software texts).
const MAX_SESSION_HEAP: isize = 96;
/// Measured: 380 B at N = 10,000 (and at 2,000). Before: 673 B at 10,000,
/// 697 B at 2,000 (769 B before the long history was boxed on first use),
/// when `Agent` was 480 B, held every report-only field inline and a
/// connection entry named its agent by its 33-byte uuid (48-byte `Conn`).
/// Now: `Agent` 240 B (what reports leave, rare counters and the outbox
/// boxed on first use, texts interned), a 16-byte connection entry naming
/// the agent's slot, the uuid index (~70 B: a B-tree of 33-byte keys) and
/// the slab's pointer.
const MAX_REGISTRY_PER_AGENT: isize = 392;
/// Measured: 240 B (480 B before).
const MAX_AGENT_SIZE: usize = 248;

#[test]
fn an_idle_sealed_session_holds_little() {
    let cfg = Arc::new(MasterConfig::default());
    let now = now();
    let (hello, confirm) = recorded_join(&cfg, now);

    let (before, allocs) = (live(), ALLOCS.with(Cell::get));
    let (session, peer) = join(&cfg, now, &hello, &confirm);
    let allocs = ALLOCS.with(Cell::get) - allocs;
    drop(peer);
    let heap = live() - before;
    let joined = session.peer().is_some();
    drop(session);
    let left = live() - before;
    // Printing (and the harness capturing it) allocates: only after the
    // last measurement.
    let size = std::mem::size_of::<MasterSession>();
    println!(
        "MasterSession: size_of {size} B, heap held after a sealed join {heap} B; \
         {allocs} allocations during the join"
    );
    assert!(joined);
    assert!(
        size <= MAX_SESSION_SIZE,
        "size_of::<MasterSession>() is {size} B, over {MAX_SESSION_SIZE}"
    );
    assert!(
        heap <= MAX_SESSION_HEAP,
        "an idle sealed session holds {heap} B of heap, over {MAX_SESSION_HEAP}"
    );
    assert_eq!(left, 0, "the session's heap is not all freed on drop");
}

#[test]
fn a_joined_agent_costs_the_registry_little() {
    // Issue 12's scale: 10,000 connections.
    const N: usize = 10_000;
    let cfg = Arc::new(MasterConfig::default());
    let now = now();
    let (hello, confirm) = recorded_join(&cfg, now);
    let (_session, peer) = join(&cfg, now, &hello, &confirm);
    // N agents as a real join announces them: the sealed peer, own uuids.
    let peers: Vec<Peer> = (0..N)
        .map(|i| Peer {
            uuid: uuid(i),
            ..peer.clone()
        })
        .collect();
    let addr: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let mut registry = Registry::new(OutboxLimits::default(), now.mono);

    let before = live();
    let mut handles = Vec::with_capacity(N);
    for p in &peers {
        let id = registry.next_conn_id();
        let handle = ConnHandle::new(id);
        handles.push(handle.clone());
        registry.conn_opened(handle);
        assert!(
            registry
                .joined(id, p, addr, now.mono, now.unix_ms)
                .is_none()
        );
    }
    // Join events wait for the shell to take them: not per-agent state.
    drop(registry.take_events());
    // Only the Vec holding the test's clones of the handles is taken out.
    let held = live() - before - (handles.capacity() * std::mem::size_of::<usize>()) as isize;
    // The connection's handle is the shell's (its command queue and
    // waker): counted apart, so the bound is on the registry's own share.
    let handle = (2 * std::mem::size_of::<usize>() + std::mem::size_of::<ConnHandle>()) as isize;
    let per_agent = held / N as isize - handle;
    let agent_size = std::mem::size_of::<edge_gw::master::registry::Agent>();
    println!(
        "Registry: {per_agent} B per joined agent (agent entry, its strings, its share of the \
         agent and connection maps; N = {N}) + {handle} B for the shell's ConnHandle; \
         size_of::<Agent>() {agent_size} B"
    );
    assert_eq!(registry.online(), N);
    assert!(
        agent_size <= MAX_AGENT_SIZE,
        "size_of::<Agent>() is {agent_size} B, over {MAX_AGENT_SIZE}"
    );
    assert!(
        per_agent <= MAX_REGISTRY_PER_AGENT,
        "the registry holds {per_agent} B per joined agent, over {MAX_REGISTRY_PER_AGENT}"
    );
}
